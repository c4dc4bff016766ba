/* SPDX-License-Identifier: Apache-2.0 */

/*
 * Parsers of the two XML documents S3 sends us: <Error> and ListObjectsV2's
 * <ListBucketResult>. Both are untrusted input, read with expat as a stream
 * of elements (no tree is built). Any document that carries a DTD is refused,
 * before expat sees it and again from its doctype handler: S3 never sends
 * one, and only a DTD can declare the entities of a "billion laughs" attack
 * or an external entity. What remains are the predefined entities and
 * character references, which expat decodes in text as it must.
 *
 * Each document is flat: the values we take are the text of an element at a
 * fixed depth (2, or 3 inside <Contents>), only its own text (not that of
 * elements nested in it), and a repeated element keeps the last. Element
 * names are compared without their namespace, as S3 sends them in its own.
 */

#include <errno.h>
#include <expat.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"

/* The separator expat puts between a namespace URI and the local name. */
#define NS_SEP '\x01'

typedef struct xml_reader xml_reader;

/* Called at each element start below the root: returns where the element's
 * text goes (NULL: not wanted), or sets r->error. */
typedef char **(*xml_start_fn)(xml_reader *r, const char *name);

struct xml_reader {
        XML_Parser parser;
        const char *root;   /* the required root element */
        xml_start_fn start; /* elements below the root */
        void *userdata;
        unsigned depth; /* of the current element; the root is 1 */
        bool root_seen;
        char **dst;         /* the wanted element's text goes here ... */
        unsigned dst_depth; /* ... while this is its depth */
        char *buf;          /* its text so far */
        size_t len, cap;
        int error;
};

static const char *local_name(const char *name) {
        const char *sep = strrchr(name, NS_SEP);

        return sep ? sep + 1 : name;
}

static void reader_fail(xml_reader *r, int error) {
        if (r->error == 0)
                r->error = error;
        (void) XML_StopParser(r->parser, XML_FALSE);
}

static void XMLCALL on_start(void *userdata, const XML_Char *name, const XML_Char **attrs) {
        xml_reader *r = userdata;
        const char *local = local_name(name);

        r->depth++;
        if (r->depth == 1) {
                if (!streq(local, r->root))
                        reader_fail(r, -EBADMSG);
                r->root_seen = true;
                return;
        }
        if (r->dst)
                return; /* nested in a wanted element: its text is not ours */
        r->dst = r->start(r, local);
        if (r->error)
                return reader_fail(r, r->error);
        if (r->dst) {
                r->dst_depth = r->depth;
                r->len = 0;
        }
}

static void XMLCALL on_end(void *userdata, const XML_Char *name) {
        xml_reader *r = userdata;
        char *s;

        if (r->dst && r->depth == r->dst_depth) {
                s = strndup(r->buf ? r->buf : "", r->len);
                if (!s)
                        return reader_fail(r, -ENOMEM);
                free(*r->dst);
                *r->dst = s;
                r->dst = NULL;
        }
        r->depth--;
}

static void XMLCALL on_text(void *userdata, const XML_Char *text, int len) {
        xml_reader *r = userdata;

        if (!r->dst || r->depth != r->dst_depth || len <= 0)
                return;
        if (r->len + (size_t) len > r->cap) {
                size_t cap = MAX(r->cap * 2, r->len + (size_t) len);
                char *b = realloc(r->buf, cap);

                if (!b)
                        return reader_fail(r, -ENOMEM);
                r->buf = b;
                r->cap = cap;
        }
        memcpy(r->buf + r->len, text, (size_t) len);
        r->len += (size_t) len;
}

static void XMLCALL on_doctype(void *userdata, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset) {
        reader_fail(userdata, -EBADMSG);
}

/* Reads @data as a document with root element @root, calling @start for
 * each element below it. Returns 0, -EBADMSG for anything that is not such a
 * well-formed document (or carries a DTD), -EFBIG over S3_XML_MAX, or -ENOMEM,
 * or the error @start set. */
static int xml_read(const char *data, size_t len, const char *root, xml_start_fn start,
                    void *userdata) {
        xml_reader r = {.root = root, .start = start, .userdata = userdata};
        enum XML_Status status;

        if (!data)
                return -EBADMSG;
        if (len > S3_XML_MAX)
                return -EFBIG;
        /* "<!DOCTYPE" anywhere: a DTD, or markup we would refuse anyway. */
        if (memmem(data, len, "<!DOCTYPE", 9) || memmem(data, len, "<!ENTITY", 8))
                return -EBADMSG;
        r.parser = XML_ParserCreateNS(NULL, NS_SEP);
        if (!r.parser)
                return -ENOMEM;
        XML_SetUserData(r.parser, &r);
        XML_SetElementHandler(r.parser, on_start, on_end);
        XML_SetCharacterDataHandler(r.parser, on_text);
        XML_SetStartDoctypeDeclHandler(r.parser, on_doctype);
        (void) XML_SetParamEntityParsing(r.parser, XML_PARAM_ENTITY_PARSING_NEVER);
        status = XML_Parse(r.parser, data, (int) len, XML_TRUE);
        if (status != XML_STATUS_OK && r.error == 0)
                r.error = XML_GetErrorCode(r.parser) == XML_ERROR_NO_MEMORY ? -ENOMEM : -EBADMSG;
        if (r.error == 0 && !r.root_seen)
                r.error = -EBADMSG;
        XML_ParserFree(r.parser);
        free(r.buf);
        return r.error;
}

