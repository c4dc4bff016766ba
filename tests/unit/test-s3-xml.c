/* SPDX-License-Identifier: Apache-2.0 */

/*
 * s3-xml.c: the S3 <Error> and ListObjectsV2 parsers against well-formed,
 * incomplete, non-XML, oversized and hostile (entity expansion) documents.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <time.h>

#include "s3.h"

static int parse_error_str(const char *s, s3_xml_error *e) {
        return s3_xml_parse_error(s, strlen(s), e);
}

static int parse_list_str(const char *s, s3_list_page *p) {
        return s3_xml_parse_list(s, strlen(s), p);
}

static void test_error_complete(void **state) {
        static const char doc[] =
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>"
                "<Key>a/b.json</Key><RequestId>4442587FB7D0A2F9</RequestId>"
                "<Resource>/bucket/a/b.json</Resource></Error>";
        s3_xml_error e = {};

        assert_int_equal(parse_error_str(doc, &e), 0);
        assert_string_equal(e.code, "NoSuchKey");
        assert_string_equal(e.message, "The specified key does not exist.");
        assert_string_equal(e.request_id, "4442587FB7D0A2F9");
        assert_string_equal(e.resource, "/bucket/a/b.json");
        s3_xml_error_done(&e);
        assert_null(e.code);
}

static void test_error_escapes_and_not_nul_terminated(void **state) {
        /* Predefined entities are text, not DTD entities: they decode. The
         * buffer is cut before its NUL to prove @len is honoured. */
        static const char doc[] = "<Error><Code>AccessDenied</Code>"
                                  "<Message>a &lt;b&gt; &amp; c</Message></Error>GARBAGE";
        s3_xml_error e = {};

        assert_int_equal(s3_xml_parse_error(doc, strlen(doc) - strlen("GARBAGE"), &e), 0);
        assert_string_equal(e.code, "AccessDenied");
        assert_string_equal(e.message, "a <b> & c");
        s3_xml_error_done(&e);
        /* With the trailing garbage it is not well-formed. */
        assert_int_equal(s3_xml_parse_error(doc, strlen(doc), &e), -EBADMSG);
}

static void test_error_missing_fields(void **state) {
        s3_xml_error e = {};

        /* Code alone is enough. */
        assert_int_equal(parse_error_str("<Error><Code>SlowDown</Code></Error>", &e), 0);
        assert_string_equal(e.code, "SlowDown");
        assert_null(e.message);
        assert_null(e.request_id);
        s3_xml_error_done(&e);

        /* No Code, or an empty one: not an S3 error we can classify. */
        assert_int_equal(parse_error_str("<Error><Message>x</Message></Error>", &e), -EBADMSG);
        assert_int_equal(parse_error_str("<Error><Code></Code></Error>", &e), -EBADMSG);
        assert_int_equal(parse_error_str("<Error/>", &e), -EBADMSG);
        /* Another root element. */
        assert_int_equal(parse_error_str("<ListBucketResult><Code>X</Code></ListBucketResult>", &e),
                         -EBADMSG);
        assert_null(e.code);
}

static void test_error_not_xml(void **state) {
        s3_xml_error e = {};

        assert_int_equal(parse_error_str("", &e), -EBADMSG);
        assert_int_equal(s3_xml_parse_error(NULL, 0, &e), -EBADMSG);
        assert_int_equal(parse_error_str("<html><body><h1>502 Bad Gateway</h1></body></html>", &e),
                         -EBADMSG);
        assert_int_equal(parse_error_str("<!DOCTYPE html><html><body>x</body></html>", &e),
                         -EBADMSG);
        assert_int_equal(parse_error_str("{\"error\":\"nope\"}", &e), -EBADMSG);
        assert_int_equal(parse_error_str("<Error><Code>X</Code>", &e), -EBADMSG);
        assert_int_equal(s3_xml_parse_error("\0\0\0\0", 4, &e), -EBADMSG);
        assert_null(e.code);
}

