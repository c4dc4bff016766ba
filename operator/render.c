/* SPDX-License-Identifier: Apache-2.0 */

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "hash.h"
#include "jsonx.h"
#include "render.h"

render_result *render_result_free(render_result *r) {
        if (!r)
                return NULL;
        free(r->manifest);
        free(r);
        return NULL;
}

/* A cursor over a template that knows its 1-based line and column (bytes). */
typedef struct cursor {
        const char *p;
        unsigned line, column;
} cursor;

static void cursor_advance(cursor *c, size_t n) {
        for (; n > 0 && *c->p; n--, c->p++) {
                if (*c->p == '\n') {
                        c->line++;
                        c->column = 1;
                } else
                        c->column++;
        }
}

static void cursor_skip_blanks(cursor *c) {
        while (*c->p == ' ' || *c->p == '\t')
                cursor_advance(c, 1);
}

static int cursor_error(err_info *e, const cursor *c, const char *fmt, ...) _printf_(3, 4);
static int cursor_error(err_info *e, const cursor *c, const char *fmt, ...) {
        char what[384];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        return err_info_set(e, -EINVAL, "line %u, column %u: %s", c->line, c->column, what);
}

static bool is_ident_start(char ch) {
        return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
}

static bool is_ident_char(char ch) {
        return is_ident_start(ch) || (ch >= '0' && ch <= '9');
}

/* Parses a "..." literal at the cursor into a new string. */
static int parse_literal(cursor *c, char **ret, err_info *e) {
        _cleanup_free_ char *buf = NULL;
        size_t n = 0;
        cursor start = *c;

        buf = malloc(strlen(c->p) + 1);
        if (!buf)
                return -ENOMEM;
        cursor_advance(c, 1); /* the opening quote */
        for (;;) {
                char ch = *c->p;

                if (ch == '\0' || ch == '\n')
                        return cursor_error(e, &start, "unterminated string literal");
                if (ch == '"')
                        break;
                if (ch == '\\') {
                        char next = c->p[1];

                        if (next != '"' && next != '\\')
                                return cursor_error(e, c,
                                                    "unknown escape '\\%c' (only \\\" and \\\\)",
                                                    next ? next : ' ');
                        buf[n++] = next;
                        cursor_advance(c, 2);
                        continue;
                }
                buf[n++] = ch;
                cursor_advance(c, 1);
        }
        cursor_advance(c, 1); /* the closing quote */
        buf[n] = '\0';
        *ret = TAKE_PTR(buf);
        return 0;
}

/* Parses NAME or NAME.FIELD at the cursor. */
static int parse_name(cursor *c, char **ret) {
        const char *start = c->p;

        while (is_ident_char(*c->p) || (*c->p == '.' && is_ident_start(c->p[1])))
                cursor_advance(c, 1);
        *ret = strndup(start, c->p - start);
        return *ret ? 0 : -ENOMEM;
}

