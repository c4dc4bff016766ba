/* SPDX-License-Identifier: Apache-2.0 */

/*
 * libyaml events -> json-c, with an explicit stack (no recursion on
 * untrusted depth). Each node made here carries its source position as json-c
 * userdata: a small struct tagged with a magic number, freed by pos_free().
 *
 * json-c uses the userdata of *doubles* as their format string, so this file
 * never makes doubles (floats stay strings), and yamlx_where() never reads
 * the userdata of a double. Nothing else in this project sets userdata, so a
 * non-double with our magic is ours. json_object_deep_copy() refuses nodes
 * with userdata it doesn't know: use jsonx_deep_copy().
 */

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <yaml.h>

#include "fsx.h"
#include "jsonx.h"
#include "yamlx.h"

#define YAMLX_MAX_DEPTH        256
#define YAMLX_POS_MAGIC        UINT64_C(0x736f70786c6d6179) /* "yamlxpos" */
#define YAMLX_DEFAULT_MAX_FILE ((size_t) 4 * 1024 * 1024)

typedef struct yamlx_pos {
        uint64_t magic;
        unsigned line, column;
} yamlx_pos;

static void pos_free(json_object *o, void *userdata) {
        free(userdata);
}

static int set_pos(json_object *o, const yaml_mark_t *m) {
        yamlx_pos *p;

        if (!o)
                return 0; /* null has no object to carry it */
        p = malloc(sizeof(*p));
        if (!p)
                return -ENOMEM;
        *p = (yamlx_pos){.magic = YAMLX_POS_MAGIC,
                         .line = (unsigned) MIN(m->line + 1, (size_t) UINT_MAX),
                         .column = (unsigned) MIN(m->column + 1, (size_t) UINT_MAX)};
        json_object_set_userdata(o, p, pos_free);
        return 0;
}

int yamlx_where(json_object *o, unsigned *ret_line, unsigned *ret_column) {
        const yamlx_pos *p;

        if (!o || json_object_get_type(o) == json_type_double)
                return -ENOENT;
        p = json_object_get_userdata(o);
        if (!p || p->magic != YAMLX_POS_MAGIC)
                return -ENOENT;
        if (ret_line)
                *ret_line = p->line;
        if (ret_column)
                *ret_column = p->column;
        return 0;
}

/* ---- errors ------------------------------------------------------------- */

static int set_error(err_info *e, int r, const char *filename, const yaml_mark_t *m,
                     const char *fmt, ...) _printf_(5, 6);
static int set_error(err_info *e, int r, const char *filename, const yaml_mark_t *m,
                     const char *fmt, ...) {
        char msg[sizeof(e->message)];
        va_list ap;

        if (!e)
                return r;
        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        err_info_clear(e);
        snprintf(e->reason, sizeof(e->reason), "%s", r == -EBADMSG ? "BadYAML" : err_name(r));
        if (m)
                return err_info_set(e, r, "%s:%zu:%zu: %s", filename ?: "<input>", m->line + 1,
                                    m->column + 1, msg);
        return err_info_set(e, r, "%s: %s", filename ?: "<input>", msg);
}

static int parser_error(yaml_parser_t *p, const char *filename, err_info *e) {
        const char *problem = p->problem ?: "malformed YAML";

        switch (p->error) {
        case YAML_MEMORY_ERROR:
                return set_error(e, -ENOMEM, filename, NULL, "out of memory");
        case YAML_READER_ERROR:
                if (p->problem_value != -1)
                        return set_error(e, -EBADMSG, filename, NULL, "byte %zu: %s (0x%x)",
                                         p->problem_offset, problem, (unsigned) p->problem_value);
                return set_error(e, -EBADMSG, filename, NULL, "byte %zu: %s", p->problem_offset,
                                 problem);
        default:
                if (p->context)
                        return set_error(e, -EBADMSG, filename, &p->problem_mark,
                                         "%s %s (line %zu)", problem, p->context,
                                         p->context_mark.line + 1);
                return set_error(e, -EBADMSG, filename, &p->problem_mark, "%s", problem);
        }
}

