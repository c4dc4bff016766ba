/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wire format's checks and key layouts. See bundle.h and
 * docs/wire-format.md.
 */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "fsx.h"
#include "objstore.h"

#define OBJECT_KEY_SUFFIX ".json"

bool bundle_is_digest(const char *s) {
        return s && startswith(s, BUNDLE_DIGEST_PREFIX) &&
               hash_is_sha256_hex(s + BUNDLE_DIGEST_PREFIX_LEN);
}

int bundle_digest(const void *data, size_t len, char ret[static BUNDLE_DIGEST_SIZE]) {
        char hex[HASH_SHA256_HEX_LEN + 1];
        int r;

        r = hash_sha256_hex(data, len, hex);
        if (r < 0)
                return r;
        memcpy(ret, BUNDLE_DIGEST_PREFIX, BUNDLE_DIGEST_PREFIX_LEN);
        memcpy(ret + BUNDLE_DIGEST_PREFIX_LEN, hex, sizeof(hex));
        return 0;
}

static bool is_lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_path_char(char c) {
        return is_lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '-';
}

/* "'c' is not one of ALLOWED", or the byte in hex when it is not printable:
 * @c comes from untrusted input. */
static int bad_char(err_info *e, char c, const char *allowed) {
        if (c > 0x20 && c < 0x7f)
                return err_info_set(e, -EINVAL, "'%c' is not one of %s", c, allowed);
        return err_info_set(e, -EINVAL, "byte 0x%02x is not one of %s", (unsigned char) c, allowed);
}

int bundle_check_path(const char *path, err_info *ret_err) {
        size_t n;

        if (isempty(path))
                return err_info_set(ret_err, -EINVAL, "it is empty");
        n = strlen(path);
        if (n > BUNDLE_MAX_PATH)
                return err_info_set(ret_err, -EINVAL, "it is %zu bytes, more than the %d allowed",
                                    n, BUNDLE_MAX_PATH);
        if (path[0] == '/')
                return err_info_set(ret_err, -EINVAL, "it starts with '/'");
        for (const char *seg = path;;) {
                const char *end = strchrnul(seg, '/');
                size_t len = (size_t) (end - seg);

                if (len == 0)
                        return err_info_set(ret_err, -EINVAL,
                                            *end ? "it has an empty segment" : "it ends with '/'");
                if (len == 1 && seg[0] == '.')
                        return err_info_set(ret_err, -EINVAL, "it has a '.' segment");
                if (seg[0] == '.' && seg[1] == '.')
                        return err_info_set(ret_err, -EINVAL, "a segment starts with '..'");
                if (len > NAME_MAX)
                        return err_info_set(ret_err, -EINVAL,
                                            "a segment is %zu bytes, more than the %d allowed", len,
                                            NAME_MAX);
                for (const char *q = seg; q < end; q++)
                        if (!is_path_char(*q))
                                return bad_char(ret_err, *q, "A-Z a-z 0-9 . _ -");
                if (!*end)
                        break;
                seg = end + 1;
        }
        /* Implied by the above; checked so that what apply.c relies on never
         * depends on two rules staying in step. */
        if (!fsx_is_safe_relpath(path))
                return err_info_set(ret_err, -EINVAL, "it is not a clean relative path");
        return 0;
}

bool bundle_is_path(const char *path) {
        return bundle_check_path(path, NULL) == 0;
}

int bundle_check_reload_name(const char *name, err_info *ret_err) {
        size_t n;

        if (isempty(name))
                return err_info_set(ret_err, -EINVAL, "it is empty");
        n = strlen(name);
        if (n > BUNDLE_MAX_RELOAD_NAME)
                return err_info_set(ret_err, -EINVAL,
                                    "it is %zu characters, more than the %d allowed", n,
                                    BUNDLE_MAX_RELOAD_NAME);
        for (size_t i = 0; i < n; i++)
                if (!is_lower_alnum(name[i]) && name[i] != '-')
                        return bad_char(ret_err, name[i], "a-z 0-9 -");
        if (name[0] == '-' || name[n - 1] == '-')
                return err_info_set(ret_err, -EINVAL, "it starts or ends with '-'");
        return 0;
}

bool bundle_is_reload_name(const char *name) {
        return bundle_check_reload_name(name, NULL) == 0;
}

bool bundle_is_uid(const char *s) {
        size_t n;

        if (isempty(s))
                return false;
        n = strlen(s);
        if (n > BUNDLE_MAX_UID)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_lower_alnum(s[i]) && !(s[i] >= 'A' && s[i] <= 'Z') && s[i] != '-')
                        return false;
        return true;
}

int bundle_object_key(const char *ns, const char *name, const char *digest, char **ret) {
        if (isempty(ns) || isempty(name) || !bundle_is_digest(digest))
                return -EINVAL;
        return asprintf(ret, BUNDLE_MANIFESTS_PREFIX "%s/%s/%s" OBJECT_KEY_SUFFIX, ns, name,
                        digest + BUNDLE_DIGEST_PREFIX_LEN) < 0
                       ? -ENOMEM
                       : 0;
}

int bundle_parse_object_key(const char *key, char **ret_bundle,
                            char ret_digest[static BUNDLE_DIGEST_SIZE]) {
        const char *ns, *slash, *file;
        char digest[BUNDLE_DIGEST_SIZE];
        size_t n;

        if (!key || !startswith(key, BUNDLE_MANIFESTS_PREFIX))
                return -EINVAL;
        ns = key + strlen(BUNDLE_MANIFESTS_PREFIX);
        slash = strchr(ns, '/');
        if (!slash || slash == ns)
                return -EINVAL;
        file = strchr(slash + 1, '/');
        if (!file || file == slash + 1 || strchr(file + 1, '/'))
                return -EINVAL;
        file++;
        n = strlen(file);
        if (n != HASH_SHA256_HEX_LEN + strlen(OBJECT_KEY_SUFFIX) ||
            !streq(file + HASH_SHA256_HEX_LEN, OBJECT_KEY_SUFFIX))
                return -EINVAL;
        snprintf(digest, sizeof(digest), BUNDLE_DIGEST_PREFIX "%.*s", HASH_SHA256_HEX_LEN, file);
        if (!bundle_is_digest(digest))
                return -EINVAL;
        *ret_bundle = strndup(ns, (size_t) (file - 1 - ns));
        if (!*ret_bundle)
                return -ENOMEM;
        memcpy(ret_digest, digest, sizeof(digest));
        return 0;
}

int bundle_status_key(const char *node, char **ret) {
        char *k;

        if (isempty(node) || strchr(node, '/'))
                return -EINVAL;
        if (asprintf(&k, BUNDLE_STATUS_PREFIX "%s" OBJECT_KEY_SUFFIX, node) < 0)
                return -ENOMEM;
        if (!objstore_key_is_valid(k)) {
                free(k);
                return -EINVAL;
        }
        *ret = k;
        return 0;
}
