/* SPDX-License-Identifier: Apache-2.0 */
/* The operator's work queue: dedup, no concurrent reconciles of a key,
 * per-key failure backoff, the worker limit, pausing and the token bucket. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "loop.h"
#include "workqueue.h"

#define MAX_CALLS 64

typedef struct recorder {
        sd_event *event;
        bool complete;  /* call workqueue_done() right away */
        int result;     /* ... with this result */
        unsigned calls; /* reconciles started */
        char keys[MAX_CALLS][32];
        uint64_t at[MAX_CALLS];
        bool done; /* stop flag for loop_run_until() */
        unsigned stop_after;
} recorder;

static void reconcile(workqueue *q, const char *key, void *userdata) {
        recorder *rec = userdata;

        if (rec->calls < MAX_CALLS) {
                snprintf(rec->keys[rec->calls], sizeof(rec->keys[0]), "%s", key);
                rec->at[rec->calls] = loop_now(rec->event);
        }
        rec->calls++;
        if (rec->stop_after && rec->calls >= rec->stop_after)
                rec->done = true;
        if (rec->complete)
                workqueue_done(q, key, rec->result);
}

static void run_for(recorder *rec, uint64_t usec) {
        bool never = false;

        assert_int_equal(loop_run_until(rec->event, &never, usec), -ETIMEDOUT);
}

static workqueue *make_queue(recorder *rec, const workqueue_opts *o) {
        workqueue *q = NULL;

        assert_int_equal(sd_event_new(&rec->event), 0);
        assert_int_equal(workqueue_new(rec->event, o, reconcile, rec, &q), 0);
        return q;
}

static void finish(recorder *rec, workqueue *q) {
        workqueue_free(q);
        sd_event_unref(rec->event);
}

static void test_adds_are_deduplicated(void **state) {
        recorder rec = {.complete = true};
        workqueue *q = make_queue(&rec, NULL);

        for (int i = 0; i < 5; i++)
                assert_int_equal(workqueue_add(q, "ns/a"), 0);
        assert_int_equal(workqueue_add(q, "ns/b"), 0);
        assert_int_equal(workqueue_len(q), 2);
        run_for(&rec, 50 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 2);
        assert_string_equal(rec.keys[0], "ns/a"); /* FIFO order */
        assert_string_equal(rec.keys[1], "ns/b");
        assert_int_equal(workqueue_len(q), 0);
        /* Only the adds that queued a key count (client-go's adds_total). */
        assert_int_equal(workqueue_adds(q), 2);
        assert_int_equal(workqueue_retries(q), 0);
        /* Done and idle: nothing is kept for either key. */
        assert_int_equal(workqueue_keys(q), 0);
        finish(&rec, q);
}

static void test_a_key_is_never_reconciled_concurrently(void **state) {
        recorder rec = {.complete = false};
        workqueue *q = make_queue(&rec, NULL);

        workqueue_add(q, "ns/a");
        run_for(&rec, 20 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 1);
        assert_int_equal(workqueue_inflight(q), 1);

        /* Added twice while in flight: not started again... */
        workqueue_add(q, "ns/a");
        workqueue_add(q, "ns/a");
        run_for(&rec, 20 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 1);
        assert_int_equal(workqueue_adds(q), 2); /* the first, and one to run again */

        /* ...but exactly once more after it finishes. */
        workqueue_done(q, "ns/a", 0);
        run_for(&rec, 20 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 2);
        assert_int_equal(workqueue_adds(q), 2); /* the requeue was counted when marked */
        workqueue_done(q, "ns/a", 0);
        run_for(&rec, 20 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 2);
        assert_int_equal(workqueue_inflight(q), 0);
        finish(&rec, q);
}

