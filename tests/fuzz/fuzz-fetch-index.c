/* SPDX-License-Identifier: Apache-2.0 */

/*
 * libFuzzer harness for the agent's index parser, fetch_parse_index()
 * (nodeagent/fetch.c): index.json, polled from the object store, and the copy
 * of it kept in the agent's cache are untrusted bytes. The same bytes, when
 * they are a JSON object, also go through fetch_configmap_entry() as a bundle
 * ConfigMap from the API server, the agent's other source of index-form
 * entries. `make fuzz FUZZER=fuzz-fetch-index` runs it under libFuzzer;
 * `make check` replays tests/fuzz/corpus/fetch-index/ through
 * tests/fuzz/replay.c.
 *
 * Besides "never crash", it checks:
 *   - a failure is -EBADMSG (the index) or -EINVAL (the ConfigMap) with a
 *     message, or -ENOMEM, and leaves the out-parameters untouched;
 *   - an accepted index yields its "bundles" map, and writing that map back
 *     as {"kind":"BundleIndex","bundles":...} and parsing it again gives the
 *     same map (compared canonically);
 *   - an accepted ConfigMap yields the key "NS/NAME" of the entry's own
 *     namespace and name;
 *   - every entry's nodeSelector, evaluated as the engine does, is either
 *     malformed for every node (-EINVAL with a message, whatever the labels)
 *     or decides 0/1 for every node: selector_validate() and
 *     selector_matches() never disagree.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "jsonx.h"
#include "selector.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fails (a crash, for libFuzzer) naming the broken promise. */
#define check(ok) check_at((ok), #ok, __LINE__)
static void check_at(bool ok, const char *what, int line) {
        if (ok)
                return;
        fprintf(stderr, "fuzz-fetch-index.c:%d: check failed: %s\n", line, what);
        abort();
}

static json_object *node_labels(void) {
        static json_object *labels;

        if (!labels) {
                labels = json_object_new_object();
                check(labels != NULL);
                json_object_object_add(labels, "kubernetes.io/hostname",
                                       json_object_new_string("node-1"));
                json_object_object_add(labels, "pool", json_object_new_string("blue"));
                json_object_object_add(labels, "zone", json_object_new_string(""));
        }
        return labels;
}

static void check_selector(json_object *entry) {
        json_object *sel = NULL;
        err_info e;
        int valid, on_labelled, on_bare;

        if (!json_object_is_type(entry, json_type_object) ||
            !json_object_object_get_ex(entry, "nodeSelector", &sel))
                return;
        err_info_clear(&e);
        valid = selector_validate(sel, &e);
        check(valid == 0 || (valid == -EINVAL && e.message[0] != '\0'));
        err_info_clear(&e);
        on_labelled = selector_matches(sel, node_labels(), &e);
        check(on_labelled >= 0 || e.message[0] != '\0');
        on_bare = selector_matches(sel, NULL, NULL);
        if (valid < 0)
                check(on_labelled == -EINVAL && on_bare == -EINVAL);
        else
                check((on_labelled == 0 || on_labelled == 1) && (on_bare == 0 || on_bare == 1));
}

static void check_index(const uint8_t *data, size_t size) {
        static char sentinel;
        json_object *const untouched = (json_object *) &sentinel;
        json_object *bundles = untouched, *again = untouched;
        _cleanup_json_ json_object *doc = NULL;
        _cleanup_free_ char *text = NULL, *a = NULL, *b = NULL;
        size_t len;
        err_info e;
        int r;

        err_info_clear(&e);
        r = fetch_parse_index((const char *) data, size, &bundles, &e);
        if (r < 0) {
                check(r == -EBADMSG || r == -ENOMEM);
                check(r != -EBADMSG || e.message[0] != '\0');
                check(bundles == untouched);
                return;
        }
        check(r == 0 && json_object_is_type(bundles, json_type_object));
        json_object_object_foreach(bundles, key, entry) {
                (void) key;
                check_selector(entry);
        }

        /* Written back as the operator writes an index, and read again. */
        doc = json_object_new_object();
        if (!doc)
                goto out;
        json_object_object_add(doc, "apiVersion", json_object_new_string("ballast.dev/v1alpha1"));
        json_object_object_add(doc, "kind", json_object_new_string("BundleIndex"));
        json_object_object_add(doc, "bundles", json_object_get(bundles));
        if (jsonx_to_canonical(doc, &text, &len) < 0)
                goto out;
        err_info_clear(&e);
        r = fetch_parse_index(text, len, &again, &e);
        if (r == -ENOMEM)
                goto out;
        check(r == 0);
        if (jsonx_to_canonical(bundles, &a, NULL) >= 0 && jsonx_to_canonical(again, &b, NULL) >= 0)
                check(streq(a, b));
        json_object_put(again);
out:
        json_object_put(bundles);
}

static void check_configmap(const uint8_t *data, size_t size) {
        static char sentinel;
        json_object *const untouched = (json_object *) &sentinel;
        _cleanup_json_ json_object *cm = NULL;
        json_object *entry = untouched;
        char *key = (char *) &sentinel;
        const char *ns, *name;
        err_info e;
        int r;

        if (jsonx_parse((const char *) data, size, &cm, NULL) < 0 ||
            !json_object_is_type(cm, json_type_object))
                return;
        err_info_clear(&e);
        r = fetch_configmap_entry(cm, &key, &entry, &e);
        if (r < 0) {
                check(r == -EINVAL || r == -ENOMEM);
                check(r != -EINVAL || e.message[0] != '\0');
                check(entry == untouched && key == (char *) &sentinel);
                return;
        }
        check(r == 0 && key && json_object_is_type(entry, json_type_object));
        ns = jsonx_get_string(entry, "namespace");
        name = jsonx_get_string(entry, "name");
        check(ns && name && *ns && *name);
        check(strlen(key) == strlen(ns) + 1 + strlen(name) && strneq(key, ns, strlen(ns)) &&
              key[strlen(ns)] == '/' && streq(key + strlen(ns) + 1, name));
        check(jsonx_get_int(entry, "revision", 1) >= 1);
        check_selector(entry);
        free(key);
        json_object_put(entry);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 1024 * 1024)
                return 0;
        check_index(data, size);
        check_configmap(data, size);
        return 0;
}