/* Resolves a name to its borrowed value, or NULL if undefined. */
static const char *lookup(const char *name, json_object *values, const render_identity *id) {
        json_object *v;

        if (streq(name, "bundle.name"))
                return id ? id->name : NULL;
        if (streq(name, "bundle.namespace"))
                return id ? id->namespace : NULL;
        if (!values || !json_object_object_get_ex(values, name, &v) ||
            !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* Parses one {{ ... }} tag (the cursor is on its first "{") and appends its
 * expansion to @out. */
static int expand_tag(cursor *c, FILE *out, json_object *values, const render_identity *id,
                      err_info *e) {
        _cleanup_free_ char *name = NULL, *literal = NULL, *fallback = NULL;
        cursor tag = *c;
        const char *v;
        int r;

        cursor_advance(c, 2);
        cursor_skip_blanks(c);
        if (*c->p == '"') {
                r = parse_literal(c, &literal, e);
                if (r < 0)
                        return r;
        } else if (is_ident_start(*c->p)) {
                r = parse_name(c, &name);
                if (r < 0)
                        return r;
                if (strchr(name, '.') && !startswith(name, "bundle."))
                        return cursor_error(e, &tag,
                                            "'%s': only bundle.name and bundle.namespace "
                                            "have a dot",
                                            name);
        } else if (*c->p == '}' && c->p[1] == '}')
                return cursor_error(e, &tag, "empty tag");
        else if (*c->p == '\0' || *c->p == '\n')
                return cursor_error(e, &tag, "unterminated tag: missing '}}'");
        else
                return cursor_error(e, c, "expected a value name or a \"string\", found '%c'",
                                    *c->p);

        cursor_skip_blanks(c);
        if (*c->p == '|') {
                cursor_advance(c, 1);
                cursor_skip_blanks(c);
                if (!strneq(c->p, "default", 7) || is_ident_char(c->p[7]))
                        return cursor_error(e, c, "unknown filter (the only one is 'default')");
                if (literal)
                        return cursor_error(e, c, "'default' needs a value name before it");
                cursor_advance(c, 7);
                cursor_skip_blanks(c);
                if (*c->p != '"')
                        return cursor_error(e, c, "'default' takes a \"string\"");
                r = parse_literal(c, &fallback, e);
                if (r < 0)
                        return r;
                cursor_skip_blanks(c);
        }
        if (*c->p == '\0' || *c->p == '\n')
                return cursor_error(e, &tag, "unterminated tag: missing '}}'");
        if (c->p[0] != '}' || c->p[1] != '}')
                return cursor_error(e, c, "expected '}}', found '%c'", *c->p);
        cursor_advance(c, 2);

        if (literal)
                v = literal;
        else {
                v = lookup(name, values, id);
                if (!v)
                        v = fallback;
                if (!v)
                        return cursor_error(e, &tag, "undefined value '%s'", name);
        }
        fputs(v, out);
        return 0;
}

int render_template(const char *tmpl, json_object *values, const render_identity *id, char **ret,
                    size_t *ret_len, err_info *ret_err) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_fclose_ FILE *out = NULL;
        size_t len = 0;
        cursor c = {.p = tmpl, .line = 1, .column = 1};
        int r;

        if (!tmpl || !ret)
                return -EINVAL;

        out = open_memstream(&buf, &len);
        if (!out)
                return -ENOMEM;
        while (*c.p) {
                if (c.p[0] == '{' && c.p[1] == '{') {
                        r = expand_tag(&c, out, values, id, ret_err);
                        if (r < 0)
                                return r;
                } else {
                        fputc(*c.p, out);
                        cursor_advance(&c, 1);
                }
                if (ftell(out) > BUNDLE_MAX_FILE_SIZE)
                        return err_info_set(ret_err, -EFBIG, "rendered output exceeds %d bytes",
                                            BUNDLE_MAX_FILE_SIZE);
        }
        if (fflush(out) != 0 || ferror(out))
                return -ENOMEM;
        fclose(TAKE_PTR(out));
        *ret = TAKE_PTR(buf);
        if (ret_len)
                *ret_len = len;
        return 0;
}

typedef struct rendered_file {
        const char *path; /* borrowed from the spec */
        json_object *obj; /* owned */
} rendered_file;

static int rendered_file_cmp(const void *a, const void *b) {
        return strcmp(((const rendered_file *) a)->path, ((const rendered_file *) b)->path);
}

/* Prefixes the message in @e with "files[i] (path): ". */
static int file_error(err_info *e, int r, size_t i, const char *path) {
        char inner[sizeof(e->message)];

        if (!e)
                return r;
        snprintf(inner, sizeof(inner), "%s", e->message);
        return err_info_set(e, r, "files[%zu] (%s): %s", i, path ? path : "?", inner);
}

static int render_file(json_object *f, size_t i, json_object *values, const render_identity *id,
                       rendered_file *ret, size_t *size, err_info *e) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *rendered = NULL;
        json_object *content, *tmpl, *mode_obj;
        const char *path, *data;
        char hex[HASH_SHA256_HEX_LEN + 1];
        int64_t mode = 0644;
        err_info why;
        size_t len;
        int r;

        if (!json_object_is_type(f, json_type_object))
                return err_info_set(e, -EINVAL, "files[%zu]: must be an object", i);
        path = jsonx_get_string(f, "path");
        if (!path)
                return err_info_set(e, -EINVAL, "files[%zu]: path is required", i);
        if (bundle_check_path(path, &why) < 0)
                return err_info_set(e, -EINVAL,
                                    "files[%zu]: path '%s' is not a clean relative path: %s", i,
                                    path, why.message);
        if (json_object_object_get_ex(f, "mode", &mode_obj)) {
                if (!json_object_is_type(mode_obj, json_type_int))
                        return err_info_set(e, -EINVAL, "files[%zu] (%s): mode must be an integer",
                                            i, path);
                mode = json_object_get_int64(mode_obj);
                if (mode < 0 || mode > 0777)
                        return err_info_set(e, -EINVAL,
                                            "files[%zu] (%s): mode %" PRIi64
                                            " is outside 0..511 (0..0777)",
                                            i, path, mode);
        }

        bool has_content = json_object_object_get_ex(f, "content", &content);
        bool has_template = json_object_object_get_ex(f, "template", &tmpl);
        if (has_content == has_template)
                return err_info_set(
                        e, -EINVAL,
                        "files[%zu] (%s): exactly one of content or template must be set", i, path);
        if (has_content) {
                if (!json_object_is_type(content, json_type_string))
                        return err_info_set(e, -EINVAL, "files[%zu] (%s): content must be a string",
                                            i, path);
                data = json_object_get_string(content);
                len = json_object_get_string_len(content);
                if (len > BUNDLE_MAX_FILE_SIZE)
                        return err_info_set(e, -EFBIG, "files[%zu] (%s): content exceeds %d bytes",
                                            i, path, BUNDLE_MAX_FILE_SIZE);
        } else {
                if (!json_object_is_type(tmpl, json_type_string))
                        return err_info_set(e, -EINVAL,
                                            "files[%zu] (%s): template must be a string", i, path);
                r = render_template(json_object_get_string(tmpl), values, id, &rendered, &len, e);
                if (r < 0)
                        return file_error(e, r, i, path);
                data = rendered;
        }

        r = hash_sha256_hex(data, len, hex);
        if (r < 0)
                return r;
        o = json_object_new_object();
        if (!o || json_object_object_add(o, "path", json_object_new_string(path)) < 0 ||
            json_object_object_add(o, "mode", json_object_new_int64(mode)) < 0 ||
            json_object_object_add(o, "size", json_object_new_int64((int64_t) len)) < 0 ||
            json_object_object_add(o, "sha256", json_object_new_string(hex)) < 0 ||
            json_object_object_add(o, "content", json_object_new_string_len(data, (int) len)) < 0)
                return -ENOMEM;
        *ret = (rendered_file){.path = path, .obj = TAKE_PTR(o)};
        *size = len;
        return 0;
}

