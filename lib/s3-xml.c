/* SPDX-License-Identifier: Apache-2.0 */

/*
 * Parsers of the two XML documents S3 sends us: <Error> and ListObjectsV2's
 * <ListBucketResult>. Both are untrusted input. libxml2 reads them with
 * XML_PARSE_NONET and without XML_PARSE_NOENT/DTDLOAD, and any document that
 * carries a DTD is refused before libxml2 sees it: S3 never sends one, and
 * only a DTD can declare the entities of a "billion laughs" attack. Text is
 * taken from text and CDATA nodes only, so no entity reference is expanded
 * while reading either.
 */

#include <errno.h>
#include <inttypes.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(xmlDoc *, xmlFreeDoc);

#define XML_OPTIONS (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA)

static void xml_silent(void *ctx, const char *msg, ...) {
}

static void xml_silent_structured(void *ctx, xmlErrorPtr error) {
}

static int xml_read(const char *data, size_t len, xmlDoc **ret) {
        xmlGenericErrorFunc old_generic;
        xmlStructuredErrorFunc old_structured;
        void *old_generic_ctx, *old_structured_ctx;
        xmlDoc *doc;

        if (!data)
                return -EBADMSG;
        if (len > S3_XML_MAX)
                return -EFBIG;
        /* "<!DOCTYPE" anywhere: a DTD, or markup we would refuse anyway. */
        if (memmem(data, len, "<!DOCTYPE", 9) || memmem(data, len, "<!ENTITY", 8))
                return -EBADMSG;
        /* XML_PARSE_NOERROR does not cover every message (encoding errors go
         * to the generic handler, i.e. stderr): silence libxml2 while we parse
         * untrusted bytes, then restore whatever handlers were set. */
        old_generic = xmlGenericError;
        old_generic_ctx = xmlGenericErrorContext;
        old_structured = xmlStructuredError;
        old_structured_ctx = xmlStructuredErrorContext;
        xmlSetGenericErrorFunc(NULL, xml_silent);
        xmlSetStructuredErrorFunc(NULL, xml_silent_structured);
        doc = xmlReadMemory(data, (int) len, NULL, NULL, XML_OPTIONS);
        xmlSetGenericErrorFunc(old_generic_ctx, old_generic);
        xmlSetStructuredErrorFunc(old_structured_ctx, old_structured);
        if (!doc)
                return -EBADMSG;
        if (doc->intSubset || doc->extSubset || !xmlDocGetRootElement(doc)) {
                xmlFreeDoc(doc);
                return -EBADMSG;
        }
        *ret = doc;
        return 0;
}

static bool node_is(const xmlNode *n, const char *name) {
        return n->type == XML_ELEMENT_NODE && n->name && streq((const char *) n->name, name);
}

/* The concatenated text and CDATA children of @n (no entity expansion), or
 * NULL on OOM. */
static char *node_text(const xmlNode *n) {
        size_t len = 0;
        char *s, *p;

        for (const xmlNode *c = n->children; c; c = c->next)
                if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
                        len += strlen((const char *) c->content);
        s = p = malloc(len + 1);
        if (!s)
                return NULL;
        for (const xmlNode *c = n->children; c; c = c->next)
                if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content) {
                        size_t l = strlen((const char *) c->content);

                        memcpy(p, c->content, l);
                        p += l;
                }
        *p = '\0';
        return s;
}

/* Replaces *@dst with the text of @n. A repeated element keeps the last. */
static int take_text(const xmlNode *n, char **dst) {
        char *s = node_text(n);

        if (!s)
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
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

int s3_xml_parse_error(const char *data, size_t len, s3_xml_error *ret) {
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        s3_xml_error e = {};
        xmlNode *root;
        int r;

        r = xml_read(data, len, &doc);
        if (r < 0)
                return r;
        root = xmlDocGetRootElement(doc);
        if (!node_is(root, "Error"))
                return -EBADMSG;

        for (xmlNode *n = root->children; n; n = n->next) {
                r = 0;
                if (node_is(n, "Code"))
                        r = take_text(n, &e.code);
                else if (node_is(n, "Message"))
                        r = take_text(n, &e.message);
                else if (node_is(n, "RequestId"))
                        r = take_text(n, &e.request_id);
                else if (node_is(n, "Resource"))
                        r = take_text(n, &e.resource);
                if (r < 0) {
                        s3_xml_error_done(&e);
                        return r;
                }
        }
        if (isempty(e.code)) {
                s3_xml_error_done(&e);
                return -EBADMSG;
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

static int parse_contents(const xmlNode *c, s3_list_entry *ret) {
        s3_list_entry e = {};
        _cleanup_free_ char *size = NULL;
        int r;

        for (const xmlNode *n = c->children; n; n = n->next) {
                r = 0;
                if (node_is(n, "Key"))
                        r = take_text(n, &e.key);
                else if (node_is(n, "ETag"))
                        r = take_text(n, &e.etag);
                else if (node_is(n, "LastModified"))
                        r = take_text(n, &e.last_modified);
                else if (node_is(n, "Size"))
                        r = take_text(n, &size);
                if (r < 0)
                        goto fail;
        }
        r = -EBADMSG;
        if (isempty(e.key))
                goto fail;
        if (size && parse_u64(size, &e.size) < 0)
                goto fail;
        *ret = e;
        return 0;

fail:
        free(e.key);
        free(e.etag);
        free(e.last_modified);
        return r;
}

int s3_xml_parse_list(const char *data, size_t len, s3_list_page *ret) {
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        _cleanup_free_ char *truncated = NULL;
        s3_list_page p = {};
        size_t n = 0, cap = 0;
        xmlNode *root;
        int r;

        r = xml_read(data, len, &doc);
        if (r < 0)
                return r;
        root = xmlDocGetRootElement(doc);
        if (!node_is(root, "ListBucketResult"))
                return -EBADMSG;

        for (xmlNode *c = root->children; c; c = c->next) {
                if (node_is(c, "Contents")) {
                        if (n == cap) {
                                size_t ncap = MAX(cap * 2, (size_t) 16);
                                s3_list_entry *a = realloc(p.entries, ncap * sizeof(*a));

                                if (!a) {
                                        r = -ENOMEM;
                                        goto fail;
                                }
                                p.entries = a;
                                cap = ncap;
                        }
                        r = parse_contents(c, &p.entries[n]);
                        if (r < 0)
                                goto fail;
                        p.n_entries = ++n;
                } else if (node_is(c, "IsTruncated")) {
                        r = take_text(c, &truncated);
                        if (r < 0)
                                goto fail;
                } else if (node_is(c, "NextContinuationToken")) {
                        r = take_text(c, &p.next_token);
                        if (r < 0)
                                goto fail;
                }
        }

        r = -EBADMSG;
        if (!truncated || streq(truncated, "false"))
                p.is_truncated = false;
        else if (streq(truncated, "true"))
                p.is_truncated = true;
        else
                goto fail;
        if (p.is_truncated && isempty(p.next_token))
                goto fail;
        if (!p.is_truncated) {
                free(p.next_token);
                p.next_token = NULL;
        }
        *ret = p;
        return 0;

fail:
        s3_list_page_done(&p);
        return r;
}
