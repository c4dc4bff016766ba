/* SPDX-License-Identifier: Apache-2.0 */

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <json-c/printbuf.h>

#include "jsonx.h"

json_object *jsonx_get(json_object *o, const char *dotted_path) {
        const char *p = dotted_path;

        if (!o || !dotted_path)
                return NULL;

        while (*p) {
                const char *dot = strchrnul(p, '.');
                size_t n = (size_t) (dot - p);
                char key[256];

                if (n == 0 || n >= sizeof(key))
                        return NULL;
                if (!json_object_is_type(o, json_type_object))
                        return NULL;
                memcpy(key, p, n);
                key[n] = '\0';
                if (!json_object_object_get_ex(o, key, &o) || !o)
                        return NULL;
                p = *dot ? dot + 1 : dot;
                if (*dot && !*p)
                        return NULL; /* trailing dot */
        }
        return o;
}

const char *jsonx_get_string(json_object *o, const char *dotted_path) {
        json_object *v = jsonx_get(o, dotted_path);

        if (!v || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

int64_t jsonx_get_int(json_object *o, const char *dotted_path, int64_t def) {
        json_object *v = jsonx_get(o, dotted_path);

        if (!v || !json_object_is_type(v, json_type_int))
                return def;
        return json_object_get_int64(v);
}

bool jsonx_get_bool(json_object *o, const char *dotted_path, bool def) {
        json_object *v = jsonx_get(o, dotted_path);

        if (!v || !json_object_is_type(v, json_type_boolean))
                return def;
        return json_object_get_boolean(v);
}

int jsonx_parse(const char *data, size_t len, json_object **ret, err_info *ret_err) {
        json_tokener *tok;
        json_object *o;
        enum json_tokener_error jerr;
        size_t off;

        if (!data && len > 0)
                return -EINVAL;
        if (len > INT32_MAX)
                return err_info_set(ret_err, -EFBIG, "JSON document too large (%zu bytes)", len);

        /* json-c's strict mode still accepts 'single-quoted' strings and raw
         * control characters inside strings; RFC 8259 allows neither. */
        {
                bool in_str = false;

                for (size_t i = 0; i < len; i++) {
                        unsigned char c = (unsigned char) data[i];
                        bool bad;

                        if (in_str) {
                                bad = c < 0x20;
                                if (c == '\\')
                                        i++;
                                else if (c == '"')
                                        in_str = false;
                        } else {
                                bad = c == '\'';
                                if (c == '"')
                                        in_str = true;
                        }
                        if (bad) {
                                err_info_clear(ret_err);
                                if (ret_err)
                                        snprintf(ret_err->reason, sizeof(ret_err->reason),
                                                 "BadJSON");
                                return err_info_set(ret_err, -EBADMSG,
                                                    "unexpected character at byte %zu", i);
                        }
                }
        }

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        /* JSON_TOKENER_STRICT rejects what RFC 8259 does: single quotes,
         * comments, trailing commas, unescaped control characters. */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);

        o = json_tokener_parse_ex(tok, data ? data : "", (int) len);
        jerr = json_tokener_get_error(tok);
        off = json_tokener_get_parse_end(tok);

        if (jerr == json_tokener_continue) {
                /* Input ended inside a value (or was empty). A bare number at
                 * the very end also lands here; feeding an empty buffer tells
                 * the tokener the input is complete. */
                o = json_tokener_parse_ex(tok, "", 1);
                jerr = json_tokener_get_error(tok);
                if (jerr == json_tokener_success) /* o is NULL for "null" */
                        off = len;
                else {
                        json_object_put(o);
                        json_tokener_free(tok);
                        err_info_clear(ret_err);
                        if (ret_err)
                                snprintf(ret_err->reason, sizeof(ret_err->reason), "BadJSON");
                        return err_info_set(ret_err, -EBADMSG,
                                            "unexpected end of JSON input at byte %zu", len);
                }
        }
        json_tokener_free(tok);

        if (jerr != json_tokener_success) {
                err_info_clear(ret_err);
                if (ret_err)
                        snprintf(ret_err->reason, sizeof(ret_err->reason), "BadJSON");
                return err_info_set(ret_err, -EBADMSG, "%s at byte %zu",
                                    json_tokener_error_desc(jerr), off);
        }

        /* Only whitespace may follow the value. */
        for (size_t i = off; i < len; i++)
                if (!strchr(" \t\r\n", data[i])) {
                        json_object_put(o);
                        err_info_clear(ret_err);
                        if (ret_err)
                                snprintf(ret_err->reason, sizeof(ret_err->reason), "BadJSON");
                        return err_info_set(ret_err, -EBADMSG,
                                            "trailing garbage after JSON value at byte %zu", i);
                }

        if (ret)
                *ret = o;
        else
                json_object_put(o);
        return 0;
}

/* ---- canonical serialization ------------------------------------------- */

typedef struct buf {
        char *data;
        size_t len, cap;
        bool oom;
} buf;

static void buf_append(buf *b, const char *s, size_t n) {
        if (b->oom)
                return;
        if (b->len + n + 1 > b->cap) {
                size_t cap = MAX(b->cap * 2, b->len + n + 1);
                char *d = realloc(b->data, MAX(cap, (size_t) 64));

                if (!d) {
                        b->oom = true;
                        return;
                }
                b->data = d;
                b->cap = MAX(cap, (size_t) 64);
        }
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
}

static void buf_puts(buf *b, const char *s) {
        buf_append(b, s, strlen(s));
}

static void buf_put_string(buf *b, const char *s, size_t n) {
        static const char hex[] = "0123456789abcdef";
        size_t run = 0;

        buf_append(b, "\"", 1);
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                char esc[7];
                const char *e = NULL;

                switch (c) {
                case '"':
                        e = "\\\"";
                        break;
                case '\\':
                        e = "\\\\";
                        break;
                case '\b':
                        e = "\\b";
                        break;
                case '\f':
                        e = "\\f";
                        break;
                case '\n':
                        e = "\\n";
                        break;
                case '\r':
                        e = "\\r";
                        break;
                case '\t':
                        e = "\\t";
                        break;
                default:
                        if (c < 0x20) {
                                esc[0] = '\\';
                                esc[1] = 'u';
                                esc[2] = '0';
                                esc[3] = '0';
                                esc[4] = hex[c >> 4];
                                esc[5] = hex[c & 0xf];
                                esc[6] = '\0';
                                e = esc;
                        }
                        break;
                }
                if (!e) {
                        run++;
                        continue;
                }
                buf_append(b, s + i - run, run);
                run = 0;
                buf_puts(b, e);
        }
        buf_append(b, s + n - run, run);
        buf_append(b, "\"", 1);
}