/* A file can't also be a directory of another ("a" and "a/b"): no node could
 * apply such a bundle. @files is sorted. O(n * depth) with a set of paths. */
static int check_no_file_is_a_directory(const rendered_file *files, size_t n, err_info *e) {
        _cleanup_json_ json_object *set = json_object_new_object();
        char prefix[BUNDLE_MAX_PATH + 1];

        if (!set)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                json_object_object_add(set, files[i].path, NULL);
        for (size_t i = 0; i < n; i++)
                for (const char *slash = strchr(files[i].path, '/'); slash;
                     slash = strchr(slash + 1, '/')) {
                        snprintf(prefix, sizeof(prefix), "%.*s", (int) (slash - files[i].path),
                                 files[i].path);
                        if (json_object_object_get_ex(set, prefix, NULL))
                                return err_info_set(e, -EINVAL,
                                                    "files: '%s' is a file, so '%s' can't be "
                                                    "inside it",
                                                    prefix, files[i].path);
                }
        return 0;
}

static int check_values(json_object *values, err_info *e) {
        if (!values)
                return 0;
        if (!json_object_is_type(values, json_type_object))
                return err_info_set(e, -EINVAL, "values must be a map of strings");
        json_object_object_foreach(values, k, v) {
                if (!is_ident_start(k[0]))
                        return err_info_set(e, -EINVAL,
                                            "values.%s: names must match "
                                            "^[A-Za-z_][A-Za-z0-9_]*$",
                                            k);
                for (const char *q = k; *q; q++)
                        if (!is_ident_char(*q))
                                return err_info_set(e, -EINVAL,
                                                    "values.%s: names must match "
                                                    "^[A-Za-z_][A-Za-z0-9_]*$",
                                                    k);
                if (!json_object_is_type(v, json_type_string))
                        return err_info_set(e, -EINVAL, "values.%s: must be a string", k);
        }
        return 0;
}

