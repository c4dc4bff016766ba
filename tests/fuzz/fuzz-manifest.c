/* SPDX-License-Identifier: Apache-2.0 */

/*
 * Fuzzes the agent's manifest parser with untrusted bytes. The input is
 * parsed twice: with its own digest (so the fuzzer gets past the digest check
 * into the JSON and field checks) and with a wrong one (which must always be
 * refused). Besides "no crash", it checks the parser's promises on anything it
 * accepts: the bytes are kept exactly, every path is a safe bundle path,
 * paths are strictly sorted, sizes and hashes match the content, and no
 * file is also a directory of another.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok) {
        if (!ok)
                abort();
}

static void check_accepted(const manifest *m, const uint8_t *data, size_t size) {
        size_t total = 0;

        check(m->n_bytes == size && memcmp(m->bytes, data, size) == 0);
        check(m->revision >= 1);
        check(manifest_is_dns_label(m->namespace) && manifest_is_dns_subdomain(m->name));
        check(!m->reload || manifest_is_reload_name(m->reload));
        check(m->n_files >= 1 && m->n_files <= MANIFEST_MAX_FILES);
        for (size_t i = 0; i < m->n_files; i++) {
                const manifest_file *f = &m->files[i];
                char hex[HASH_SHA256_HEX_LEN + 1];
                size_t n = strlen(f->path);

                check(manifest_is_bundle_path(f->path));
                check(f->mode <= 0777);
                check(f->size <= MANIFEST_MAX_FILE_SIZE);
                check(hash_sha256_hex(f->content, f->size, hex) == 0 &&
                      strcmp(hex, f->sha256) == 0);
                check(i == 0 || strcmp(m->files[i - 1].path, f->path) < 0);
                check(manifest_find_file(m, f->path) == f);
                /* No other file lives below this one. */
                for (size_t j = 0; j < m->n_files; j++)
                        check(!(strncmp(m->files[j].path, f->path, n) == 0 &&
                                m->files[j].path[n] == '/'));
                total += f->size;
        }
        check(total == m->content_size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char wrong[] =
                "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        char digest[MANIFEST_DIGEST_SIZE];
        manifest *m = NULL;
        err_info e;
        int r;

        if (manifest_digest(data, size, digest) < 0)
                return 0;
        err_info_clear(&e);
        r = manifest_parse(data, size, digest, NULL, &m, &e);
        check((r == 0) == (m != NULL));
        check(r == 0 || r == -EBADMSG || r == -EFBIG || r == -ENOMEM);
        check(r == 0 || e.message[0] != '\0');
        if (m)
                check_accepted(m, data, size);
        manifest_free(m);
        m = NULL;

        if (strcmp(digest, wrong) != 0) {
                err_info_clear(&e);
                r = manifest_parse(data, size, wrong, NULL, &m, &e);
                check(r == -EBADMSG && !m && strstr(e.message, "digest mismatch"));
        }
        return 0;
}
