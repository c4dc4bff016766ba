/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's only parser of manifest bytes. It trusts nothing: the bytes
 * must hash to the digest the index named, must be exactly the canonical
 * serialization of what they parse to, and every field is checked before
 * anything is copied into the returned struct.
 */

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "jsonx.h"
#include "manifest.h"

manifest *manifest_free(manifest *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_files; i++) {
                free(m->files[i].path);
                free(m->files[i].content);
        }
        free(m->files);
        free(m->namespace);
        free(m->name);
        free(m->uid);
        free(m->reload);
        free(m->bytes);
        free(m);
        return NULL;
}

static bool is_lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One DNS-1123 label of @n bytes at @s. */
static bool is_label(const char *s, size_t n) {
        if (n == 0 || n > 63 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_lower_alnum(s[i]) && s[i] != '-')
                        return false;
        return true;
}

bool manifest_is_dns_label(const char *s) {
        return s && is_label(s, strlen(s));
}

bool manifest_is_dns_subdomain(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n == 0 || n > 253)
                return false;
        for (const char *seg = s;;) {
                const char *dot = strchrnul(seg, '.');

                if (!is_label(seg, (size_t) (dot - seg)))
                        return false;
                if (!*dot)
                        return true;
                seg = dot + 1;
        }
}

static int file_path_cmp(const void *key, const void *elem) {
        return strcmp(key, ((const manifest_file *) elem)->path);
}

const manifest_file *manifest_find_file(const manifest *m, const char *path) {
        if (!m || !path || m->n_files == 0)
                return NULL;
        return bsearch(path, m->files, m->n_files, sizeof(manifest_file), file_path_cmp);
}

/* Error context: who the manifest claims to be, as far as we know yet. */
typedef struct checker {
        err_info *e;
        char who[160];
} checker;

static int bad(checker *c, int r, const char *fmt, ...) _printf_(3, 4);
static int bad(checker *c, int r, const char *fmt, ...) {
        char what[400];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        return err_info_set(c->e, r, "%s: %s", c->who, what);
}

/* A short printable rendering of untrusted @s for messages: at most 64
 * bytes, control and non-ASCII bytes as '?'. */
static const char *printable(const char *s, char buf[static 68]) {
        size_t i;

        for (i = 0; s[i] && i < 64; i++)
                buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        if (s[i]) {
                memcpy(buf + i, "...", 3);
                i += 3;
        }
        buf[i] = '\0';
        return buf;
}

/* The string at @key of @o, or NULL if absent or not a string, or if it has
 * an embedded NUL (which would make C see a different value than the hash). */
static const char *get_string(json_object *o, const char *key, json_object **ret_obj) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        if (strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v))
                return NULL;
        if (ret_obj)
                *ret_obj = v;
        return json_object_get_string(v);
}

static bool get_int(json_object *o, const char *key, int64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_int64(v);
        return true;
}

/* Fails on any key of @o not in the NULL-terminated @allowed. */
static int check_keys(checker *c, json_object *o, const char *where, const char *const *allowed) {
        json_object_object_foreach(o, k, v) {
                bool ok = false;
                char buf[68];

                (void) v;
                for (size_t i = 0; allowed[i]; i++)
                        if (streq(k, allowed[i]))
                                ok = true;
                if (!ok)
                        return bad(c, -EBADMSG, "%sunknown key '%s'", where, printable(k, buf));
        }
        return 0;
}

/* Best effort, for the message about a digest mismatch: who do the bytes
 * claim to be? Never trusted for anything else. */
static void describe_claim(const char *data, size_t len, char *buf, size_t size) {
        _cleanup_json_ json_object *o = NULL;
        const char *ns, *name;
        char b1[68], b2[68];

        buf[0] = '\0';
        if (jsonx_parse(data, len, &o, NULL) < 0 || !json_object_is_type(o, json_type_object))
                return;
        ns = jsonx_get_string(o, "bundle.namespace");
        name = jsonx_get_string(o, "bundle.name");
        if (!ns || !name)
                return;
        snprintf(buf, size, " (the bytes claim to be bundle %s/%s revision %" PRIi64 ")",
                 printable(ns, b1), printable(name, b2), jsonx_get_int(o, "revision", 0));
}