int render_bundle(json_object *spec, const render_identity *id, int64_t revision,
                  render_result **ret, err_info *ret_err) {
        _cleanup_json_ json_object *m = NULL;
        _cleanup_(render_result_freep) render_result *res = NULL;
        rendered_file *files = NULL;
        json_object *list, *values = NULL, *arr, *ident;
        const char *reload = NULL;
        size_t n = 0, total = 0;
        int r;

        if (!id || !id->namespace || !id->name || !ret)
                return -EINVAL;
        if (revision < 1)
                return err_info_set(ret_err, -EINVAL, "revision %" PRIi64 " is not positive",
                                    revision);
        if (!json_object_is_type(spec, json_type_object))
                return err_info_set(ret_err, -EINVAL, "spec must be an object");
        if (!json_object_object_get_ex(spec, "files", &list) ||
            !json_object_is_type(list, json_type_array) || json_object_array_length(list) == 0)
                return err_info_set(ret_err, -EINVAL, "files: at least one file is required");
        n = json_object_array_length(list);
        if (n > BUNDLE_MAX_FILES)
                return err_info_set(ret_err, -EINVAL, "files: %zu files, at most %d allowed", n,
                                    BUNDLE_MAX_FILES);
        json_object_object_get_ex(spec, "values", &values);
        r = check_values(values, ret_err);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(spec, "reload", &ident)) {
                err_info why;

                reload = json_object_get_string(ident);
                if (!json_object_is_type(ident, json_type_string))
                        return err_info_set(ret_err, -EINVAL,
                                            "reload: '%s' is not a valid action name: it is not "
                                            "a string",
                                            strna(reload));
                if (bundle_check_reload_name(reload, &why) < 0)
                        return err_info_set(ret_err, -EINVAL,
                                            "reload: '%s' is not a valid action name: %s", reload,
                                            why.message);
        }

        files = calloc(n, sizeof(*files));
        if (!files)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                size_t size = 0;

                r = render_file(json_object_array_get_idx(list, i), i, values, id, &files[i], &size,
                                ret_err);
                if (r < 0)
                        goto out_free_files;
                total += size;
        }
        qsort(files, n, sizeof(*files), rendered_file_cmp);
        for (size_t i = 1; i < n; i++)
                if (streq(files[i - 1].path, files[i].path)) {
                        r = err_info_set(ret_err, -EINVAL, "files: path '%s' appears twice",
                                         files[i].path);
                        goto out_free_files;
                }
        r = check_no_file_is_a_directory(files, n, ret_err);
        if (r < 0)
                goto out_free_files;

        r = -ENOMEM;
        m = json_object_new_object();
        ident = json_object_new_object();
        arr = json_object_new_array_ext((int) n);
        if (!m || !ident || !arr) {
                json_object_put(ident);
                json_object_put(arr);
                goto out_free_files;
        }
        json_object_object_add(ident, "namespace", json_object_new_string(id->namespace));
        json_object_object_add(ident, "name", json_object_new_string(id->name));
        if (id->uid)
                json_object_object_add(ident, "uid", json_object_new_string(id->uid));
        json_object_object_add(m, "apiVersion", json_object_new_string(BUNDLE_API_VERSION));
        json_object_object_add(m, "kind", json_object_new_string(BUNDLE_KIND_MANIFEST));
        json_object_object_add(m, "bundle", ident);
        json_object_object_add(m, "revision", json_object_new_int64(revision));
        if (reload)
                json_object_object_add(m, "reload", json_object_new_string(reload));
        for (size_t i = 0; i < n; i++)
                json_object_array_add(arr, TAKE_PTR(files[i].obj)); /* steals the reference */
        json_object_object_add(m, "files", arr);

        res = calloc(1, sizeof(*res));
        if (!res)
                goto out_free_files;
        r = jsonx_to_canonical(m, &res->manifest, &res->manifest_len);
        if (r < 0)
                goto out_free_files;
        if (res->manifest_len > BUNDLE_MAX_MANIFEST_SIZE) {
                r = err_info_set(ret_err, -EFBIG,
                                 "the rendered bundle is %zu bytes, more than the %d allowed",
                                 res->manifest_len, BUNDLE_MAX_MANIFEST_SIZE);
                goto out_free_files;
        }
        r = bundle_digest(res->manifest, res->manifest_len, res->digest);
        if (r < 0)
                goto out_free_files;
        res->n_files = (unsigned) n;
        res->content_size = total;
        *ret = TAKE_PTR(res);
        r = 0;

out_free_files:
        for (size_t i = 0; i < n; i++)
                json_object_put(files[i].obj);
        free(files);
        return r;
}
