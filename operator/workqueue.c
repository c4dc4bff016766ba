/* SPDX-License-Identifier: Apache-2.0 */

#include "loop.h"
#include "ratelimit.h"
#include "strmap.h"
#include "workqueue.h"

#define HEAP_NONE SIZE_MAX

typedef struct wq_item {
        bool queued;   /* in the ready FIFO */
        bool inflight; /* handed to the reconcile function */
        bool parked;   /* in flight, but waiting without a worker (workqueue_park()) */
        bool dirty;    /* added while in flight: queue again when done */
        unsigned failures;
        uint64_t due;    /* when a delayed add becomes ready (monotonic usec) */
        size_t heap_idx; /* position in the delay heap, or HEAP_NONE */
        struct wq_item *prev, *next;
        /* parked, waiting in the resume FIFO for a worker (workqueue_unpark()) */
        workqueue_resume_fn resume;
        void *resume_userdata;
        struct wq_item *resume_next;
        char key[];
} wq_item;

struct workqueue {
        sd_event *event;
        workqueue_opts opts;
        workqueue_reconcile_fn fn;
        void *userdata;
        bool paused;

        strmap items;                       /* of wq_item, owned: keys with state only */
        wq_item *head, *tail;               /* ready FIFO */
        wq_item *resume_head, *resume_tail; /* parked keys waiting for a worker */
        unsigned n_ready, n_inflight, n_parked;
        uint64_t n_adds, n_retries; /* see workqueue_adds() */

        wq_item **heap; /* min-heap on due, for delayed adds and backoff */
        size_t n_heap, heap_cap;
        sd_event_source *delay_timer;

        ratelimit bucket;
        sd_event_source *dispatch_defer;
};

static const char *item_key(const void *it) {
        return ((const wq_item *) it)->key;
}

static wq_item *item_get(workqueue *q, const char *key) {
        return strmap_get(&q->items, key);
}

static wq_item *item_get_or_new(workqueue *q, const char *key) {
        wq_item *it = item_get(q, key);
        size_t kl = strlen(key);
        void *old;

        if (it)
                return it;
        it = calloc(1, sizeof(*it) + kl + 1);
        if (!it)
                return NULL;
        memcpy(it->key, key, kl + 1);
        it->heap_idx = HEAP_NONE;
        if (strmap_put(&q->items, it, &old) < 0) {
                free(it);
                return NULL;
        }
        return it;
}

/* Drops an item that carries no state any more: a key that is neither queued,
 * in flight, waiting nor failing costs nothing. */
static void item_maybe_drop(workqueue *q, wq_item *it) {
        if (it->queued || it->inflight || it->heap_idx != HEAP_NONE || it->failures > 0 ||
            it->dirty)
                return;
        free(strmap_remove(&q->items, it->key));
}

/* ---- the delay heap: O(log n) per operation ---- */

static void heap_swap(workqueue *q, size_t a, size_t b) {
        wq_item *t = q->heap[a];

        q->heap[a] = q->heap[b];
        q->heap[b] = t;
        q->heap[a]->heap_idx = a;
        q->heap[b]->heap_idx = b;
}

static void heap_up(workqueue *q, size_t i) {
        while (i > 0 && q->heap[(i - 1) / 2]->due > q->heap[i]->due) {
                heap_swap(q, i, (i - 1) / 2);
                i = (i - 1) / 2;
        }
}

static void heap_down(workqueue *q, size_t i) {
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;

                if (l < q->n_heap && q->heap[l]->due < q->heap[m]->due)
                        m = l;
                if (r < q->n_heap && q->heap[r]->due < q->heap[m]->due)
                        m = r;
                if (m == i)
                        return;
                heap_swap(q, i, m);
                i = m;
        }
}

static void heap_remove(workqueue *q, wq_item *it) {
        size_t i = it->heap_idx;

        if (i == HEAP_NONE)
                return;
        it->heap_idx = HEAP_NONE;
        q->n_heap--;
        if (i == q->n_heap)
                return;
        q->heap[i] = q->heap[q->n_heap];
        q->heap[i]->heap_idx = i;
        heap_up(q, i);
        heap_down(q, q->heap[i]->heap_idx);
}

static int heap_push(workqueue *q, wq_item *it) {
        if (q->n_heap == q->heap_cap) {
                size_t cap = q->heap_cap ? q->heap_cap * 2 : 16;
                wq_item **h = realloc(q->heap, cap * sizeof(*h));

                if (!h)
                        return -ENOMEM;
                q->heap = h;
                q->heap_cap = cap;
        }
        it->heap_idx = q->n_heap;
        q->heap[q->n_heap++] = it;
        heap_up(q, it->heap_idx);
        return 0;
}

static int on_delay_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void delay_timer_update(workqueue *q) {
        uint64_t now;

        if (q->n_heap == 0) {
                loop_timer_disarm(q->delay_timer);
                return;
        }
        now = loop_now(q->event);
        (void) loop_timer_arm(q->event, &q->delay_timer,
                              q->heap[0]->due > now ? q->heap[0]->due - now : 0, on_delay_timer, q);
}