static int parse_file(checker *c, json_object *f, size_t i, const manifest_limits *lim,
                      manifest_file *ret) {
        static const char *const keys[] = {"content", "mode", "path", "sha256", "size", NULL};
        json_object *content_obj = NULL;
        const char *path, *sha, *content;
        char where[BUNDLE_MAX_PATH + 32], hex[HASH_SHA256_HEX_LEN + 1], buf[68];
        err_info why;
        int64_t mode, size;
        size_t len;
        int r;

        if (!json_object_is_type(f, json_type_object))
                return bad(c, -EBADMSG, "files[%zu]: must be an object", i);
        path = get_string(f, "path", NULL);
        if (!path)
                return bad(c, -EBADMSG, "files[%zu]: path is missing or not a string", i);
        if (bundle_check_path(path, &why) < 0)
                return bad(c, -EBADMSG, "files[%zu]: path '%s' is not a safe bundle path: %s", i,
                           printable(path, buf), why.message);
        snprintf(where, sizeof(where), "files[%zu] (%s): ", i, path);
        r = check_keys(c, f, where, keys);
        if (r < 0)
                return r;

        if (!get_int(f, "mode", &mode))
                return bad(c, -EBADMSG, "%smode is missing or not an integer", where);
        if (mode < 0 || mode > 0777)
                return bad(c, -EBADMSG, "%smode %" PRIi64 " is outside 0..0777", where, mode);
        if (!get_int(f, "size", &size))
                return bad(c, -EBADMSG, "%ssize is missing or not an integer", where);
        if (!json_object_object_get_ex(f, "content", &content_obj) ||
            !json_object_is_type(content_obj, json_type_string))
                return bad(c, -EBADMSG, "%scontent is missing or not a string", where);
        content = json_object_get_string(content_obj);
        len = (size_t) json_object_get_string_len(content_obj);
        if (size < 0 || (uint64_t) size != len)
                return bad(c, -EBADMSG, "%ssize %" PRIi64 " does not match the content length %zu",
                           where, size, len);
        if (len > lim->max_file_size)
                return bad(c, -EFBIG, "%scontent is %zu bytes, more than the %zu allowed", where,
                           len, lim->max_file_size);
        sha = get_string(f, "sha256", NULL);
        if (!sha || !hash_is_sha256_hex(sha))
                return bad(c, -EBADMSG, "%ssha256 is missing or not 64 lowercase hex digits",
                           where);
        r = hash_sha256_hex(content, len, hex);
        if (r < 0)
                return r;
        if (!streq(hex, sha))
                return bad(c, -EBADMSG,
                           "%ssha256 mismatch: the manifest says %s, the content hashes to %s",
                           where, sha, hex);

        *ret = (manifest_file){.mode = (mode_t) mode, .size = len};
        memcpy(ret->sha256, hex, sizeof(hex));
        ret->path = strdup(path);
        ret->content = malloc(len + 1);
        if (!ret->path || !ret->content)
                return -ENOMEM; /* the caller frees what was set */
        memcpy(ret->content, content, len);
        ret->content[len] = '\0';
        return 0;
}

/* "a" is a file and "a/b" wants "a" to be a directory: every proper prefix
 * ending before a '/' must not be a file of @m. O(files x depth x log files). */
static int check_no_file_is_a_dir(checker *c, const manifest *m) {
        char prefix[BUNDLE_MAX_PATH + 1];

        for (size_t i = 0; i < m->n_files; i++) {
                const char *p = m->files[i].path;

                for (const char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
                        memcpy(prefix, p, (size_t) (s - p));
                        prefix[s - p] = '\0';
                        if (manifest_find_file(m, prefix))
                                return bad(c, -EBADMSG,
                                           "files[%zu] (%s): '%s' is also a file, it cannot "
                                           "be a directory",
                                           i, p, prefix);
                }
        }
        return 0;
}