static void test_failures_back_off_exponentially_and_success_forgets(void **state) {
        workqueue_opts o = {.base_delay_usec = 20 * USEC_PER_MSEC, .max_delay_usec = USEC_PER_SEC};
        recorder rec = {.complete = true, .result = -EIO, .stop_after = 4};
        workqueue *q = make_queue(&rec, &o);

        workqueue_add(q, "ns/a");
        assert_int_equal(loop_run_until(rec.event, &rec.done, 5 * USEC_PER_SEC), 0);
        assert_int_equal(rec.calls, 4);
        /* Delays of 20, 40, 80 ms between attempts (timers have 1 ms accuracy). */
        assert_true(rec.at[1] - rec.at[0] >= 19 * USEC_PER_MSEC);
        assert_true(rec.at[2] - rec.at[1] >= 39 * USEC_PER_MSEC);
        assert_true(rec.at[3] - rec.at[2] >= 79 * USEC_PER_MSEC);
        assert_int_equal(workqueue_failures(q, "ns/a"), 4);
        /* Each failure is a retry; each retry that came due, an add. */
        assert_int_equal(workqueue_retries(q), 4);
        assert_int_equal(workqueue_adds(q), 4);
        assert_int_equal(workqueue_keys(q), 1); /* its failures and its retry */

        /* A success resets the history: the next failure waits the base delay. */
        rec.result = 0;
        run_for(&rec, 300 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 5);
        assert_int_equal(workqueue_failures(q, "ns/a"), 0);
        assert_int_equal(workqueue_retries(q), 4);
        assert_int_equal(workqueue_adds(q), 5);
        assert_int_equal(workqueue_keys(q), 0);
        finish(&rec, q);
}

static void test_backoff_is_capped(void **state) {
        workqueue_opts o = {.base_delay_usec = USEC_PER_MSEC, .max_delay_usec = 4 * USEC_PER_MSEC};
        recorder rec = {.complete = true, .result = -EAGAIN, .stop_after = 12};
        workqueue *q = make_queue(&rec, &o);

        workqueue_add(q, "ns/a");
        assert_int_equal(loop_run_until(rec.event, &rec.done, 2 * USEC_PER_SEC), 0);
        /* Uncapped, attempt 12 would wait 2 s; capped, all twelve fit in well under 1 s. */
        assert_true(rec.at[11] - rec.at[0] < 500 * USEC_PER_MSEC);
        finish(&rec, q);
}

static void test_worker_limit(void **state) {
        workqueue_opts o = {.workers = 2};
        recorder rec = {.complete = false};
        workqueue *q = make_queue(&rec, &o);
        char key[16];

        for (int i = 0; i < 5; i++) {
                snprintf(key, sizeof(key), "ns/k%d", i);
                workqueue_add(q, key);
        }
        run_for(&rec, 20 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 2);
        assert_int_equal(workqueue_inflight(q), 2);
        assert_int_equal(workqueue_len(q), 3);
        workqueue_done(q, "ns/k0", 0);
        run_for(&rec, 20 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 3);
        assert_string_equal(rec.keys[2], "ns/k2");
        finish(&rec, q);
}

/* A parked reconcile frees its worker but keeps its key in flight; the
 * number parked is bounded. */
static void test_parked_keys_free_workers(void **state) {
        workqueue_opts o = {.workers = 1};
        recorder rec = {.complete = false};
        workqueue *q = make_queue(&rec, &o);
        unsigned parked = 0;
        char key[16];

        for (int i = 0; i < 40; i++) {
                snprintf(key, sizeof(key), "ns/k%d", i);
                workqueue_add(q, key);
        }
        run_for(&rec, 20 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 1);
        assert_false(workqueue_park(q, "ns/k1")); /* not in flight */
        assert_true(workqueue_park(q, "ns/k0"));
        assert_true(workqueue_park(q, "ns/k0")); /* twice: no change */
        assert_int_equal(workqueue_parked(q), 1);
        assert_int_equal(workqueue_inflight(q), 0);
        run_for(&rec, 20 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 2);
        assert_string_equal(rec.keys[1], "ns/k1");

        /* k0 is still in flight: added again, it waits for its done. */
        workqueue_add(q, "ns/k0");
        /* Park everything that comes until the bound says no. */
        for (unsigned i = 1; i < 40; i++) {
                snprintf(key, sizeof(key), "ns/k%u", i);
                if (!workqueue_park(q, key))
                        break;
                run_for(&rec, 5 * USEC_PER_MSEC);
        }
        parked = workqueue_parked(q);
        assert_int_equal(parked, WORKQUEUE_PARKED_PER_WORKER * o.workers);
        assert_int_equal(workqueue_inflight(q), 1); /* the one refused keeps its worker */
        for (unsigned i = 0; i < rec.calls && i < MAX_CALLS; i++)
                if (i > 0)
                        assert_string_not_equal(rec.keys[i], "ns/k0");

        /* Done on a parked key releases no worker it doesn't hold, and
         * requeues the key added meanwhile. */
        workqueue_done(q, "ns/k0", 0);
        assert_int_equal(workqueue_parked(q), parked - 1);
        assert_int_equal(workqueue_inflight(q), 1);
        finish(&rec, q);
}

