/* SPDX-License-Identifier: Apache-2.0 */

#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "support.h"

const char *support_env(const char *name) {
        const char *v = getenv(name);

        if (isempty(v))
                fail_msg("$%s is not set: run this test through `make test`, or source "
                         "build/cluster/env after `make cluster-up`",
                         name);
        return v;
}

const char *support_run_id(void) {
        static char id[16];

        if (!id[0]) {
                struct timespec ts;

                clock_gettime(CLOCK_REALTIME, &ts);
                snprintf(id, sizeof(id), "t%x%x", (unsigned) getpid() & 0xfff,
                         (unsigned) (ts.tv_nsec / 1000) & 0xffff);
        }
        return id;
}

int support_sh(bool quiet, const char *fmt, ...) {
        _cleanup_free_ char *cmd = NULL, *full = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&cmd, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -1;
        if (asprintf(&full, "%s%s", cmd, quiet ? " >/dev/null 2>&1" : " >&2") < 0)
                return -1;
        r = system(full);
        return r < 0 ? -1 : WIFEXITED(r) ? WEXITSTATUS(r) : 128 + WTERMSIG(r);
}

char *support_sh_output(const char *fmt, ...) {
        _cleanup_free_ char *cmd = NULL, *buf = NULL;
        size_t len = 0;
        FILE *p, *out;
        va_list ap;
        int r, c;

        va_start(ap, fmt);
        r = vasprintf(&cmd, fmt, ap);
        va_end(ap);
        if (r < 0)
                return NULL;
        p = popen(cmd, "r");
        if (!p)
                return NULL;
        out = open_memstream(&buf, &len);
        while ((c = fgetc(p)) != EOF)
                fputc(c, out);
        fclose(out);
        r = pclose(p);
        if (r != 0)
                return NULL;
        while (len > 0 && buf[len - 1] == '\n')
                buf[--len] = '\0';
        return TAKE_PTR(buf);
}

pid_t support_spawn(char *const argv[], const char *log_path) {
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                sigset_t all;

                if (fd >= 0) {
                        dup2(fd, STDOUT_FILENO);
                        dup2(fd, STDERR_FILENO);
                }
                sigemptyset(&all);
                sigprocmask(SIG_SETMASK, &all, NULL);
                execv(argv[0], argv);
                fprintf(stderr, "exec %s: %m\n", argv[0]);
                _exit(127);
        }
        return pid;
}

bool support_alive(pid_t pid) {
        int status;

        return waitpid(pid, &status, WNOHANG) == 0;
}

int support_stop(pid_t pid, int sig) {
        int status = 0;

        kill(pid, sig);
        for (int i = 0; i < 100; i++) {
                if (waitpid(pid, &status, WNOHANG) == pid)
                        return status;
                usleep(100 * 1000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return status;
}

uint64_t support_now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

bool support_wait_for(bool (*cond)(void *userdata), void *userdata, unsigned timeout_ms) {
        uint64_t end = support_now_ms() + timeout_ms;

        for (;;) {
                if (cond(userdata))
                        return true;
                if (support_now_ms() >= end)
                        return false;
                usleep(100 * 1000);
        }
}

void support_dump_log(const char *path, unsigned lines) {
        fprintf(stderr, "---- last %u lines of %s ----\n", lines, path);
        support_sh(false, "tail -n %u '%s'", lines, path);
        fprintf(stderr, "----\n");
}

static bool port_free(unsigned port) {
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_port = htons((uint16_t) port),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        if (fd < 0)
                return false;
        /* As the daemons bind (libmicrohttpd sets SO_REUSEADDR), so a port
         * whose last connection is in TIME_WAIT counts as free. */
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
        ok = bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
        close(fd);
        return ok;
}

unsigned support_free_ports(unsigned n) {
        static unsigned next; /* past the last block handed out, relative to lo */
        unsigned lo = 10000, hi = 32768, span, start;
        FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");

        if (f) {
                unsigned a, b;

                if (fscanf(f, "%u %u", &a, &b) == 2 && a > lo + 1000)
                        hi = a;
                fclose(f);
        }
        assert_true(n > 0 && hi > lo + n);
        span = hi - lo - n;
        /* From past the last block given out (or a point drawn from the
         * pid): a block handed out but not bound yet looks free. */
        start = (next ? next : (unsigned) getpid() * 7919u) % span;
        for (unsigned i = 0; i < span; i++) {
                unsigned base = lo + (start + i) % span, k;

                for (k = 0; k < n && port_free(base + k); k++)
                        ;
                if (k == n) {
                        next = base - lo + n;
                        return base;
                }
        }
        fail_msg("no %u free consecutive ports in %u..%u", n, lo, hi - 1);
        return 0;
}
