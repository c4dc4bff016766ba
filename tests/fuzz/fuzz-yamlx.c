/* SPDX-License-Identifier: Apache-2.0 */

/*
 * libFuzzer harness for yamlx_parse() (kubeconfig and config files are
 * untrusted input). `make fuzz FUZZER=fuzz-yamlx` runs it under libFuzzer;
 * `make check` replays tests/fuzz/corpus/yamlx/ through tests/fuzz/replay.c.
 *
 * Besides "never crash", it checks invariants: a failure is -EBADMSG (or
 * -ENOMEM) with a "FILE:" message, a success yields a tree that serializes
 * canonically, that a deep copy serializes identically, and whose nodes all
 * report a position.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonx.h"
#include "yamlx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_positions(json_object *o) {
        unsigned line = 0, col = 0;

        if (!o)
                return; /* YAML null */
        if (yamlx_where(o, &line, &col) < 0 || line == 0 || col == 0)
                abort();
        if (json_object_is_type(o, json_type_double))
                abort(); /* never made: json-c would misread our userdata */
        if (json_object_is_type(o, json_type_object)) {
                json_object_object_foreach(o, k, v) {
                        (void) k;
                        check_positions(v);
                }
        } else if (json_object_is_type(o, json_type_array)) {
                for (size_t i = 0; i < json_object_array_length(o); i++)
                        check_positions(json_object_array_get_idx(o, i));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_object *o = NULL, *copy = NULL;
        char *a = NULL, *b = NULL;
        err_info e;
        int r;

        if (size > 1024 * 1024)
                return 0;
        err_info_clear(&e);
        r = yamlx_parse((const char *) data, size, "fuzz.yaml", &o, &e);
        if (r < 0) {
                if (r != -EBADMSG && r != -ENOMEM)
                        abort();
                if (strncmp(e.message, "fuzz.yaml", 9) != 0)
                        abort();
                return 0;
        }

        check_positions(o);
        if (jsonx_to_canonical(o, &a, NULL) < 0)
                abort();
        if (jsonx_deep_copy(o, &copy) < 0 || jsonx_to_canonical(copy, &b, NULL) < 0)
                abort();
        if (strcmp(a, b) != 0)
                abort();

        free(a);
        free(b);
        json_object_put(copy);
        json_object_put(o);
        return 0;
}
