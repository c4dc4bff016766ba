/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The health and metrics endpoint of both daemons (libmicrohttpd on its own
 * thread, so a busy or stuck event loop can't hide from it):
 *   /healthz  200 while the event loop has beaten its heart recently, else 503.
 *             Liveness reflects only the daemon's own loop, never whether the
 *             API server or the object store can be reached.
 *   /readyz   200 once the daemon said it is ready, else 503.
 *   /metrics  the registry of metrics.h, Prometheus text format.
 */

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

typedef struct healthd healthd;

/* Listens on @address: "HOST:PORT", ":PORT" (all interfaces, as in a pod) or
 * "PORT"; port 0 picks a free one. A loop is considered alive while its last
 * heartbeat is younger than @liveness_timeout_usec (0: 30 s). Returns -EINVAL
 * for a malformed address, -EADDRINUSE etc. from bind. */
int healthd_start(const char *address, uint64_t liveness_timeout_usec, healthd **ret);
healthd *healthd_free(healthd *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(healthd *, healthd_free);

/* Called from the event loop (a timer every few seconds). Thread-safe. */
void healthd_heartbeat(healthd *h);
void healthd_set_ready(healthd *h, bool ready);

/* The port actually bound. */
uint16_t healthd_port(const healthd *h);
