/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The event loop is sd-event. Each daemon has one; libcurl's multi interface
 * is driven from it (see http.h). These helpers keep timer code short.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"

/* sd-event.h already provides sd_event_unrefp, sd_event_source_unrefp and
 * sd_event_source_disable_unrefp for _cleanup_(). */

/* CLOCK_MONOTONIC now, in microseconds. */
uint64_t loop_now(sd_event *e);

/* Arms (or re-arms) a one-shot CLOCK_MONOTONIC timer @delay_usec from now.
 * *@s is created on first use and reused after; the loop owns nothing extra.
 * Accuracy is 1 ms, so timers coalesce. */
int loop_timer_arm(sd_event *e, sd_event_source **s, uint64_t delay_usec,
                   sd_event_time_handler_t cb, void *userdata);

/* Disables a timer armed with loop_timer_arm(); NULL or unarmed is fine. */
void loop_timer_disarm(sd_event_source *s);

/* Runs @e until *@done becomes true or @timeout_usec passes (0 = no limit).
 * Returns 0 when done, -ETIMEDOUT on timeout, or a negative errno from
 * sd_event_run(). For start-up code and tests; daemons use sd_event_loop(). */
int loop_run_until(sd_event *e, const bool *done, uint64_t timeout_usec);
