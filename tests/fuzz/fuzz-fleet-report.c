/* SPDX-License-Identifier: Apache-2.0 */

/*
 * libFuzzer harness for fleet_parse_report() (operator/fleet.c): every
 * agent writes its status/NODE.json to the object store, so to the operator
 * these are untrusted bytes (docs/status-object.md). `make fuzz
 * FUZZER=fuzz-fleet-report` runs it under libFuzzer; `make check` replays
 * tests/fuzz/corpus/fleet-report/ through tests/fuzz/replay.c.
 *
 * Besides "never crash", it checks what the aggregation relies on: a failure
 * is -EBADMSG (with a message) or -ENOMEM and leaves the out-parameters
 * untouched; a success yields facts in which every key is a "NS/NAME",
 * "matched" is a boolean, "failed" a list, and "applied", "lkg" and every
 * failed entry are well-formed sha256 digests, at a time not before the
 * epoch. The facts are then written back as a minimal NodeStatus document
 * (the parser has no writer of its own: it is a projection) and parsed
 * again, which must give the same facts and the same time.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet.h"
#include "jsonx.h"

#define MAX_RFC3339_TIME INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fails (a crash, for libFuzzer) naming the broken promise. */
#define check(ok) check_at((ok), #ok, __LINE__)
static void check_at(bool ok, const char *what, int line) {
        if (ok)
                return;
        fprintf(stderr, "fuzz-fleet-report.c:%d: check failed: %s\n", line, what);
        abort();
}

/* "sha256:" and 64 lowercase hex digits, checked here without the parser's
 * own helpers. */
static bool is_digest(json_object *o) {
        const char *s;

        if (!json_object_is_type(o, json_type_string))
                return false;
        s = json_object_get_string(o);
        if ((size_t) json_object_get_string_len(o) != 7 + 64 || strncmp(s, "sha256:", 7) != 0)
                return false;
        for (s += 7; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

static void check_facts(json_object *facts) {
        check(json_object_is_type(facts, json_type_object));
        json_object_object_foreach(facts, key, f) {
                json_object *v;

                check(strchr(key, '/') != NULL);
                check(json_object_is_type(f, json_type_object));
                json_object_object_foreach(f, k, x) {
                        (void) x;
                        check(streq(k, "matched") || streq(k, "applied") || streq(k, "lkg") ||
                              streq(k, "failed"));
                }
                check(json_object_object_get_ex(f, "matched", &v) &&
                      json_object_is_type(v, json_type_boolean));
                check(!json_object_object_get_ex(f, "applied", &v) || is_digest(v));
                check(!json_object_object_get_ex(f, "lkg", &v) || is_digest(v));
                check(json_object_object_get_ex(f, "failed", &v) &&
                      json_object_is_type(v, json_type_array));
                for (size_t i = 0; i < json_object_array_length(v); i++)
                        check(is_digest(json_object_array_get_idx(v, i)));
        }
}

/* {"digest":D}, the shape the agent writes for applied, lastKnownGood and
 * each failed revision. */
static json_object *digest_ref(json_object *digest) {
        json_object *o = json_object_new_object();

        if (o)
                json_object_object_add(o, "digest", json_object_get(digest));
        return o;
}

/* The canonical text of a NodeStatus document that says what @facts say at
 * @updated, or NULL (out of memory). */
static char *facts_to_report(json_object *facts, int64_t updated, size_t *ret_len) {
        _cleanup_json_ json_object *doc = json_object_new_object();
        json_object *bundles = json_object_new_object();
        char when[64];
        time_t t = (time_t) updated;
        struct tm tm;
        char *text = NULL;

        check(gmtime_r(&t, &tm) != NULL);
        check(strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0);
        if (!doc || !bundles) {
                json_object_put(bundles);
                return NULL;
        }
        json_object_object_add(doc, "apiVersion", json_object_new_string("ballast.dev/v1alpha1"));
        json_object_object_add(doc, "kind", json_object_new_string("NodeStatus"));
        json_object_object_add(doc, "node", json_object_new_string("fuzz"));
        json_object_object_add(doc, "updated", json_object_new_string(when));
        json_object_object_add(doc, "bundles", bundles);
        json_object_object_foreach(facts, key, f) {
                json_object *b = json_object_new_object(), *failed = json_object_new_array(),
                            *v = NULL;

                if (!b || !failed) {
                        json_object_put(b);
                        json_object_put(failed);
                        return NULL;
                }
                json_object_object_add(
                        b, "matched", json_object_new_boolean(jsonx_get_bool(f, "matched", false)));
                if (json_object_object_get_ex(f, "applied", &v))
                        json_object_object_add(b, "applied", digest_ref(v));
                if (json_object_object_get_ex(f, "lkg", &v))
                        json_object_object_add(b, "lastKnownGood", digest_ref(v));
                json_object_object_get_ex(f, "failed", &v);
                for (size_t i = 0; i < json_object_array_length(v); i++)
                        json_object_array_add(failed, digest_ref(json_object_array_get_idx(v, i)));
                json_object_object_add(b, "failed", failed);
                json_object_object_add(bundles, key, b);
        }
        if (jsonx_to_canonical(doc, &text, ret_len) < 0)
                return NULL;
        return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static char sentinel;
        json_object *const untouched = (json_object *) &sentinel;
        json_object *facts = untouched;
        _cleanup_json_ json_object *owned = NULL, *again = NULL;
        _cleanup_free_ char *doc = NULL, *a = NULL, *b = NULL;
        int64_t updated = -42, updated_again = -42;
        size_t doc_len = 0;
        err_info e;
        int r;

        if (size > 1024 * 1024)
                return 0;
        err_info_clear(&e);
        r = fleet_parse_report((const char *) data, size, &facts, &updated, &e);
        if (r < 0) {
                check(r == -EBADMSG || r == -ENOMEM);
                check(r != -EBADMSG || e.message[0] != '\0');
                check(facts == untouched && updated == -42);
                return 0;
        }
        check(r == 0 && facts != untouched && updated >= 0);
        owned = facts;
        check_facts(facts);

        /* Written back and read again: the same facts at the same time. A
         * leap second at the end of 9999 is accepted (RFC 3339 allows second
         * 60, timegm() carries it) but lands in a year that needs five
         * digits, which RFC 3339 cannot write: no round trip for that one. */
        if (updated > MAX_RFC3339_TIME)
                return 0;
        doc = facts_to_report(facts, updated, &doc_len);
        if (!doc)
                return 0;
        err_info_clear(&e);
        r = fleet_parse_report(doc, doc_len, &again, &updated_again, &e);
        if (r == -ENOMEM)
                return 0;
        check(r == 0 && updated_again == updated);
        if (jsonx_to_canonical(facts, &a, NULL) >= 0 && jsonx_to_canonical(again, &b, NULL) >= 0)
                check(streq(a, b));
        return 0;
}
