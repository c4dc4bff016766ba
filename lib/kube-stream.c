/* SPDX-License-Identifier: Apache-2.0 */

/*
 * The watch stream: newline-delimited JSON events, fed in chunks of any size.
 *
 * Bytes are scanned for '\n' once each (only the new chunk is searched), so
 * a 16 MiB event arriving one byte at a time costs O(size), not O(size^2).
 * A line that ends inside the chunk it started in is parsed in place without
 * copying; only the unfinished tail of a chunk is buffered.
 */

#include <string.h>

#include "jsonx.h"
#include "kube-internal.h"

struct kube_stream {
        char *buf; /* the unfinished line */
        size_t len, cap;
        size_t max_event;
        kube_stream_event_fn cb;
        void *userdata;
        int error; /* sticky until reset */
        uint64_t events;
        uint64_t line; /* lines seen, for messages */
};

static const char *const event_type_names[_KUBE_EVENT_TYPE_MAX] = {
        [KUBE_EVENT_ADDED] = "ADDED",     [KUBE_EVENT_MODIFIED] = "MODIFIED",
        [KUBE_EVENT_DELETED] = "DELETED", [KUBE_EVENT_BOOKMARK] = "BOOKMARK",
        [KUBE_EVENT_ERROR] = "ERROR",
};

const char *kube_event_type_to_string(kube_event_type t) {
        if ((unsigned) t >= _KUBE_EVENT_TYPE_MAX)
                return "UNKNOWN";
        return event_type_names[t];
}

int kube_stream_new(size_t max_event, kube_stream_event_fn cb, void *userdata, kube_stream **ret) {
        kube_stream *s;

        if (!cb || !ret)
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->max_event = max_event ?: KUBE_MAX_EVENT_SIZE_DEFAULT;
        s->cb = cb;
        s->userdata = userdata;
        *ret = s;
        return 0;
}

kube_stream *kube_stream_free(kube_stream *s) {
        if (!s)
                return NULL;
        free(s->buf);
        free(s);
        return NULL;
}

void kube_stream_reset(kube_stream *s) {
        if (!s)
                return;
        s->len = 0;
        s->error = 0;
        s->events = 0;
        s->line = 0;
        /* Don't keep a huge buffer around after an unusually large event. */
        if (s->cap > 1024 * 1024) {
                free(s->buf);
                s->buf = NULL;
                s->cap = 0;
        }
}

uint64_t kube_stream_get_events(const kube_stream *s) {
        return s ? s->events : 0;
}

static bool is_blank(const char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!strchr(" \t\r\n", p[i]) || !p[i])
                        return false;
        return true;
}

static int stream_fail(kube_stream *s, int r, err_info *ret_err, const char *line, size_t n,
                       const char *fmt, const char *detail) {
        char snip[200];

        s->error = r;
        err_info_clear(ret_err);
        if (ret_err)
                snprintf(ret_err->reason, sizeof(ret_err->reason), "BadWatchEvent");
        kube_snippet(line, n, 120, snip, sizeof(snip));
        return err_info_set(ret_err, r, "watch stream line %llu: %s%s%s: \"%s\"",
                            (unsigned long long) s->line, fmt, detail ? ": " : "", detail ?: "",
                            snip);
}

static int stream_line(kube_stream *s, const char *line, size_t n, err_info *ret_err) {
        _cleanup_json_ json_object *ev = NULL;
        json_object *type_o, *obj = NULL;
        const char *type;
        kube_event_type t;
        err_info perr;
        int r;

        s->line++;
        if (is_blank(line, n))
                return 0;

        err_info_clear(&perr);
        r = kube_json_parse(line, n, &ev, &perr);
        if (r == -ENOMEM)
                return (s->error = r);
        if (r < 0)
                return stream_fail(s, -EBADMSG, ret_err, line, n, "not JSON", perr.message);
        if (!json_object_is_type(ev, json_type_object))
                return stream_fail(s, -EBADMSG, ret_err, line, n, "not a JSON object", NULL);

        if (!json_object_object_get_ex(ev, "type", &type_o)) {
                /* A bare Status: the body of a failed watch request. */
                const char *kind = jsonx_get_string(ev, "kind");

                if (kind && streq(kind, "Status")) {
                        r = s->cb(KUBE_EVENT_ERROR, ev, s->userdata);
                        if (r < 0)
                                return (s->error = r);
                        s->events++;
                        return 0;
                }
                return stream_fail(s, -EBADMSG, ret_err, line, n, "event without \"type\"", NULL);
        }
        if (!json_object_is_type(type_o, json_type_string))
                return stream_fail(s, -EBADMSG, ret_err, line, n, "\"type\" is not a string", NULL);
        type = json_object_get_string(type_o);
        for (t = 0; t < _KUBE_EVENT_TYPE_MAX; t++)
                if (streq(type, event_type_names[t]))
                        break;
        if (t >= _KUBE_EVENT_TYPE_MAX)
                return stream_fail(s, -EBADMSG, ret_err, line, n, "unknown event type", type);
        if (!json_object_object_get_ex(ev, "object", &obj) ||
            !json_object_is_type(obj, json_type_object))
                return stream_fail(s, -EBADMSG, ret_err, line, n,
                                   "event without an \"object\" mapping", NULL);

        r = s->cb(t, obj, s->userdata);
        if (r < 0)
                return (s->error = r);
        s->events++;
        return 0;
}