static int key_cmp(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* The userdata that marks a raw value. yamlx reads positions from userdata
 * tagged with its own magic number, which this is not. */
static const uint32_t raw_tag[4];

static int raw_to_string(json_object *o, struct printbuf *pb, int level, int flags) {
        (void) level;
        (void) flags;
        return printbuf_memappend(pb, json_object_get_string(o), json_object_get_string_len(o));
}

static size_t skip_ws(const char *d, size_t len, size_t i) {
        while (i < len && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r'))
                i++;
        return i;
}

/* The offset just past the string that starts at @i (a '"'), or 0. */
static size_t skip_string(const char *d, size_t len, size_t i) {
        for (i++; i < len; i++) {
                if (d[i] == '\\')
                        i++;
                else if (d[i] == '"')
                        return i + 1;
        }
        return 0;
}

/* The offset just past the value that starts at @i, or 0. Brackets are only
 * counted; whoever parses the value checks that they match. */
static size_t skip_value(const char *d, size_t len, size_t i) {
        size_t depth = 0;

        if (i >= len)
                return 0;
        if (d[i] != '{' && d[i] != '[') {
                if (d[i] == '"')
                        return skip_string(d, len, i);
                while (i < len && !strchr(",}] \t\r\n", d[i]))
                        i++;
                return i;
        }
        while (i < len) {
                switch (d[i]) {
                case '"':
                        i = skip_string(d, len, i);
                        if (!i)
                                return 0;
                        continue;
                case '{':
                case '[':
                        depth++;
                        break;
                case '}':
                case ']':
                        if (--depth == 0)
                                return i + 1;
                        break;
                }
                i++;
        }
        return 0;
}

int jsonx_object_members(const char *data, size_t len, jsonx_member_fn fn, void *userdata,
                         err_info *ret_err) {
        size_t i;
        int r;

        if ((!data && len > 0) || !fn)
                return -EINVAL;
        i = skip_ws(data, len, 0);
        if (i >= len || data[i] != '{')
                return err_info_set(ret_err, -EBADMSG, "expected a JSON object at byte %zu", i);
        i = skip_ws(data, len, i + 1);
        if (i < len && data[i] == '}')
                i++;
        else
                for (;;) {
                        _cleanup_json_ json_object *key = NULL;
                        size_t end, v;

                        end = i < len && data[i] == '"' ? skip_string(data, len, i) : 0;
                        if (!end)
                                return err_info_set(ret_err, -EBADMSG,
                                                    "expected a member name at byte %zu", i);
                        r = jsonx_parse(data + i, end - i, &key, ret_err);
                        if (r < 0)
                                return r;
                        i = skip_ws(data, len, end);
                        if (i >= len || data[i] != ':')
                                return err_info_set(ret_err, -EBADMSG, "expected ':' at byte %zu",
                                                    i);
                        v = skip_ws(data, len, i + 1);
                        end = skip_value(data, len, v);
                        if (!end || end == v)
                                return err_info_set(ret_err, -EBADMSG,
                                                    "expected a value at byte %zu", v);
                        r = fn(json_object_get_string(key), data + v, end - v, userdata);
                        if (r != 0)
                                return r;
                        i = skip_ws(data, len, end);
                        if (i < len && data[i] == ',') {
                                i = skip_ws(data, len, i + 1);
                                continue;
                        }
                        if (i < len && data[i] == '}') {
                                i++;
                                break;
                        }
                        return err_info_set(ret_err, -EBADMSG, "expected ',' or '}' at byte %zu",
                                            i);
                }
        i = skip_ws(data, len, i);
        if (i < len)
                return err_info_set(ret_err, -EBADMSG, "trailing data at byte %zu", i);
        return 0;
}

json_object *jsonx_new_raw(const char *text, size_t len) {
        json_object *o;

        if (len > INT_MAX)
                return NULL;
        o = json_object_new_string_len(text, (int) len);
        if (o)
                json_object_set_serializer(o, raw_to_string, (void *) raw_tag, NULL);
        return o;
}

const char *jsonx_raw_text(json_object *o) {
        if (!o || !json_object_is_type(o, json_type_string) ||
            json_object_get_userdata(o) != (void *) raw_tag)
                return NULL;
        return json_object_get_string(o);
}

static int canonical_write(buf *b, json_object *o, unsigned depth) {
        char num[64];

        if (depth > 1000)
                return -ELOOP;
        if (jsonx_raw_text(o)) {
                buf_append(b, json_object_get_string(o), (size_t) json_object_get_string_len(o));
                return 0;
        }

        switch (json_object_get_type(o)) {
        case json_type_null:
                buf_puts(b, "null");
                return 0;
        case json_type_boolean:
                buf_puts(b, json_object_get_boolean(o) ? "true" : "false");
                return 0;
        case json_type_int:
                if (json_object_get_int64(o) == INT64_MAX && json_object_get_uint64(o) > INT64_MAX)
                        snprintf(num, sizeof(num), "%" PRIu64, json_object_get_uint64(o));
                else
                        snprintf(num, sizeof(num), "%lld", (long long) json_object_get_int64(o));
                buf_puts(b, num);
                return 0;
        case json_type_double: {
                /* json-c's own formatting of the value. A parsed double keeps
                 * its source text ("1.50") as its serialization; a fresh
                 * object forgets it, so equal values print the same. Nothing
                 * here produces doubles from YAML. */
                json_object *d = json_object_new_double(json_object_get_double(o));

                if (!d)
                        return -ENOMEM;
                buf_puts(b, json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
                json_object_put(d);
                return 0;
        }
        case json_type_string:
                buf_put_string(b, json_object_get_string(o),
                               (size_t) json_object_get_string_len(o));
                return 0;
        case json_type_array: {
                size_t n = json_object_array_length(o);

                buf_append(b, "[", 1);
                for (size_t i = 0; i < n; i++) {
                        int r;

                        if (i > 0)
                                buf_append(b, ",", 1);
                        r = canonical_write(b, json_object_array_get_idx(o, i), depth + 1);
                        if (r < 0)
                                return r;
                }
                buf_append(b, "]", 1);
                return 0;
        }
        case json_type_object: {
                size_t n = (size_t) json_object_object_length(o), i = 0;
                _cleanup_free_ const char **keys = NULL;

                if (n > 0) {
                        keys = calloc(n, sizeof(char *));
                        if (!keys)
                                return -ENOMEM;
                        json_object_object_foreach(o, k, v) {
                                (void) v;
                                keys[i++] = k;
                        }
                        qsort(keys, n, sizeof(char *), key_cmp);
                }
                buf_append(b, "{", 1);
                for (i = 0; i < n; i++) {
                        json_object *v = NULL;
                        int r;

                        if (i > 0)
                                buf_append(b, ",", 1);
                        buf_put_string(b, keys[i], strlen(keys[i]));
                        buf_append(b, ":", 1);
                        (void) json_object_object_get_ex(o, keys[i], &v);
                        r = canonical_write(b, v, depth + 1);
                        if (r < 0)
                                return r;
                }
                buf_append(b, "}", 1);
                return 0;
        }
        }
        return -EINVAL;
}

int jsonx_to_canonical(json_object *o, char **ret, size_t *ret_len) {
        buf b = {};
        int r;

        r = canonical_write(&b, o, 0);
        if (r >= 0 && b.oom)
                r = -ENOMEM;
        if (r < 0) {
                free(b.data);
                return r;
        }
        if (ret_len)
                *ret_len = b.len;
        if (ret)
                *ret = b.data;
        else
                free(b.data);
        return 0;
}

/* json-c's deep copy refuses objects with userdata it doesn't know (yamlx
 * keeps source positions there). Reporting the copy as complete (return 2)
 * skips the userdata: the copy has no positions. */
static int deep_copy_shallow(json_object *src, json_object *parent, const char *key, size_t index,
                             json_object **dst) {
        int r = json_c_shallow_copy_default(src, parent, key, index, dst);

        if (r < 0)
                return r;
        if (json_object_get_type(src) == json_type_double)
                return r; /* let json-c copy a double's format string */
        return 2;
}

int jsonx_deep_copy(json_object *o, json_object **ret) {
        json_object *c = NULL;

        if (!o) {
                if (ret)
                        *ret = NULL;
                return 0;
        }
        if (json_object_deep_copy(o, &c, deep_copy_shallow) < 0)
                return -ENOMEM;
        if (ret)
                *ret = c;
        else
                json_object_put(c);
        return 0;
}