void s3_xml_error_done(s3_xml_error *e) {
        if (!e)
                return;
        free(e->code);
        free(e->message);
        free(e->request_id);
        free(e->resource);
        *e = (s3_xml_error){};
}

static char **error_start(xml_reader *r, const char *name) {
        s3_xml_error *e = r->userdata;

        if (r->depth != 2)
                return NULL;
        if (streq(name, "Code"))
                return &e->code;
        if (streq(name, "Message"))
                return &e->message;
        if (streq(name, "RequestId"))
                return &e->request_id;
        if (streq(name, "Resource"))
                return &e->resource;
        return NULL;
}

int s3_xml_parse_error(const char *data, size_t len, s3_xml_error *ret) {
        s3_xml_error e = {};
        int r;

        r = xml_read(data, len, "Error", error_start, &e);
        if (r == 0 && isempty(e.code))
                r = -EBADMSG;
        if (r < 0) {
                s3_xml_error_done(&e);
                return r;
        }
        *ret = e;
        return 0;
}

void s3_list_entries_free(s3_list_entry *e, size_t n) {
        if (!e)
                return;
        for (size_t i = 0; i < n; i++) {
                free(e[i].key);
                free(e[i].etag);
                free(e[i].last_modified);
        }
        free(e);
}

void s3_list_page_done(s3_list_page *p) {
        if (!p)
                return;
        s3_list_entries_free(p->entries, p->n_entries);
        free(p->next_token);
        *p = (s3_list_page){};
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s || *s < '0' || *s > '9')
                return -EBADMSG;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0')
                return -EBADMSG;
        *ret = v;
        return 0;
}

typedef struct list_ctx {
        s3_list_page page;
        size_t cap;
        s3_list_entry *cur; /* the <Contents> being read */
        char *size;         /* its <Size> */
        char *truncated;
        int error;
} list_ctx;

/* The <Contents> just read: a key, and a size that is a number if any. */
static int list_finish_entry(list_ctx *l) {
        s3_list_entry *e = l->cur;
        _cleanup_free_ char *size = TAKE_PTR(l->size);

        if (!e)
                return 0;
        l->cur = NULL;
        l->page.n_entries++;
        if (isempty(e->key))
                return -EBADMSG;
        if (size && parse_u64(size, &e->size) < 0)
                return -EBADMSG;
        return 0;
}

static char **list_start(xml_reader *r, const char *name) {
        list_ctx *l = r->userdata;

        if (r->depth == 2) {
                r->error = list_finish_entry(l);
                if (r->error < 0)
                        return NULL;
                if (streq(name, "Contents")) {
                        if (l->page.n_entries == l->cap) {
                                size_t ncap = MAX(l->cap * 2, (size_t) 16);
                                s3_list_entry *a = realloc(l->page.entries, ncap * sizeof(*a));

                                if (!a) {
                                        r->error = -ENOMEM;
                                        return NULL;
                                }
                                l->page.entries = a;
                                l->cap = ncap;
                        }
                        l->cur = &l->page.entries[l->page.n_entries];
                        *l->cur = (s3_list_entry){};
                        return NULL;
                }
                if (streq(name, "IsTruncated"))
                        return &l->truncated;
                if (streq(name, "NextContinuationToken"))
                        return &l->page.next_token;
                return NULL;
        }
        if (r->depth != 3 || !l->cur)
                return NULL;
        if (streq(name, "Key"))
                return &l->cur->key;
        if (streq(name, "ETag"))
                return &l->cur->etag;
        if (streq(name, "LastModified"))
                return &l->cur->last_modified;
        if (streq(name, "Size"))
                return &l->size;
        return NULL;
}

int s3_xml_parse_list(const char *data, size_t len, s3_list_page *ret) {
        list_ctx l = {};
        s3_list_page *p = &l.page;
        int r;

        r = xml_read(data, len, "ListBucketResult", list_start, &l);
        if (r == 0)
                r = list_finish_entry(&l);
        else if (l.cur)
                p->n_entries++; /* so that it is freed */
        free(l.size);
        if (r < 0)
                goto fail;

        r = -EBADMSG;
        if (!l.truncated || streq(l.truncated, "false"))
                p->is_truncated = false;
        else if (streq(l.truncated, "true"))
                p->is_truncated = true;
        else
                goto fail;
        if (p->is_truncated && isempty(p->next_token))
                goto fail;
        if (!p->is_truncated)
                p->next_token = mfree(p->next_token);
        free(l.truncated);
        *ret = *p;
        return 0;

fail:
        free(l.truncated);
        s3_list_page_done(p);
        return r;
}