/* ---- scalars ------------------------------------------------------------ */

static bool str_in(const char *s, const char *const *list) {
        for (; *list; list++)
                if (streq(s, *list))
                        return true;
        return false;
}

/* YAML 1.2 core schema ints, as int64. Returns false when @s is not one or
 * doesn't fit: the caller keeps it as a string. Decimals with a leading zero
 * ("0644") stay strings as well: YAML 1.1 reads them as octal and 1.2 as
 * decimal, and file modes are exactly where that matters, so we don't guess. */
static bool parse_int(const char *s, int64_t *ret) {
        const char *p = s;
        bool neg = false;
        unsigned base = 10;
        uint64_t v = 0, limit;

        if (*p == '-' || *p == '+') {
                neg = *p == '-';
                p++;
        }
        if (p[0] == '0' && (p[1] == 'o' || p[1] == 'x') && p == s) {
                base = p[1] == 'o' ? 8 : 16;
                p += 2;
        } else if (p[0] == '0' && p[1] != '\0')
                return false;
        if (*p == '\0')
                return false;

        limit = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
        for (; *p; p++) {
                unsigned d;

                if (*p >= '0' && *p <= '9')
                        d = (unsigned) (*p - '0');
                else if (base == 16 && *p >= 'a' && *p <= 'f')
                        d = (unsigned) (*p - 'a' + 10);
                else if (base == 16 && *p >= 'A' && *p <= 'F')
                        d = (unsigned) (*p - 'A' + 10);
                else
                        return false;
                if (d >= base)
                        return false;
                if (v > (limit - d) / base)
                        return false; /* overflow */
                v = v * base + d;
        }
        if (neg)
                *ret = v == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) v;
        else
                *ret = (int64_t) v;
        return true;
}

typedef enum scalar_kind {
        KIND_NULL,
        KIND_BOOL,
        KIND_INT,
        KIND_STRING,
} scalar_kind;

static scalar_kind resolve_plain(const char *s, bool *ret_bool, int64_t *ret_int) {
        static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
        static const char *const trues[] = {"true", "True", "TRUE", NULL};
        static const char *const falses[] = {"false", "False", "FALSE", NULL};

        if (str_in(s, nulls))
                return KIND_NULL;
        if (str_in(s, trues)) {
                *ret_bool = true;
                return KIND_BOOL;
        }
        if (str_in(s, falses)) {
                *ret_bool = false;
                return KIND_BOOL;
        }
        if (parse_int(s, ret_int))
                return KIND_INT;
        return KIND_STRING;
}

/* Makes the json value of a scalar event. *ret is NULL for null. */
static int scalar_to_json(const yaml_event_t *ev, const char *filename, json_object **ret,
                          err_info *e) {
        const char *s = (const char *) ev->data.scalar.value;
        size_t len = ev->data.scalar.length;
        const char *tag = (const char *) ev->data.scalar.tag;
        scalar_kind kind;
        bool b = false;
        int64_t i = 0;
        json_object *o;

        if (memchr(s, '\0', len))
                return set_error(e, -EBADMSG, filename, &ev->start_mark,
                                 "NUL characters are not allowed");

        if (tag && !streq(tag, "!")) {
                scalar_kind want;

                if (streq(tag, YAML_STR_TAG) || streq(tag, YAML_FLOAT_TAG))
                        want = KIND_STRING;
                else if (streq(tag, YAML_INT_TAG))
                        want = KIND_INT;
                else if (streq(tag, YAML_BOOL_TAG))
                        want = KIND_BOOL;
                else if (streq(tag, YAML_NULL_TAG))
                        want = KIND_NULL;
                else
                        return set_error(e, -EBADMSG, filename, &ev->start_mark,
                                         "unsupported tag '%s'", tag);
                kind = want == KIND_STRING ? KIND_STRING : resolve_plain(s, &b, &i);
                if (kind != want)
                        return set_error(e, -EBADMSG, filename, &ev->start_mark,
                                         "'%s' is not a valid %s", s, tag);
        } else if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag)
                kind = resolve_plain(s, &b, &i);
        else
                kind = KIND_STRING; /* quoted, literal, folded, or "!" */

        switch (kind) {
        case KIND_NULL:
                *ret = NULL;
                return 0;
        case KIND_BOOL:
                o = json_object_new_boolean(b);
                break;
        case KIND_INT:
                o = json_object_new_int64(i);
                break;
        default:
                if (len > INT_MAX - 2)
                        return set_error(e, -EBADMSG, filename, &ev->start_mark, "scalar too long");
                o = json_object_new_string_len(s, (int) len);
                break;
        }
        if (!o)
                return -ENOMEM;
        if (set_pos(o, &ev->start_mark) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        *ret = o;
        return 0;
}

