/* SPDX-License-Identifier: Apache-2.0 */

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>

#include "healthd.h"
#include "metrics.h"

struct healthd {
        struct MHD_Daemon *daemon;
        uint16_t port;
        uint64_t liveness_timeout_usec;
        _Atomic uint64_t last_beat; /* CLOCK_MONOTONIC usec */
        atomic_bool ready;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / NSEC_PER_USEC;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             char *body, size_t len, enum MHD_ResponseMemoryMode mode) {
        struct MHD_Response *resp;
        enum MHD_Result ret;

        resp = MHD_create_response_from_buffer(len, body, mode);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", type);
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
        healthd *h = cls;
        static const char ok[] = "ok\n", dead[] = "event loop stalled\n", unready[] = "not ready\n",
                          nf[] = "not found\n";

        if (!streq(method, "GET") && !streq(method, "HEAD"))
                return reply(conn, 405, "text/plain", (char *) "method not allowed\n", 19,
                             MHD_RESPMEM_PERSISTENT);
        if (streq(url, "/healthz") || streq(url, "/livez")) {
                uint64_t beat = atomic_load(&h->last_beat);
                bool alive = now_usec() - beat < h->liveness_timeout_usec;

                return alive ? reply(conn, 200, "text/plain", (char *) ok, sizeof(ok) - 1,
                                     MHD_RESPMEM_PERSISTENT)
                             : reply(conn, 503, "text/plain", (char *) dead, sizeof(dead) - 1,
                                     MHD_RESPMEM_PERSISTENT);
        }
        if (streq(url, "/readyz"))
                return atomic_load(&h->ready) ? reply(conn, 200, "text/plain", (char *) ok,
                                                      sizeof(ok) - 1, MHD_RESPMEM_PERSISTENT)
                                              : reply(conn, 503, "text/plain", (char *) unready,
                                                      sizeof(unready) - 1, MHD_RESPMEM_PERSISTENT);
        if (streq(url, "/metrics")) {
                char *body = NULL;
                size_t len = 0;

                if (metrics_render(&body, &len) < 0)
                        return MHD_NO;
                return reply(conn, 200, "text/plain; version=0.0.4", body, len,
                             MHD_RESPMEM_MUST_FREE);
        }
        return reply(conn, 404, "text/plain", (char *) nf, sizeof(nf) - 1, MHD_RESPMEM_PERSISTENT);
}

static int parse_address(const char *address, struct sockaddr_in *ret) {
        const char *colon = strrchr(address, ':');
        const char *port_s = colon ? colon + 1 : address;
        char host[64] = "";
        char *end;
        unsigned long port;

        errno = 0;
        port = strtoul(port_s, &end, 10);
        if (isempty(port_s) || *end || errno || port > 65535)
                return -EINVAL;
        if (colon) {
                size_t n = (size_t) (colon - address);

                if (n >= sizeof(host))
                        return -EINVAL;
                memcpy(host, address, n);
                host[n] = '\0';
        }
        *ret = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
        if (host[0] == '\0' || streq(host, "0.0.0.0"))
                ret->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (streq(host, "localhost"))
                ret->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &ret->sin_addr) != 1)
                return -EINVAL;
        return 0;
}

/* The listening socket is ours, so a failure to bind is reported with its
 * own errno (libmicrohttpd would leave errno to chance and print its own
 * line to stderr, outside the JSON log). */
static int listen_on(const struct sockaddr_in *sa) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) < 0 ||
            bind(fd, (const struct sockaddr *) sa, sizeof(*sa)) < 0 || listen(fd, 64) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        return fd;
}

int healthd_start(const char *address, uint64_t liveness_timeout_usec, healthd **ret) {
        struct sockaddr_in sa;
        socklen_t salen = sizeof(sa);
        healthd *h;
        int r, fd;

        if (!address || !ret)
                return -EINVAL;
        r = parse_address(address, &sa);
        if (r < 0)
                return r;
        fd = listen_on(&sa);
        if (fd < 0)
                return fd;
        if (getsockname(fd, (struct sockaddr *) &sa, &salen) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        h = calloc(1, sizeof(*h));
        if (!h) {
                close(fd);
                return -ENOMEM;
        }
        h->liveness_timeout_usec = liveness_timeout_usec ?: 30 * USEC_PER_SEC;
        h->port = ntohs(sa.sin_port);
        atomic_store(&h->last_beat, now_usec());
        /* Without MHD_USE_ERROR_LOG: a client that hangs up is not news, and
         * the library's thread must not write into our log. */
        h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, h,
                                     MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, 32U,
                                     MHD_OPTION_CONNECTION_TIMEOUT, 10U, MHD_OPTION_END);
        if (!h->daemon) {
                /* Not closed here: libmicrohttpd closes a socket it was given
                 * on its failure paths too, and closing it again could close
                 * another thread's new descriptor. (A thread it couldn't
                 * start is the usual cause.) */
                free(h);
                return -EAGAIN;
        }
        *ret = h;
        return 0;
}

healthd *healthd_free(healthd *h) {
        if (!h)
                return NULL;
        if (h->daemon)
                MHD_stop_daemon(h->daemon);
        free(h);
        return NULL;
}

void healthd_heartbeat(healthd *h) {
        if (h)
                atomic_store(&h->last_beat, now_usec());
}

void healthd_set_ready(healthd *h, bool ready) {
        if (h)
                atomic_store(&h->ready, ready);
}

uint16_t healthd_port(const healthd *h) {
        return h->port;
}