typedef struct resumed {
        unsigned *order; /* where the next resume writes its number */
        unsigned mine;
} resumed;

static void on_resume(void *userdata) {
        resumed *r = userdata;

        r->mine = ++*r->order;
}

static void start_and_park(recorder *rec, workqueue *q, const char *key) {
        workqueue_add(q, key);
        run_for(rec, 5 * USEC_PER_MSEC);
        assert_string_equal(rec->keys[rec->calls - 1], key);
        assert_true(workqueue_park(q, key));
}

/* An unparked key waits for a worker (resumed keys may hold up to twice the
 * workers), then goes before keys not started. */
static void test_unparked_keys_wait_for_a_worker(void **state) {
        workqueue_opts o = {.workers = 1};
        recorder rec = {.complete = false};
        workqueue *q = make_queue(&rec, &o);
        unsigned order = 0;
        resumed a = {.order = &order}, b = {.order = &order}, c = {.order = &order},
                z = {.order = &order};

        start_and_park(&rec, q, "ns/a");
        start_and_park(&rec, q, "ns/b");
        start_and_park(&rec, q, "ns/c");
        workqueue_add(q, "ns/d");
        run_for(&rec, 5 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 4); /* d holds the worker */
        assert_int_equal(workqueue_parked(q), 3);

        workqueue_unpark(q, "ns/a", on_resume, &a); /* the second slot: at once */
        assert_int_equal(a.mine, 1);
        workqueue_unpark(q, "ns/b", on_resume, &b);
        workqueue_unpark(q, "ns/c", on_resume, &c);
        workqueue_add(q, "ns/e");
        run_for(&rec, 10 * USEC_PER_MSEC);
        assert_int_equal(b.mine + c.mine, 0);
        assert_int_equal(rec.calls, 4);
        assert_int_equal(workqueue_inflight(q), 2);

        workqueue_done(q, "ns/d", 0);
        run_for(&rec, 10 * USEC_PER_MSEC);
        assert_int_equal(b.mine, 2);
        assert_int_equal(c.mine, 0);    /* in order, one per freed slot */
        assert_int_equal(rec.calls, 4); /* e waits behind the resumes */
        workqueue_done(q, "ns/a", 0);
        run_for(&rec, 10 * USEC_PER_MSEC);
        assert_int_equal(c.mine, 3);
        assert_int_equal(rec.calls, 4); /* two in flight: no new key */
        workqueue_done(q, "ns/b", 0);
        run_for(&rec, 10 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 4); /* one in flight, one worker */
        workqueue_done(q, "ns/c", 0);
        run_for(&rec, 10 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 5);
        assert_string_equal(rec.keys[4], "ns/e");

        /* A key that isn't parked runs at once. */
        workqueue_unpark(q, "ns/zz", on_resume, &z);
        assert_int_equal(z.mine, 4);

        /* A parked key done while it waits to resume leaves the FIFO. */
        assert_true(workqueue_park(q, "ns/e"));
        start_and_park(&rec, q, "ns/f");
        workqueue_add(q, "ns/g");
        run_for(&rec, 5 * USEC_PER_MSEC);
        z.mine = 0;
        workqueue_unpark(q, "ns/e", on_resume, &z);
        assert_int_equal(z.mine, 5);
        a.mine = 0;
        workqueue_unpark(q, "ns/f", on_resume, &a);
        assert_int_equal(a.mine, 0);
        workqueue_done(q, "ns/f", 0);
        workqueue_done(q, "ns/e", 0);
        workqueue_done(q, "ns/g", 0);
        run_for(&rec, 10 * USEC_PER_MSEC);
        assert_int_equal(a.mine, 0);
        assert_int_equal(workqueue_parked(q), 0);
        assert_int_equal(workqueue_inflight(q), 0);
        finish(&rec, q);
}