/* ---- the tree builder --------------------------------------------------- */

typedef struct frame {
        json_object *container; /* borrowed: owned by its parent or by the root */
        char *key;              /* mapping: key waiting for its value, else NULL */
} frame;

typedef struct builder {
        const char *filename;
        err_info *err;
        json_object *root;
        bool have_root;
        frame stack[YAMLX_MAX_DEPTH];
        unsigned depth;
} builder;

static frame *top(builder *b) {
        return b->depth > 0 ? &b->stack[b->depth - 1] : NULL;
}

static bool expecting_key(builder *b) {
        frame *f = top(b);

        return f && json_object_is_type(f->container, json_type_object) && !f->key;
}

/* Adds @v (ownership taken, NULL is a YAML null) where the parser is. */
static int builder_add(builder *b, json_object *v) {
        frame *f = top(b);

        if (!f) {
                b->root = v;
                b->have_root = true;
                return 0;
        }
        if (json_object_is_type(f->container, json_type_array)) {
                if (json_object_array_add(f->container, v) < 0) {
                        json_object_put(v);
                        return -ENOMEM;
                }
                return 0;
        }
        if (json_object_object_add(f->container, f->key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        free(f->key);
        f->key = NULL;
        return 0;
}

static int builder_key(builder *b, const yaml_event_t *ev) {
        frame *f = top(b);
        const char *s = (const char *) ev->data.scalar.value;

        if (ev->data.scalar.anchor)
                return set_error(b->err, -EBADMSG, b->filename, &ev->start_mark,
                                 "anchors are not supported");
        if (memchr(s, '\0', ev->data.scalar.length))
                return set_error(b->err, -EBADMSG, b->filename, &ev->start_mark,
                                 "NUL characters are not allowed in keys");
        if (json_object_object_get_ex(f->container, s, NULL))
                return set_error(b->err, -EBADMSG, b->filename, &ev->start_mark,
                                 "duplicate key '%s'", s);
        f->key = strdup(s);
        return f->key ? 0 : -ENOMEM;
}

static int builder_push(builder *b, const yaml_event_t *ev, bool mapping) {
        json_object *c;
        int r;

        if (b->depth >= YAMLX_MAX_DEPTH)
                return set_error(b->err, -EBADMSG, b->filename, &ev->start_mark,
                                 "nesting deeper than %d levels", YAMLX_MAX_DEPTH);
        c = mapping ? json_object_new_object() : json_object_new_array();
        if (!c)
                return -ENOMEM;
        if (set_pos(c, &ev->start_mark) < 0) {
                json_object_put(c);
                return -ENOMEM;
        }
        r = builder_add(b, c); /* the parent (or root) owns it from here */
        if (r < 0)
                return r;
        b->stack[b->depth++] = (frame){.container = c};
        return 0;
}

static void builder_done(builder *b) {
        for (unsigned i = 0; i < b->depth; i++)
                free(b->stack[i].key);
        b->depth = 0;
        json_object_put(b->root);
        b->root = NULL;
}

static int handle_event(builder *b, const yaml_event_t *ev, unsigned *docs, bool *end) {
        json_object *v = NULL;
        int r;

        switch (ev->type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
        case YAML_NO_EVENT:
                return 0;
        case YAML_STREAM_END_EVENT:
                *end = true;
                return 0;
        case YAML_DOCUMENT_START_EVENT:
                if (++*docs > 1)
                        return set_error(b->err, -EBADMSG, b->filename, &ev->start_mark,
                                         "multiple documents are not supported");
                return 0;
        case YAML_ALIAS_EVENT:
                return set_error(b->err, -EBADMSG, b->filename, &ev->start_mark,
                                 "aliases are not supported");
        case YAML_SCALAR_EVENT:
                if (expecting_key(b))
                        return builder_key(b, ev);
                if (ev->data.scalar.anchor)
                        return set_error(b->err, -EBADMSG, b->filename, &ev->start_mark,
                                         "anchors are not supported");
                r = scalar_to_json(ev, b->filename, &v, b->err);
                if (r < 0)
                        return r;
                return builder_add(b, v);
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
                bool mapping = ev->type == YAML_MAPPING_START_EVENT;
                const void *anchor = mapping ? (const void *) ev->data.mapping_start.anchor
                                             : (const void *) ev->data.sequence_start.anchor;

                if (expecting_key(b))
                        return set_error(b->err, -EBADMSG, b->filename, &ev->start_mark,
                                         "keys must be scalars");
                if (anchor)
                        return set_error(b->err, -EBADMSG, b->filename, &ev->start_mark,
                                         "anchors are not supported");
                return builder_push(b, ev, mapping);
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
                if (b->depth == 0)
                        return set_error(b->err, -EBADMSG, b->filename, &ev->start_mark,
                                         "unbalanced end of collection");
                b->depth--;
                free(b->stack[b->depth].key);
                b->stack[b->depth].key = NULL;
                return 0;
        }
        return 0;
}

int yamlx_parse(const char *data, size_t len, const char *filename, json_object **ret,
                err_info *ret_err) {
        yaml_parser_t parser;
        builder *b;
        unsigned docs = 0;
        bool end = false;
        int r = 0;

        if (!data && len > 0)
                return -EINVAL;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->filename = filename;
        b->err = ret_err;

        if (!yaml_parser_initialize(&parser)) {
                free(b);
                return -ENOMEM;
        }
        yaml_parser_set_input_string(&parser, (const unsigned char *) (data ?: ""), len);

        while (!end) {
                yaml_event_t ev;

                if (!yaml_parser_parse(&parser, &ev)) {
                        r = parser_error(&parser, filename, ret_err);
                        break;
                }
                r = handle_event(b, &ev, &docs, &end);
                yaml_event_delete(&ev);
                if (r < 0)
                        break;
        }
        yaml_parser_delete(&parser);

        if (r < 0) {
                if (r == -ENOMEM && ret_err && isempty(ret_err->message))
                        set_error(ret_err, r, filename, NULL, "out of memory");
                builder_done(b);
                free(b);
                return r;
        }

        if (ret)
                *ret = TAKE_PTR(b->root);
        builder_done(b);
        free(b);
        return 0;
}

int yamlx_load_file(const char *path, size_t max_size, json_object **ret, err_info *ret_err) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r;

        if (!path)
                return -EINVAL;
        if (max_size == 0)
                max_size = YAMLX_DEFAULT_MAX_FILE;

        r = fsx_read_file(AT_FDCWD, path, max_size, &data, &len);
        if (r == -EFBIG)
                return set_error(ret_err, r, path, NULL, "file larger than %zu bytes", max_size);
        if (r < 0)
                return set_error(ret_err, r, path, NULL, "%s", strerror(-r));
        return yamlx_parse(data, len, path, ret, ret_err);
}

int yamlx_error(err_info *ret_err, int r, const char *filename, json_object *o, const char *fmt,
                ...) {
        char msg[sizeof(ret_err->message)];
        unsigned line, column;
        va_list ap;

        if (!ret_err)
                return r;
        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        err_info_clear(ret_err);
        snprintf(ret_err->reason, sizeof(ret_err->reason), "%s", err_name(r));
        if (yamlx_where(o, &line, &column) >= 0)
                return err_info_set(ret_err, r, "%s:%u:%u: %s", filename ?: "<input>", line, column,
                                    msg);
        return err_info_set(ret_err, r, "%s: %s", filename ?: "<input>", msg);
}
