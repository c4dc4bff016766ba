/* SPDX-License-Identifier: Apache-2.0 */

/*
 * libFuzzer harness for the S3 XML parsers in lib/s3-xml.c (error documents
 * and ListObjectsV2 pages come from the network). `make fuzz
 * FUZZER=fuzz-s3-xml` runs it under libFuzzer; `make check` replays
 * tests/fuzz/corpus/s3-xml/ through tests/fuzz/replay.c.
 *
 * Every input goes through both parsers. Besides "never crash", it checks
 * what callers rely on: failures are -EBADMSG, -EFBIG or -ENOMEM and leave
 * the output untouched; an error has a non-empty Code; a page that says it is
 * truncated carries a non-empty token, one that is not carries none, and
 * every entry has a non-empty key.
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_parse_failure(int r) {
        return r == -EBADMSG || r == -EFBIG || r == -ENOMEM;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        s3_xml_error e = {};
        s3_list_page p = {};
        int r;

        r = s3_xml_parse_error((const char *) data, size, &e);
        if (r < 0) {
                if (!is_parse_failure(r) || e.code || e.message)
                        abort();
        } else {
                if (!e.code || !*e.code)
                        abort();
                s3_xml_error_done(&e);
        }

        r = s3_xml_parse_list((const char *) data, size, &p);
        if (r < 0) {
                if (!is_parse_failure(r) || p.entries || p.next_token)
                        abort();
                return 0;
        }
        if (p.is_truncated != (p.next_token != NULL))
                abort();
        if (p.next_token && !*p.next_token)
                abort();
        for (size_t i = 0; i < p.n_entries; i++)
                if (!p.entries[i].key || !*p.entries[i].key)
                        abort();
        s3_list_page_done(&p);
        return 0;
}
