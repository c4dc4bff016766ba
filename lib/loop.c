/* SPDX-License-Identifier: Apache-2.0 */

#include <time.h>

#include "loop.h"

uint64_t loop_now(sd_event *e) {
        uint64_t t;
        struct timespec ts;

        /* sd_event_now() returns the time of the last wakeup, which is what
         * timers compare against; before the first iteration it falls back to
         * the current time and returns 1. */
        if (e && sd_event_now(e, CLOCK_MONOTONIC, &t) >= 0)
                return t;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / NSEC_PER_USEC;
}

int loop_timer_arm(sd_event *e, sd_event_source **s, uint64_t delay_usec,
                   sd_event_time_handler_t cb, void *userdata) {
        int r;

        if (!e || !s || !cb)
                return -EINVAL;

        if (!*s)
                return sd_event_add_time_relative(e, s, CLOCK_MONOTONIC, delay_usec, USEC_PER_MSEC,
                                                  cb, userdata);

        r = sd_event_source_set_time_relative(*s, delay_usec);
        if (r < 0)
                return r;
        (void) sd_event_source_set_userdata(*s, userdata);
        return sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
}

void loop_timer_disarm(sd_event_source *s) {
        if (s)
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
}

static int on_run_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        *(bool *) userdata = true;
        return 0;
}

int loop_run_until(sd_event *e, const bool *done, uint64_t timeout_usec) {
        _cleanup_(sd_event_source_unrefp) sd_event_source *timer = NULL;
        bool timed_out = false;
        int r;

        if (!e || !done)
                return -EINVAL;

        if (timeout_usec > 0) {
                r = sd_event_add_time_relative(e, &timer, CLOCK_MONOTONIC, timeout_usec, 1,
                                               on_run_timeout, &timed_out);
                if (r < 0)
                        return r;
        }

        while (!*done) {
                if (timed_out)
                        return -ETIMEDOUT;
                r = sd_event_run(e, UINT64_MAX);
                if (r < 0)
                        return r;
                if (sd_event_get_state(e) == SD_EVENT_FINISHED && !*done)
                        return -ECANCELED;
        }
        return 0;
}
