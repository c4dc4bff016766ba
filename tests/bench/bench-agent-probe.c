/* SPDX-License-Identifier: Apache-2.0 */

/*
 * bench-agent-probe: when did each agent apply a revision? For make
 * bench-agent (tests/bench/bench-agent.sh).
 *
 *   bench-agent-probe DIRLIST FILE EXPECT TIMEOUT_SEC READY_FILE
 *
 * DIRLIST names one applied bundle directory per line (ROOT/NS/NAME, which
 * must exist). The probe puts an inotify watch on each; the apply's swap
 * renames a new "..data" symlink into place there. On each such event it
 * reads DIR/FILE (through the symlinks, as an application would) and, once it
 * equals EXPECT, records the time (CLOCK_REALTIME) and drops that watch. It
 * creates READY_FILE once every watch is set, so the caller can start the
 * update, and stops when every directory matched or after TIMEOUT_SEC.
 *
 * Output, one line per directory in DIRLIST order: the Unix time in seconds
 * with nanoseconds at which the file first matched, or "-" if it never did.
 * Exit status: 0 all matched, 1 some did not, 2 usage or system error.
 *
 * Nothing is polled: a thousand agents cost a thousand inotify watches and
 * a few reads per agent per update, not a busy loop over their files.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#define FILE_MAX (64 * 1024)

typedef struct target {
        char *dir;
        int wd;          /* -1 once matched (or never watched) */
        int64_t at_nsec; /* 0: not yet */
} target;

static int64_t now_realtime_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_mono_msec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* True if DIR/FILE holds exactly @expect. */
static bool file_matches(const char *dir, const char *file, const char *expect, size_t expect_len) {
        char path[PATH_MAX], buf[FILE_MAX];
        size_t have = 0;
        int fd;

        if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
                return false;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        for (;;) {
                ssize_t n = read(fd, buf + have, sizeof(buf) - have);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                have += (size_t) n;
                if (have == sizeof(buf))
                        break;
        }
        close(fd);
        return have == expect_len && memcmp(buf, expect, have) == 0;
}

static void target_check(int ifd, target *t, const char *file, const char *expect, size_t len,
                         size_t *n_left) {
        if (t->at_nsec > 0 || !file_matches(t->dir, file, expect, len))
                return;
        t->at_nsec = now_realtime_nsec();
        if (t->wd >= 0)
                (void) inotify_rm_watch(ifd, t->wd);
        t->wd = -1;
        (*n_left)--;
}

static int load_dirs(const char *list, target **ret, size_t *ret_n) {
        FILE *f = fopen(list, "re");
        target *v = NULL;
        size_t n = 0, cap = 0, sz = 0;
        char *line = NULL;
        ssize_t len;

        if (!f)
                return -errno;
        while ((len = getline(&line, &sz, f)) >= 0) {
                while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                        line[--len] = '\0';
                if (len == 0)
                        continue;
                if (n == cap) {
                        target *nv = realloc(v, (cap = cap ? cap * 2 : 256) * sizeof(*v));
                        if (!nv)
                                goto oom;
                        v = nv;
                }
                v[n].dir = strdup(line);
                if (!v[n].dir)
                        goto oom;
                v[n].wd = -1;
                v[n].at_nsec = 0;
                n++;
        }
        free(line);
        fclose(f);
        *ret = v;
        *ret_n = n;
        return 0;
oom:
        free(line);
        fclose(f);
        for (size_t i = 0; i < n; i++)
                free(v[i].dir);
        free(v);
        return -ENOMEM;
}

/* The target watching @wd, found by a linear scan from a hint: events of
 * one directory come together, so the hint usually hits. */
static target *target_by_wd(target *v, size_t n, int wd, size_t *hint) {
        for (size_t k = 0; k < n; k++) {
                size_t i = (*hint + k) % n;
                if (v[i].wd == wd) {
                        *hint = i;
                        return &v[i];
                }
        }
        return NULL;
}

int main(int argc, char *argv[]) {
        const char *file, *expect;
        target *v = NULL;
        size_t n = 0, n_left, len, hint = 0;
        int64_t deadline;
        long timeout;
        char *end;
        int ifd, r, fd;

        if (argc != 6) {
                fprintf(stderr, "usage: %s DIRLIST FILE EXPECT TIMEOUT_SEC READY_FILE\n", argv[0]);
                return 2;
        }
        file = argv[2];
        expect = argv[3];
        len = strlen(expect);
        errno = 0;
        timeout = strtol(argv[4], &end, 10);
        if (errno != 0 || *end || timeout <= 0 || timeout > 86400) {
                fprintf(stderr, "invalid timeout '%s'\n", argv[4]);
                return 2;
        }
        r = load_dirs(argv[1], &v, &n);
        if (r < 0) {
                fprintf(stderr, "cannot read %s: %s\n", argv[1], strerror(-r));
                return 2;
        }
        ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (ifd < 0) {
                fprintf(stderr, "inotify_init1: %m\n");
                return 2;
        }
        for (size_t i = 0; i < n; i++) {
                v[i].wd = inotify_add_watch(ifd, v[i].dir, IN_MOVED_TO | IN_CREATE | IN_ONLYDIR);
                if (v[i].wd < 0) {
                        fprintf(stderr, "inotify_add_watch %s: %m\n", v[i].dir);
                        return 2;
                }
        }
        /* Already there (it should not be): counts as now. */
        n_left = n;
        for (size_t i = 0; i < n; i++)
                target_check(ifd, &v[i], file, expect, len, &n_left);
        fd = open(argv[5], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                fprintf(stderr, "cannot create %s: %m\n", argv[5]);
                return 2;
        }
        close(fd);

        deadline = now_mono_msec() + timeout * 1000;
        while (n_left > 0) {
                _Alignas(struct inotify_event) char buf[64 * 1024];
                struct pollfd p = {.fd = ifd, .events = POLLIN};
                int64_t left = deadline - now_mono_msec();
                ssize_t got;

                if (left <= 0)
                        break;
                r = poll(&p, 1, (int) (left > INT_MAX ? INT_MAX : left));
                if (r < 0 && errno != EINTR) {
                        fprintf(stderr, "poll: %m\n");
                        return 2;
                }
                if (r <= 0)
                        continue;
                while ((got = read(ifd, buf, sizeof(buf))) > 0) {
                        for (char *p2 = buf; p2 < buf + got;) {
                                struct inotify_event *ev = (struct inotify_event *) p2;
                                target *t;

                                p2 += sizeof(*ev) + ev->len;
                                if (ev->mask & IN_Q_OVERFLOW) {
                                        /* Lost events: look at every one left. */
                                        for (size_t i = 0; i < n; i++)
                                                target_check(ifd, &v[i], file, expect, len,
                                                             &n_left);
                                        continue;
                                }
                                if (ev->len == 0 || strcmp(ev->name, "..data") != 0)
                                        continue;
                                t = target_by_wd(v, n, ev->wd, &hint);
                                if (t)
                                        target_check(ifd, t, file, expect, len, &n_left);
                        }
                }
        }

        for (size_t i = 0; i < n; i++) {
                if (v[i].at_nsec > 0)
                        printf("%lld.%09lld\n", (long long) (v[i].at_nsec / 1000000000),
                               (long long) (v[i].at_nsec % 1000000000));
                else
                        printf("-\n");
                free(v[i].dir);
        }
        free(v);
        close(ifd);
        return n_left == 0 ? 0 : 1;
}
