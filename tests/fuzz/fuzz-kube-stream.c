/* SPDX-License-Identifier: Apache-2.0 */

/*
 * Fuzzes the watch-stream parser and Status parsing with untrusted bytes.
 * Besides "no crash", it checks the parser's one promise: the events (and the
 * first error) do not depend on how the bytes are split into chunks. The
 * first input byte picks the chunking.
 */

#include <stdint.h>
#include <string.h>

#include "jsonx.h"
#include "kube.h"

#define MAX_EVENT 4096

typedef struct trace {
        uint64_t hash; /* FNV-1a over "type:object" of every event */
        unsigned n;
} trace;

static int on_event(kube_event_type type, json_object *obj, void *userdata) {
        trace *t = userdata;
        const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);

        t->hash = (t->hash ^ (uint64_t) type) * UINT64_C(0x100000001b3);
        for (; s && *s; s++)
                t->hash = (t->hash ^ (unsigned char) *s) * UINT64_C(0x100000001b3);
        t->n++;
        return 0;
}

/* Feeds @data in chunks whose sizes come from @seed (0: one chunk) and
 * returns the first error, or that of finish. */
static int run(const uint8_t *data, size_t size, uint8_t seed, trace *t) {
        kube_stream *s = NULL;
        uint32_t x = seed;
        size_t off = 0;
        int r = 0;

        *t = (trace){.hash = UINT64_C(0xcbf29ce484222325)};
        if (kube_stream_new(MAX_EVENT, on_event, t, &s) < 0)
                return -ENOMEM;
        while (off < size && r == 0) {
                size_t n = size - off;

                if (seed != 0) {
                        x = x * 1103515245u + 12345u;
                        n = MIN(n, (size_t) ((x >> 16) % 64) + 1);
                }
                r = kube_stream_feed(s, data + off, n, NULL);
                off += n;
        }
        if (r == 0)
                r = kube_stream_finish(s, NULL);
        kube_stream_free(s);
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        trace whole, chunked;
        err_info e;
        uint8_t seed;
        int r1, r2;

        if (size == 0)
                return 0;
        seed = data[0] | 1;
        data++;
        size--;

        r1 = run(data, size, 0, &whole);
        r2 = run(data, size, seed, &chunked);
        if (r1 == -ENOMEM || r2 == -ENOMEM)
                return 0;
        if (r1 != r2 || whole.n != chunked.n || whole.hash != chunked.hash)
                __builtin_trap();

        /* The same bytes as an error response body. */
        r1 = kube_status_parse(500, (const char *) data, size, &e);
        if (r1 >= 0 || strnlen(e.message, sizeof(e.message)) >= sizeof(e.message))
                __builtin_trap();
        return 0;
}