static void test_error_huge(void **state) {
        size_t n = S3_XML_MAX + 1;
        char *big = malloc(n);
        s3_xml_error e = {};
        static const char head[] = "<Error><Code>X</Code><Message>";

        assert_non_null(big);
        memset(big, 'a', n);
        memcpy(big, head, strlen(head));
        assert_int_equal(s3_xml_parse_error(big, n, &e), -EFBIG);
        free(big);

        /* Just under the limit, well-formed, with a long message: parses. */
        n = 4 * 1024 * 1024;
        big = malloc(n + 64);
        assert_non_null(big);
        strcpy(big, head);
        memset(big + strlen(head), 'm', n);
        strcpy(big + strlen(head) + n, "</Message></Error>");
        assert_int_equal(s3_xml_parse_error(big, strlen(big), &e), 0);
        assert_string_equal(e.code, "X");
        assert_int_equal(strlen(e.message), n);
        s3_xml_error_done(&e);
        free(big);
}

static void test_error_entities_not_expanded(void **state) {
        /* Billion laughs: refused before parsing, and fast. */
        static const char lol[] =
                "<?xml version=\"1.0\"?>\n"
                "<!DOCTYPE Error [\n"
                " <!ENTITY lol \"lol\">\n"
                " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
                " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
                " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
                " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
                " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
                " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
                " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
                " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
                " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
                "]>\n"
                "<Error><Code>&lol9;</Code><Message>&lol9;</Message></Error>";
        /* An external entity (XXE) pointing at a local file. */
        static const char xxe[] = "<?xml version=\"1.0\"?>\n"
                                  "<!DOCTYPE Error [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n"
                                  "<Error><Code>&x;</Code></Error>";
        /* An undeclared entity reference: not well-formed, no expansion. */
        static const char undeclared[] = "<Error><Code>&lol9;</Code></Error>";
        s3_xml_error e = {};
        s3_list_page p = {};
        struct timespec a, b;

        clock_gettime(CLOCK_MONOTONIC, &a);
        assert_int_equal(parse_error_str(lol, &e), -EBADMSG);
        assert_int_equal(parse_list_str(lol, &p), -EBADMSG);
        assert_int_equal(parse_error_str(xxe, &e), -EBADMSG);
        assert_int_equal(parse_error_str(undeclared, &e), -EBADMSG);
        clock_gettime(CLOCK_MONOTONIC, &b);
        assert_true(b.tv_sec - a.tv_sec < 2);
        assert_null(e.code);
}

static void test_list_page(void **state) {
        static const char doc[] =
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                "<Name>bucket</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"
                "<IsTruncated>true</IsTruncated>"
                "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</"
                "NextContinuationToken>"
                "<Contents><Key>p/a.json</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
                "<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
                "<Contents><Key>p/b &amp; c.json</Key><Size>0</Size></Contents>"
                "<CommonPrefixes><Prefix>p/sub/</Prefix></CommonPrefixes>"
                "</ListBucketResult>";
        s3_list_page p = {};

        assert_int_equal(parse_list_str(doc, &p), 0);
        assert_int_equal(p.n_entries, 2);
        assert_true(p.is_truncated);
        assert_string_equal(p.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
        assert_string_equal(p.entries[0].key, "p/a.json");
        assert_int_equal(p.entries[0].size, 434234);
        assert_string_equal(p.entries[0].etag, "\"fba9dede5f27731c9771645a39863328\"");
        assert_string_equal(p.entries[0].last_modified, "2009-10-12T17:50:30.000Z");
        assert_string_equal(p.entries[1].key, "p/b & c.json");
        assert_int_equal(p.entries[1].size, 0);
        assert_null(p.entries[1].etag);
        s3_list_page_done(&p);
        assert_null(p.entries);
}

static void test_list_last_and_empty(void **state) {
        s3_list_page p = {};

        assert_int_equal(parse_list_str("<ListBucketResult><IsTruncated>false</IsTruncated>"
                                        "<Contents><Key>k</Key><Size>5</Size></Contents>"
                                        "</ListBucketResult>",
                                        &p),
                         0);
        assert_false(p.is_truncated);
        assert_null(p.next_token);
        assert_int_equal(p.n_entries, 1);
        assert_int_equal(p.entries[0].size, 5);
        s3_list_page_done(&p);

        /* An empty bucket; a stray token on the last page is dropped. */
        assert_int_equal(parse_list_str("<ListBucketResult><KeyCount>0</KeyCount>"
                                        "<NextContinuationToken>zz</NextContinuationToken>"
                                        "</ListBucketResult>",
                                        &p),
                         0);
        assert_int_equal(p.n_entries, 0);
        assert_false(p.is_truncated);
        assert_null(p.next_token);
        s3_list_page_done(&p);
}

static void test_list_many(void **state) {
        /* 1000 entries: the array grows correctly. */
        size_t cap = 1000 * 80 + 200, n = 0;
        char *doc = malloc(cap);
        s3_list_page p = {};

        assert_non_null(doc);
        n += (size_t) sprintf(doc + n, "<ListBucketResult><IsTruncated>false</IsTruncated>");
        for (unsigned i = 0; i < 1000; i++)
                n += (size_t) sprintf(doc + n,
                                      "<Contents><Key>k%04u</Key><Size>%u</Size></Contents>", i, i);
        n += (size_t) sprintf(doc + n, "</ListBucketResult>");
        assert_true(n < cap);
        assert_int_equal(s3_xml_parse_list(doc, n, &p), 0);
        assert_int_equal(p.n_entries, 1000);
        assert_string_equal(p.entries[999].key, "k0999");
        assert_int_equal(p.entries[999].size, 999);
        s3_list_page_done(&p);
        free(doc);
}

static void test_list_malformed(void **state) {
        static const char *const bad[] = {
                "",
                "not xml",
                "<Error><Code>AccessDenied</Code></Error>",
                /* Truncated without a token: a client would loop or stop silently. */
                "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
                "<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
                "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
                "<ListBucketResult><Contents><Key></Key></Contents></ListBucketResult>",
                "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents>"
                "</ListBucketResult>",
                "<ListBucketResult><Contents><Key>k</Key><Size>12x</Size></Contents>"
                "</ListBucketResult>",
                "<ListBucketResult><Contents><Key>k</Key><Size>99999999999999999999999</Size>"
                "</Contents></ListBucketResult>",
                "<ListBucketResult><Contents><Key>k</Key></Contents>",
        };
        s3_list_page p = {};

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = parse_list_str(bad[i], &p);

                if (r != -EBADMSG)
                        fail_msg("case %zu ('%s'): got %d, want -EBADMSG", i, bad[i], r);
                assert_null(p.entries);
        }
}