static int parse_tree(checker *c, json_object *o, const manifest_limits *lim, manifest *m) {
        static const char *const top_keys[] = {"apiVersion", "bundle",   "files", "kind",
                                               "reload",     "revision", NULL};
        static const char *const bundle_keys[] = {"name", "namespace", "uid", NULL};
        json_object *bundle, *files, *v;
        const char *ns, *name, *uid, *s;
        char b1[68], b2[68];
        size_t n;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return bad(c, -EBADMSG, "the manifest is not a JSON object");

        /* Identity first, so that every later message can name the bundle. */
        if (!json_object_object_get_ex(o, "bundle", &bundle) ||
            !json_object_is_type(bundle, json_type_object))
                return bad(c, -EBADMSG, "bundle is missing or not an object");
        ns = get_string(bundle, "namespace", NULL);
        name = get_string(bundle, "name", NULL);
        if (!ns || !manifest_is_dns_label(ns))
                return bad(c, -EBADMSG, "bundle.namespace '%s' is missing or not a DNS-1123 label",
                           ns ? printable(ns, b1) : "");
        if (!name || !manifest_is_dns_subdomain(name))
                return bad(c, -EBADMSG, "bundle.name '%s' is missing or not a DNS-1123 subdomain",
                           name ? printable(name, b1) : "");
        snprintf(c->who, sizeof(c->who), "bundle %s/%s", ns, name);
        r = check_keys(c, bundle, "bundle: ", bundle_keys);
        if (r < 0)
                return r;
        uid = "";
        if (json_object_object_get_ex(bundle, "uid", &v)) {
                uid = get_string(bundle, "uid", NULL);
                if (!uid || !bundle_is_uid(uid))
                        return bad(c, -EBADMSG,
                                   "bundle.uid '%s' is not 1..%d characters of [A-Za-z0-9-]",
                                   uid ? printable(uid, b1) : "", BUNDLE_MAX_UID);
        }
        if (!get_int(o, "revision", &m->revision))
                return bad(c, -EBADMSG, "revision is missing or not an integer");
        if (m->revision < 1)
                return bad(c, -EBADMSG, "revision %" PRIi64 " is not positive", m->revision);
        snprintf(c->who, sizeof(c->who), "bundle %s/%s revision %" PRIi64, ns, name, m->revision);

        r = check_keys(c, o, "", top_keys);
        if (r < 0)
                return r;
        s = get_string(o, "apiVersion", NULL);
        if (!s || !streq(s, BUNDLE_API_VERSION))
                return bad(c, -EBADMSG, "apiVersion '%s' is not '%s'", s ? printable(s, b1) : "",
                           BUNDLE_API_VERSION);
        s = get_string(o, "kind", NULL);
        if (!s || !streq(s, BUNDLE_KIND_MANIFEST))
                return bad(c, -EBADMSG, "kind '%s' is not '%s'", s ? printable(s, b1) : "",
                           BUNDLE_KIND_MANIFEST);
        if (json_object_object_get_ex(o, "reload", &v)) {
                err_info why;

                s = get_string(o, "reload", NULL);
                if (!s || bundle_check_reload_name(s, &why) < 0)
                        return bad(c, -EBADMSG, "reload '%s' is not a valid action name: %s",
                                   s ? printable(s, b2) : "", s ? why.message : "not a string");
                m->reload = strdup(s);
                if (!m->reload)
                        return -ENOMEM;
        }

        if (!json_object_object_get_ex(o, "files", &files) ||
            !json_object_is_type(files, json_type_array))
                return bad(c, -EBADMSG, "files is missing or not an array");
        n = json_object_array_length(files);
        if (n == 0)
                return bad(c, -EBADMSG, "files: at least one file is required");
        if (n > lim->max_files)
                return bad(c, -EFBIG, "files: %zu files, at most %zu allowed", n, lim->max_files);
        m->files = calloc(n, sizeof(manifest_file));
        if (!m->files)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                manifest_file *f = &m->files[i];

                r = parse_file(c, json_object_array_get_idx(files, i), i, lim, f);
                if (r < 0) {
                        free(f->path);
                        free(f->content);
                        return r;
                }
                m->n_files++;
                if (i > 0 && strcmp(m->files[i - 1].path, f->path) >= 0)
                        return bad(c, -EBADMSG,
                                   streq(m->files[i - 1].path, f->path)
                                           ? "files[%zu] (%s): duplicate path"
                                           : "files[%zu] (%s): not sorted by path (after '%s')",
                                   i, f->path, m->files[i - 1].path);
                m->content_size += f->size;
                if (m->content_size > lim->max_total_size)
                        return bad(c, -EFBIG,
                                   "files: the contents add up to more than the %zu bytes allowed",
                                   lim->max_total_size);
        }
        r = check_no_file_is_a_dir(c, m);
        if (r < 0)
                return r;

        m->namespace = strdup(ns);
        m->name = strdup(name);
        m->uid = strdup(uid);
        if (!m->namespace || !m->name || !m->uid)
                return -ENOMEM;
        return 0;
}