/* ---- dispatch ---- */

static void dispatch_schedule(workqueue *q) {
        if (q->dispatch_defer)
                (void) sd_event_source_set_enabled(q->dispatch_defer, SD_EVENT_ONESHOT);
}

static void fifo_push(workqueue *q, wq_item *it) {
        it->queued = true;
        it->next = NULL;
        it->prev = q->tail;
        if (q->tail)
                q->tail->next = it;
        else
                q->head = it;
        q->tail = it;
        q->n_ready++;
}

static void fifo_remove(workqueue *q, wq_item *it) {
        if (!it->queued)
                return;
        if (it->prev)
                it->prev->next = it->next;
        else
                q->head = it->next;
        if (it->next)
                it->next->prev = it->prev;
        else
                q->tail = it->prev;
        it->prev = it->next = NULL;
        it->queued = false;
        q->n_ready--;
}

static void item_push(workqueue *q, wq_item *it) {
        heap_remove(q, it);
        fifo_push(q, it);
        dispatch_schedule(q);
}

/* Makes @it ready now (the common path of add and of an expired delay). An
 * add counts when it queues the key or marks it to run again, as client-go's
 * does; one that finds it already waiting is a no-op. */
static void item_ready(workqueue *q, wq_item *it) {
        if (it->inflight) {
                if (!it->dirty)
                        q->n_adds++;
                it->dirty = true;
                return;
        }
        if (it->queued)
                return;
        q->n_adds++;
        item_push(q, it);
}

/* Resumed reconciles may use twice the workers: they are near their end, and
 * a little more concurrency keeps the API server busy without letting every
 * parked reconcile send its request at once. */
static unsigned resume_limit(const workqueue *q) {
        return 2 * q->opts.workers;
}

/* A parked key takes a worker again. */
static void unpark(workqueue *q, wq_item *it) {
        it->parked = false;
        q->n_parked--;
        q->n_inflight++;
}

static void resume_remove(workqueue *q, wq_item *it) {
        wq_item **p;

        if (!it->resume)
                return;
        for (p = &q->resume_head; *p; p = &(*p)->resume_next)
                if (*p == it) {
                        *p = it->resume_next;
                        if (q->resume_tail == it) {
                                wq_item *last = q->resume_head;

                                while (last && last->resume_next)
                                        last = last->resume_next;
                                q->resume_tail = last;
                        }
                        break;
                }
        it->resume = NULL;
        it->resume_next = NULL;
}

static int on_dispatch(sd_event_source *s, void *userdata) {
        workqueue *q = userdata;

        /* Reconciles that were already under way come first, paused or not:
         * in-flight ones always finish. */
        while (q->resume_head && q->n_inflight < resume_limit(q)) {
                wq_item *it = q->resume_head;
                workqueue_resume_fn fn = it->resume;
                void *ud = it->resume_userdata;

                q->resume_head = it->resume_next;
                if (!q->resume_head)
                        q->resume_tail = NULL;
                it->resume = NULL;
                it->resume_next = NULL;
                unpark(q, it);
                fn(ud);
        }
        while (!q->paused && q->head && q->n_inflight < q->opts.workers) {
                wq_item *it = q->head;

                fifo_remove(q, it);
                it->inflight = true;
                q->n_inflight++;
                /* May call workqueue_done() before it returns; that only
                 * reschedules us, so @it is not used after this call. */
                q->fn(q, it->key, q->userdata);
        }
        return 0;
}

static int on_delay_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        workqueue *q = userdata;
        uint64_t now = loop_now(q->event);

        while (q->n_heap > 0 && q->heap[0]->due <= now) {
                wq_item *it = q->heap[0];

                heap_remove(q, it);
                item_ready(q, it);
        }
        delay_timer_update(q);
        return 0;
}

int workqueue_new(sd_event *e, const workqueue_opts *opts, workqueue_reconcile_fn fn,
                  void *userdata, workqueue **ret) {
        _cleanup_(workqueue_freep) workqueue *q = NULL;
        int r;

        if (!e || !fn || !ret)
                return -EINVAL;
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->event = sd_event_ref(e);
        q->fn = fn;
        q->userdata = userdata;
        if (opts)
                q->opts = *opts;
        if (q->opts.workers == 0)
                q->opts.workers = 4;
        if (q->opts.base_delay_usec == 0)
                q->opts.base_delay_usec = 5 * USEC_PER_MSEC;
        if (q->opts.max_delay_usec == 0)
                q->opts.max_delay_usec = 1000 * USEC_PER_SEC;
        if (q->opts.qps == 0)
                q->opts.qps = 10;
        if (q->opts.burst == 0)
                q->opts.burst = 100;
        ratelimit_init(&q->bucket, q->opts.qps, q->opts.burst, loop_now(e));

        q->items = STRMAP_INIT(item_key);
        r = sd_event_add_defer(e, &q->dispatch_defer, on_dispatch, q);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(q->dispatch_defer, SD_EVENT_OFF);
        *ret = TAKE_PTR(q);
        return 0;
}