/* Only an element's own text at its depth counts; names match without their
 * namespace prefix; CDATA is text; a repeated element keeps the last; a
 * Key outside <Contents> is not an entry. */
static void test_structure(void **state) {
        s3_xml_error e = {};
        s3_list_page p = {};

        assert_int_equal(
                parse_error_str("<e:Error xmlns:e=\"urn:x\"><e:Code>A<b>nested</b>B</e:Code>"
                                "<Message><![CDATA[<raw> & text]]></Message>"
                                "<Message>second</Message><x><Code>deep</Code></x>"
                                "</e:Error>",
                                &e),
                0);
        assert_string_equal(e.code, "AB");
        assert_string_equal(e.message, "second");
        assert_null(e.request_id);
        s3_xml_error_done(&e);
        assert_int_equal(parse_error_str("<Error><Message><![CDATA[x]]></Message></Error>", &e),
                         -EBADMSG);
        assert_null(e.code);

        assert_int_equal(parse_list_str("<ListBucketResult><Key>stray</Key>"
                                        "<Contents><Key>a</Key><Key>b</Key>"
                                        "<Owner><ID>o</ID><Key>not-this</Key></Owner>"
                                        "<Size>0</Size></Contents>"
                                        "<Contents><Key>c&#x2F;d</Key></Contents>"
                                        "</ListBucketResult>",
                                        &p),
                         0);
        assert_int_equal(p.n_entries, 2);
        assert_string_equal(p.entries[0].key, "b");
        assert_int_equal(p.entries[0].size, 0);
        assert_string_equal(p.entries[1].key, "c/d");
        assert_false(p.is_truncated);
        s3_list_page_done(&p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_error_complete),
                cmocka_unit_test(test_error_escapes_and_not_nul_terminated),
                cmocka_unit_test(test_error_missing_fields),
                cmocka_unit_test(test_error_not_xml),
                cmocka_unit_test(test_error_huge),
                cmocka_unit_test(test_error_entities_not_expanded),
                cmocka_unit_test(test_list_page),
                cmocka_unit_test(test_list_last_and_empty),
                cmocka_unit_test(test_list_many),
                cmocka_unit_test(test_list_malformed),
                cmocka_unit_test(test_structure),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