static void test_paused_queue_hands_out_nothing(void **state) {
        recorder rec = {.complete = true};
        workqueue *q = make_queue(&rec, NULL);

        workqueue_set_paused(q, true);
        workqueue_add(q, "ns/a");
        run_for(&rec, 30 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 0);
        assert_int_equal(workqueue_len(q), 1);
        workqueue_set_paused(q, false);
        run_for(&rec, 30 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 1);
        finish(&rec, q);
}

static void test_token_bucket_paces_retries_not_new_work(void **state) {
        workqueue_opts o = {.qps = 50, .burst = 1, .base_delay_usec = USEC_PER_MSEC};
        recorder rec = {.complete = true, .result = -EIO, .stop_after = 10};
        workqueue *q = make_queue(&rec, &o);
        char key[16];

        for (int i = 0; i < 5; i++) {
                snprintf(key, sizeof(key), "ns/k%d", i);
                workqueue_add(q, key);
        }
        assert_int_equal(loop_run_until(rec.event, &rec.done, 2 * USEC_PER_SEC), 0);
        /* New work is not paced: the five first attempts come at once... */
        assert_true(rec.at[4] - rec.at[0] < 20 * USEC_PER_MSEC);
        /* ...but their retries share one token every 20 ms, though each key's
         * own backoff is only 1 ms. */
        assert_true(rec.at[9] - rec.at[5] >= 4 * 20 * USEC_PER_MSEC - USEC_PER_MSEC);
        finish(&rec, q);
}

static void test_add_after_and_forget(void **state) {
        recorder rec = {.complete = true};
        workqueue *q = make_queue(&rec, NULL);
        uint64_t t0;

        t0 = loop_now(rec.event);
        workqueue_add_after(q, "ns/a", 500 * USEC_PER_MSEC);
        workqueue_add_after(q, "ns/a", 30 * USEC_PER_MSEC); /* the earlier one wins */
        workqueue_add_after(q, "ns/b", 30 * USEC_PER_MSEC);
        workqueue_forget(q, "ns/b");
        run_for(&rec, 200 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 1);
        assert_string_equal(rec.keys[0], "ns/a");
        assert_true(rec.at[0] - t0 >= 29 * USEC_PER_MSEC);
        assert_true(rec.at[0] - t0 < 400 * USEC_PER_MSEC);
        /* An immediate add overrides a pending delay. */
        workqueue_add_after(q, "ns/c", 10 * USEC_PER_SEC);
        workqueue_add(q, "ns/c");
        run_for(&rec, 30 * USEC_PER_MSEC);
        assert_int_equal(rec.calls, 2);
        assert_int_equal(workqueue_len(q), 0);
        finish(&rec, q);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_adds_are_deduplicated),
                cmocka_unit_test(test_a_key_is_never_reconciled_concurrently),
                cmocka_unit_test(test_failures_back_off_exponentially_and_success_forgets),
                cmocka_unit_test(test_backoff_is_capped),
                cmocka_unit_test(test_worker_limit),
                cmocka_unit_test(test_parked_keys_free_workers),
                cmocka_unit_test(test_unparked_keys_wait_for_a_worker),
                cmocka_unit_test(test_paused_queue_hands_out_nothing),
                cmocka_unit_test(test_token_bucket_paces_retries_not_new_work),
                cmocka_unit_test(test_add_after_and_forget),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