workqueue *workqueue_free(workqueue *q) {
        wq_item *it;

        if (!q)
                return NULL;
        sd_event_source_disable_unref(q->dispatch_defer);
        sd_event_source_disable_unref(q->delay_timer);
        STRMAP_FOREACH(it, &q->items, i)
        free(it);
        strmap_clear(&q->items);
        free(q->heap);
        sd_event_unref(q->event);
        free(q);
        return NULL;
}

int workqueue_add(workqueue *q, const char *key) {
        wq_item *it = item_get_or_new(q, key);

        if (!it)
                return -ENOMEM;
        item_ready(q, it);
        return 0;
}

int workqueue_add_after(workqueue *q, const char *key, uint64_t delay_usec) {
        uint64_t due;
        wq_item *it;
        int r;

        if (delay_usec == 0)
                return workqueue_add(q, key);
        it = item_get_or_new(q, key);
        if (!it)
                return -ENOMEM;
        if (it->queued)
                return 0; /* it runs sooner anyway */
        due = loop_now(q->event) + delay_usec;
        if (it->heap_idx != HEAP_NONE) {
                if (it->due <= due)
                        return 0; /* an earlier wake-up wins */
                it->due = due;
                heap_up(q, it->heap_idx);
        } else {
                it->due = due;
                r = heap_push(q, it);
                if (r < 0) {
                        item_maybe_drop(q, it);
                        return r;
                }
        }
        delay_timer_update(q);
        return 0;
}

static uint64_t failure_delay(const workqueue *q, unsigned failures) {
        uint64_t d = q->opts.base_delay_usec;

        for (unsigned i = 1; i < failures && d < q->opts.max_delay_usec; i++)
                d *= 2;
        return MIN(d, q->opts.max_delay_usec);
}

void workqueue_done(workqueue *q, const char *key, int r) {
        wq_item *it = item_get(q, key);

        if (!it || !it->inflight)
                return; /* a programming error; nothing sensible to do */
        it->inflight = false;
        resume_remove(q, it);
        if (it->parked) {
                it->parked = false;
                q->n_parked--;
        } else
                q->n_inflight--;
        if (r >= 0)
                it->failures = 0;
        else {
                /* controller-runtime's default: the larger of the key's own
                 * exponential backoff and the overall bucket's reservation. */
                it->failures++;
                q->n_retries++;
                (void) workqueue_add_after(q, key,
                                           MAX(failure_delay(q, it->failures),
                                               ratelimit_reserve(&q->bucket, loop_now(q->event))));
        }
        if (it->dirty) {
                /* Counted as an add when it was marked. */
                it->dirty = false;
                item_push(q, it);
        }
        item_maybe_drop(q, it); /* @key may be its key: not used after this */
        dispatch_schedule(q);
}

void workqueue_forget(workqueue *q, const char *key) {
        wq_item *it = item_get(q, key);

        if (!it)
                return;
        fifo_remove(q, it);
        heap_remove(q, it);
        it->failures = 0;
        it->dirty = false;
        delay_timer_update(q);
        item_maybe_drop(q, it);
}

void workqueue_set_paused(workqueue *q, bool paused) {
        q->paused = paused;
        if (!paused)
                dispatch_schedule(q);
}

unsigned workqueue_len(const workqueue *q) {
        return q->n_ready + (unsigned) q->n_heap;
}

bool workqueue_park(workqueue *q, const char *key) {
        wq_item *it = item_get(q, key);

        if (!it || !it->inflight)
                return false;
        if (it->parked)
                return true;
        if (q->n_parked >= WORKQUEUE_PARKED_PER_WORKER * q->opts.workers)
                return false;
        it->parked = true;
        q->n_parked++;
        q->n_inflight--;
        dispatch_schedule(q);
        return true;
}

void workqueue_unpark(workqueue *q, const char *key, workqueue_resume_fn fn, void *userdata) {
        wq_item *it = item_get(q, key);

        if (!it || !it->parked || it->resume) {
                fn(userdata);
                return;
        }
        if (!q->resume_head && q->n_inflight < resume_limit(q)) {
                unpark(q, it);
                fn(userdata);
                return;
        }
        it->resume = fn;
        it->resume_userdata = userdata;
        if (q->resume_tail)
                q->resume_tail->resume_next = it;
        else
                q->resume_head = it;
        q->resume_tail = it;
        dispatch_schedule(q);
}

unsigned workqueue_parked(const workqueue *q) {
        return q->n_parked;
}

uint64_t workqueue_adds(const workqueue *q) {
        return q->n_adds;
}

uint64_t workqueue_retries(const workqueue *q) {
        return q->n_retries;
}

unsigned workqueue_inflight(const workqueue *q) {
        return q->n_inflight;
}

size_t workqueue_keys(const workqueue *q) {
        return strmap_count(&q->items);
}

unsigned workqueue_failures(const workqueue *q, const char *key) {
        const wq_item *it = strmap_get(&q->items, key);

        return it ? it->failures : 0;
}