/* The line buffer's largest size kept between events. */
#define STREAM_KEEP_BUF (64 * 1024)

static int stream_append(kube_stream *s, const char *p, size_t n) {
        if (s->len + n + 1 > s->cap) {
                size_t cap = MAX(s->cap * 2, s->len + n + 1);
                char *b;

                cap = MAX(cap, (size_t) 4096);
                if (cap > s->max_event + 2)
                        cap = s->max_event + 2;
                if (cap < s->len + n + 1)
                        cap = s->len + n + 1;
                b = realloc(s->buf, cap);
                if (!b)
                        return -ENOMEM;
                s->buf = b;
                s->cap = cap;
        }
        memcpy(s->buf + s->len, p, n);
        s->len += n;
        return 0;
}

static int stream_too_big(kube_stream *s, size_t n, err_info *ret_err) {
        s->error = -EFBIG;
        err_info_clear(ret_err);
        if (ret_err)
                snprintf(ret_err->reason, sizeof(ret_err->reason), "EventTooLarge");
        return err_info_set(ret_err, -EFBIG,
                            "watch stream line %llu: event larger than the limit of %zu bytes "
                            "(%zu bytes so far)",
                            (unsigned long long) s->line + 1, s->max_event, n);
}

int kube_stream_feed(kube_stream *s, const void *data, size_t len, err_info *ret_err) {
        const char *p = data;
        int r;

        if (!s || (!data && len > 0))
                return -EINVAL;
        if (s->error)
                return -EBADFD;

        while (len > 0) {
                const char *nl = memchr(p, '\n', len);
                size_t n;

                if (!nl) {
                        if (s->len + len > s->max_event)
                                return stream_too_big(s, s->len + len, ret_err);
                        r = stream_append(s, p, len);
                        if (r < 0)
                                return (s->error = r);
                        return 0;
                }

                n = (size_t) (nl - p);
                if (s->len + n > s->max_event)
                        return stream_too_big(s, s->len + n, ret_err);
                if (s->len == 0)
                        r = stream_line(s, p, n, ret_err);
                else {
                        size_t total;

                        r = stream_append(s, p, n);
                        if (r < 0)
                                return (s->error = r);
                        total = s->len;
                        s->len = 0;
                        r = stream_line(s, s->buf, total, ret_err);
                        if (s->cap > STREAM_KEEP_BUF) {
                                /* One large event (an index ConfigMap) is no
                                 * reason to hold its size for the watch's life. */
                                s->buf = mfree(s->buf);
                                s->cap = 0;
                        }
                }
                if (r < 0)
                        return r;
                p = nl + 1;
                len -= n + 1;
        }
        return 0;
}

int kube_stream_finish(kube_stream *s, err_info *ret_err) {
        size_t n;
        int r;

        if (!s)
                return -EINVAL;
        if (s->error)
                return -EBADFD;
        if (s->len == 0 || is_blank(s->buf, s->len)) {
                s->len = 0;
                return 0;
        }

        /* The server ends every event with a newline; a final line without one
         * is accepted only if it is a complete event. */
        n = s->len;
        s->len = 0;
        r = stream_line(s, s->buf, n, NULL);
        if (r == -EBADMSG) {
                char snip[200];

                s->error = -EBADMSG;
                err_info_clear(ret_err);
                if (ret_err)
                        snprintf(ret_err->reason, sizeof(ret_err->reason), "TruncatedWatch");
                kube_snippet(s->buf, n, 120, snip, sizeof(snip));
                return err_info_set(ret_err, -EBADMSG,
                                    "watch stream truncated: %zu bytes of an incomplete event at "
                                    "the end: \"%s\"",
                                    n, snip);
        }
        return r;
}