int manifest_parse(const void *data, size_t len, const char *expected_digest,
                   const manifest_limits *limits, manifest **ret, err_info *ret_err) {
        _cleanup_(manifest_freep) manifest *m = NULL;
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *canon = NULL;
        manifest_limits lim = {
                .max_size = BUNDLE_MAX_MANIFEST_SIZE,
                .max_files = BUNDLE_MAX_FILES,
                .max_file_size = BUNDLE_MAX_FILE_SIZE,
                .max_total_size = BUNDLE_MAX_MANIFEST_SIZE,
        };
        char digest[BUNDLE_DIGEST_SIZE], claim[256];
        checker c = {.e = ret_err};
        err_info perr;
        size_t canon_len = 0;
        int r;

        if (!data && len > 0)
                return -EINVAL;
        if (!bundle_is_digest(expected_digest))
                return err_info_set(ret_err, -EINVAL,
                                    "expected digest '%s' is not sha256: and 64 lowercase hex "
                                    "digits",
                                    strna(expected_digest));
        if (limits) {
                lim.max_size = limits->max_size ?: lim.max_size;
                lim.max_files = limits->max_files ?: lim.max_files;
                lim.max_file_size = limits->max_file_size ?: lim.max_file_size;
                lim.max_total_size = limits->max_total_size ?: lim.max_total_size;
        }
        /* Until the identity is known, name the manifest by its digest. */
        snprintf(c.who, sizeof(c.who), "manifest %.19s", expected_digest);

        if (len > lim.max_size)
                return bad(&c, -EFBIG, "%zu bytes, more than the %zu allowed", len, lim.max_size);
        r = bundle_digest(data ? data : "", len, digest);
        if (r < 0)
                return r;
        if (!streq(digest, expected_digest)) {
                describe_claim(data, len, claim, sizeof(claim));
                return bad(&c, -EBADMSG, "digest mismatch: expected %s, the %zu bytes hash to %s%s",
                           expected_digest, len, digest, claim);
        }

        err_info_clear(&perr);
        r = jsonx_parse(data, len, &o, &perr);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return bad(&c, -EBADMSG, "not valid JSON: %s", perr.message);
        r = jsonx_to_canonical(o, &canon, &canon_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return bad(&c, -EBADMSG, "cannot be serialized canonically: %s", strerror(-r));
        if (canon_len != len || memcmp(canon, data, len) != 0) {
                size_t at = 0;

                while (at < len && at < canon_len && canon[at] == ((const char *) data)[at])
                        at++;
                return bad(&c, -EBADMSG,
                           "not in canonical form (first difference at byte %zu: duplicate "
                           "keys, key order, whitespace or escaping)",
                           at);
        }

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        r = parse_tree(&c, o, &lim, m);
        if (r < 0)
                return r;
        memcpy(m->digest, digest, sizeof(digest));
        m->bytes = malloc(len + 1);
        if (!m->bytes)
                return -ENOMEM;
        memcpy(m->bytes, data, len);
        m->bytes[len] = '\0';
        m->n_bytes = len;
        if (ret)
                *ret = TAKE_PTR(m);
        return 0;
}
