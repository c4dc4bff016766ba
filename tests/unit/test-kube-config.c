/* SPDX-License-Identifier: Apache-2.0 */

/* Kubeconfig and in-cluster configuration: good configs give the right
 * fields, bad ones a clear error naming file, field and line:col. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "kube.h"

/* base64 of "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" */
#define PEM_B64  "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
#define PEM_TEXT "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
/* base64 of "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n" */
#define KEY_B64 "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUUKLS0tLS1FTkQgUFJJVkFURSBLRVktLS0tLQo="

static char tmpdir[64];

static int setup_tmpdir(void **state) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-kube-config.XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        return 0;
}

static int teardown_tmpdir(void **state) {
        char cmd[PATH_MAX + 16];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        assert_int_equal(system(cmd), 0);
        return 0;
}

static void write_file(const char *name, const char *content) {
        char path[PATH_MAX];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fputs(content, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static kube_config *parse_ok(const char *yaml, const char *filename, const char *context) {
        kube_config *cfg = NULL;
        err_info e;
        int r;

        r = kube_config_parse_kubeconfig(yaml, strlen(yaml), filename, context, &cfg, &e);
        if (r < 0)
                fail_msg("parse failed (%d): %s\n---\n%s", r, e.message, yaml);
        assert_non_null(cfg);
        return cfg;
}

/* Asserts the error code and that the message contains every string given. */
static void parse_fails(const char *yaml, int want_r, ...) {
        kube_config *cfg = (kube_config *) 0x1;
        const char *want;
        va_list ap;
        err_info e;
        int r;

        r = kube_config_parse_kubeconfig(yaml, strlen(yaml), "/etc/kc.yaml", NULL, &cfg, &e);
        if (r != want_r)
                fail_msg("expected %d, got %d (%s) for:\n%s", want_r, r, e.message, yaml);
        assert_ptr_equal(cfg, (kube_config *) 0x1); /* untouched on failure */
        va_start(ap, want_r);
        while ((want = va_arg(ap, const char *)))
                if (!strstr(e.message, want))
                        fail_msg("message '%s' lacks '%s'", e.message, want);
        va_end(ap);
}

static const char good_data[] = "apiVersion: v1\n"
                                "kind: Config\n"
                                "current-context: dev\n"
                                "clusters:\n"
                                "- name: other\n"
                                "  cluster: {server: 'https://10.0.0.1'}\n"
                                "- name: dev\n"
                                "  cluster:\n"
                                "    server: https://127.0.0.1:6443/\n"
                                "    certificate-authority-data: " PEM_B64 "\n"
                                "contexts:\n"
                                "- name: dev\n"
                                "  context: {cluster: dev, user: admin, namespace: team-a}\n"
                                "- name: other\n"
                                "  context: {cluster: other, user: tok}\n"
                                "users:\n"
                                "- name: admin\n"
                                "  user:\n"
                                "    client-certificate-data: " PEM_B64 "\n"
                                "    client-key-data: " KEY_B64 "\n"
                                "- name: tok\n"
                                "  user:\n"
                                "    token: abc.def\n";

static void test_cert_data(void **state) {
        _cleanup_(kube_config_freep) kube_config *cfg = parse_ok(good_data, "/x/kc", NULL);

        assert_string_equal(cfg->server, "https://127.0.0.1:6443"); /* trailing "/" dropped */
        assert_string_equal(cfg->ca_pem, PEM_TEXT);
        assert_string_equal(cfg->cert_pem, PEM_TEXT);
        assert_string_equal(cfg->key_pem,
                            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
        assert_null(cfg->ca_file);
        assert_null(cfg->token);
        assert_false(cfg->insecure_skip_tls_verify);
        assert_string_equal(cfg->namespace, "team-a");
        assert_string_equal(cfg->context, "dev");
        assert_string_equal(cfg->source, "/x/kc");
}

static void test_context_override(void **state) {
        _cleanup_(kube_config_freep) kube_config *cfg = parse_ok(good_data, "kc", "other");

        assert_string_equal(cfg->server, "https://10.0.0.1");
        assert_string_equal(cfg->token, "abc.def");
        assert_null(cfg->cert_pem);
        assert_null(cfg->ca_pem);
        assert_string_equal(cfg->namespace, "default");
        assert_string_equal(cfg->context, "other");
}

static void test_files_relative(void **state) {
        static const char yaml[] = "current-context: c\n"
                                   "clusters:\n"
                                   "- name: k\n"
                                   "  cluster:\n"
                                   "    server: https://k:443\n"
                                   "    certificate-authority: pki/ca.crt\n"
                                   "contexts:\n"
                                   "- {name: c, context: {cluster: k, user: u}}\n"
                                   "users:\n"
                                   "- name: u\n"
                                   "  user:\n"
                                   "    client-certificate: /abs/client.crt\n"
                                   "    client-key: client.key\n";
        _cleanup_(kube_config_freep) kube_config *cfg =
                parse_ok(yaml, "/home/me/.kube/config", NULL);

        assert_string_equal(cfg->ca_file, "/home/me/.kube/pki/ca.crt");
        assert_string_equal(cfg->cert_file, "/abs/client.crt");
        assert_string_equal(cfg->key_file, "/home/me/.kube/client.key");
        assert_null(cfg->ca_pem);
}

static void test_token_file(void **state) {
        _cleanup_(kube_config_freep) kube_config *cfg = NULL;
        char path[PATH_MAX], yaml[1024];

        write_file("tok", "  secret-token-1\n");
        snprintf(yaml, sizeof(yaml),
                 "current-context: c\n"
                 "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:1'}}]\n"
                 "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                 "users: [{name: u, user: {tokenFile: tok}}]\n");
        snprintf(path, sizeof(path), "%s/config", tmpdir);
        cfg = parse_ok(yaml, path, NULL);
        assert_string_equal(cfg->token, "secret-token-1");
        snprintf(path, sizeof(path), "%s/tok", tmpdir);
        assert_string_equal(cfg->token_file, path);
}

static void test_token_wins_over_token_file(void **state) {
        static const char yaml[] = "current-context: c\n"
                                   "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
                                   "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                                   "users: [{name: u, user: {token: inline, tokenFile: /nope}}]\n";
        _cleanup_(kube_config_freep) kube_config *cfg = parse_ok(yaml, "kc", NULL);

        assert_string_equal(cfg->token, "inline");
        assert_null(cfg->token_file);
}

static void test_insecure(void **state) {
        static const char yaml[] =
                "current-context: c\n"
                "clusters:\n"
                "- name: k\n"
                "  cluster: {server: 'https://k', insecure-skip-tls-verify: true}\n"
                "contexts: [{name: c, context: {cluster: k}}]\n";
        _cleanup_(kube_config_freep) kube_config *cfg = parse_ok(yaml, "kc", NULL);

        assert_true(cfg->insecure_skip_tls_verify);
        assert_null(cfg->token);
        assert_null(cfg->cert_pem);
}

static void test_missing_current_context(void **state) {
        parse_fails("clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
                    "contexts: [{name: c, context: {cluster: k}}]\n",
                    -EINVAL, "/etc/kc.yaml:1:1:", "current-context", "not set", NULL);
}

static void test_context_not_defined(void **state) {
        parse_fails("current-context: nope\n"
                    "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
                    "contexts: [{name: c, context: {cluster: k}}]\n",
                    -EINVAL, "/etc/kc.yaml:1:18:", "contexts", "\"nope\"", NULL);
}

static void test_missing_cluster(void **state) {
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
                    "contexts:\n"
                    "- name: c\n"
                    "  context:\n"
                    "    cluster: gone\n",
                    -EINVAL, "/etc/kc.yaml:6:14:", "clusters", "no entry named \"gone\"", NULL);
}

static void test_missing_user(void **state) {
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
                    "contexts: [{name: c, context: {cluster: k, user: ghost}}]\n"
                    "users: [{name: u, user: {token: x}}]\n",
                    -EINVAL, "users", "\"ghost\"", NULL);
}

static void test_bad_base64(void **state) {
        parse_fails("current-context: c\n"
                    "clusters:\n"
                    "- name: k\n"
                    "  cluster:\n"
                    "    server: https://k\n"
                    "    certificate-authority-data: 'not*base64!'\n"
                    "contexts: [{name: c, context: {cluster: k}}]\n",
                    -EINVAL, "/etc/kc.yaml:6:33:", "certificate-authority-data", "invalid base64",
                    NULL);
        /* Valid base64, but not a PEM document. */
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'https://k', "
                    "certificate-authority-data: aGVsbG8=}}]\n"
                    "contexts: [{name: c, context: {cluster: k}}]\n",
                    -EINVAL, "certificate-authority-data", "PEM", NULL);
        /* Truncated: a length that no encoding produces. */
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
                    "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                    "users: [{name: u, user: {client-certificate-data: " PEM_B64 ", "
                    "client-key-data: LS0tL}}]\n",
                    -EINVAL, "client-key-data", "invalid base64", NULL);
}

static void test_malformed_yaml(void **state) {
        parse_fails("current-context: c\n"
                    "clusters:\n"
                    "  - name: k\n"
                    "   cluster: [unclosed\n",
                    -EBADMSG, "/etc/kc.yaml:", NULL);
        parse_fails("a: [1, 2\n", -EBADMSG, "/etc/kc.yaml:", NULL);
        parse_fails("\"unterminated\n", -EBADMSG, "/etc/kc.yaml:", NULL);
}

static void test_malformed_yaml_line_col(void **state) {
        kube_config *cfg = NULL;
        unsigned line = 0, col = 0;
        err_info e;
        const char *p;
        int r;

        r = kube_config_parse_kubeconfig("a: b\nc: d\n  e: f\n", 17, "kc", NULL, &cfg, &e);
        assert_int_equal(r, -EBADMSG);
        p = strstr(e.message, "kc:");
        assert_non_null(p);
        assert_int_equal(sscanf(p, "kc:%u:%u:", &line, &col), 2);
        assert_true(line >= 2 && line <= 3);
        assert_true(col >= 1);
}

static void test_bad_server(void **state) {
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {insecure-skip-tls-verify: true}}]\n"
                    "contexts: [{name: c, context: {cluster: k}}]\n",
                    -EINVAL, "server: missing", NULL);
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'ftp://k'}}]\n"
                    "contexts: [{name: c, context: {cluster: k}}]\n",
                    -EINVAL, "/etc/kc.yaml:2:40:", "not an http(s) URL", NULL);
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {server: [a, b]}}]\n"
                    "contexts: [{name: c, context: {cluster: k}}]\n",
                    -EINVAL, "server: must be a string", NULL);
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'https://k', "
                    "insecure-skip-tls-verify: 'yes'}}]\n"
                    "contexts: [{name: c, context: {cluster: k}}]\n",
                    -EINVAL, "insecure-skip-tls-verify: must be a boolean", NULL);
}

static void test_bad_shapes(void **state) {
        parse_fails("", -EINVAL, "not a kubeconfig", NULL);
        parse_fails("- a\n- b\n", -EINVAL, "not a kubeconfig", NULL);
        parse_fails("current-context: c\nclusters: {k: v}\ncontexts: [{name: c, context: "
                    "{cluster: k}}]\n",
                    -EINVAL, "clusters: must be a list", NULL);
        parse_fails("current-context: c\ncontexts: [{name: c}]\n", -EINVAL, "context: missing",
                    NULL);
        parse_fails("current-context: c\ncontexts: [{context: {cluster: k}}]\n", -EINVAL,
                    "contexts[0].name", NULL);
        parse_fails("current-context: c\ncontexts: [[1]]\n", -EINVAL, "contexts[0]: must be", NULL);
}

static void test_insecure_with_ca(void **state) {
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'https://k', "
                    "insecure-skip-tls-verify: true, certificate-authority: /ca}}]\n"
                    "contexts: [{name: c, context: {cluster: k}}]\n",
                    -EINVAL, "insecure-skip-tls-verify together with", NULL);
}

static void test_cert_without_key(void **state) {
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
                    "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                    "users: [{name: u, user: {client-certificate: /c.crt}}]\n",
                    -EINVAL, "client key", NULL);
}

static void test_exec_unsupported(void **state) {
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
                    "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                    "users: [{name: u, user: {exec: {command: aws}}}]\n",
                    -EINVAL, "exec", "not supported", NULL);
}

static void test_token_file_missing(void **state) {
        parse_fails("current-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
                    "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                    "users: [{name: u, user: {tokenFile: /nonexistent/token}}]\n",
                    -ENOENT, "/etc/kc.yaml:4:", "tokenFile", "/nonexistent/token", NULL);
}

static void test_load_file(void **state) {
        _cleanup_(kube_config_freep) kube_config *cfg = NULL;
        kube_config *none = NULL;
        char path[PATH_MAX];
        err_info e;

        snprintf(path, sizeof(path), "%s/missing", tmpdir);
        assert_int_equal(kube_config_load_kubeconfig(path, NULL, &none, &e), -ENOENT);
        assert_null(none);
        assert_non_null(strstr(e.message, path));

        write_file("kc", good_data);
        snprintf(path, sizeof(path), "%s/kc", tmpdir);
        assert_int_equal(kube_config_load_kubeconfig(path, NULL, &cfg, &e), 0);
        assert_string_equal(cfg->server, "https://127.0.0.1:6443");
        assert_string_equal(cfg->source, path);
        cfg = kube_config_free(cfg);

        /* $KUBECONFIG: the first file of the list. */
        {
                char list[2 * PATH_MAX + 2];

                snprintf(list, sizeof(list), ":%s:/nonexistent", path);
                assert_int_equal(setenv("KUBECONFIG", list, 1), 0);
                assert_int_equal(kube_config_load_default(NULL, &cfg, &e), 0);
                assert_string_equal(cfg->source, path);
                assert_int_equal(unsetenv("KUBECONFIG"), 0);
        }
}

static void test_incluster(void **state) {
        _cleanup_(kube_config_freep) kube_config *cfg = NULL;
        kube_config *none = NULL;
        char sa[PATH_MAX], path[PATH_MAX + 16];
        err_info e;

        snprintf(sa, sizeof(sa), "%s/sa", tmpdir);
        assert_int_equal(mkdir(sa, 0700), 0);

        assert_int_equal(unsetenv("KUBERNETES_SERVICE_HOST"), 0);
        assert_int_equal(kube_config_load_incluster(sa, &none, &e), -ENOENT);
        assert_non_null(strstr(e.message, "KUBERNETES_SERVICE_HOST"));

        assert_int_equal(setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1), 0);
        assert_int_equal(setenv("KUBERNETES_SERVICE_PORT", "443", 1), 0);
        /* No token yet. */
        assert_int_equal(kube_config_load_incluster(sa, &none, &e), -ENOENT);
        assert_non_null(strstr(e.message, "token"));
        write_file("sa/token", "eyJhbGciOi.token\n");
        /* No CA yet. */
        assert_int_equal(kube_config_load_incluster(sa, &none, &e), -ENOENT);
        assert_non_null(strstr(e.message, "ca.crt"));
        assert_null(none);
        write_file("sa/ca.crt", PEM_TEXT);

        assert_int_equal(kube_config_load_incluster(sa, &cfg, &e), 0);
        assert_string_equal(cfg->server, "https://10.96.0.1:443");
        assert_string_equal(cfg->token, "eyJhbGciOi.token");
        snprintf(path, sizeof(path), "%s/token", sa);
        assert_string_equal(cfg->token_file, path);
        snprintf(path, sizeof(path), "%s/ca.crt", sa);
        assert_string_equal(cfg->ca_file, path);
        assert_string_equal(cfg->namespace, "default"); /* no namespace file */
        assert_false(cfg->insecure_skip_tls_verify);
        cfg = kube_config_free(cfg);

        write_file("sa/namespace", "ballast-system\n");
        assert_int_equal(setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1), 0);
        assert_int_equal(kube_config_load_incluster(sa, &cfg, &e), 0);
        assert_string_equal(cfg->server, "https://[fd00::1]:443");
        assert_string_equal(cfg->namespace, "ballast-system");
        cfg = kube_config_free(cfg);

        assert_int_equal(setenv("KUBERNETES_SERVICE_PORT", "443/evil", 1), 0);
        assert_int_equal(kube_config_load_incluster(sa, &none, &e), -EINVAL);
        assert_int_equal(unsetenv("KUBERNETES_SERVICE_HOST"), 0);
        assert_int_equal(unsetenv("KUBERNETES_SERVICE_PORT"), 0);
}

static void test_resource_path(void **state) {
        static const kube_resource widgets = {"example.com", "v1alpha1", "widgets", true};
        _cleanup_free_ char *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL, *p5 = NULL, *p6 = NULL;
        char *bad = NULL;

        assert_int_equal(kube_resource_path(&KUBE_RESOURCE_CONFIGMAPS, "ns", "cm", NULL, &p1), 0);
        assert_string_equal(p1, "/api/v1/namespaces/ns/configmaps/cm");
        assert_int_equal(kube_resource_path(&KUBE_RESOURCE_CONFIGMAPS, NULL, NULL, NULL, &p2), 0);
        assert_string_equal(p2, "/api/v1/configmaps");
        assert_int_equal(
                kube_resource_path(&KUBE_RESOURCE_LEASES, "kube-system", "lead", NULL, &p3), 0);
        assert_string_equal(p3, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/lead");
        assert_int_equal(kube_resource_path(&KUBE_RESOURCE_NODES, "ignored", "n1", "status", &p4),
                         0);
        assert_string_equal(p4, "/api/v1/nodes/n1/status");
        assert_int_equal(kube_resource_path(&widgets, "a b", "x:y", "status", &p5), 0);
        assert_string_equal(p5, "/apis/example.com/v1alpha1/namespaces/a%20b/widgets/x%3Ay/status");
        assert_int_equal(
                kube_resource_path(&KUBE_RESOURCE_SERVICEACCOUNTS, "ns", "sa", "token", &p6), 0);
        assert_string_equal(p6, "/api/v1/namespaces/ns/serviceaccounts/sa/token");

        assert_int_equal(kube_resource_path(&KUBE_RESOURCE_CONFIGMAPS, "ns", "a/b", NULL, &bad),
                         -EINVAL);
        assert_int_equal(kube_resource_path(&KUBE_RESOURCE_CONFIGMAPS, "ns", "..", NULL, &bad),
                         -EINVAL);
        assert_int_equal(kube_resource_path(&KUBE_RESOURCE_CONFIGMAPS, "..", "x", NULL, &bad),
                         -EINVAL);
        assert_int_equal(kube_resource_path(&KUBE_RESOURCE_CONFIGMAPS, NULL, "x", NULL, &bad),
                         -EINVAL);
        assert_int_equal(kube_resource_path(&KUBE_RESOURCE_CONFIGMAPS, "ns", NULL, "status", &bad),
                         -EINVAL);
        assert_int_equal(kube_resource_path(&KUBE_RESOURCE_CONFIGMAPS, "ns", "", NULL, &bad),
                         -EINVAL);
        assert_null(bad);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cert_data),
                cmocka_unit_test(test_context_override),
                cmocka_unit_test(test_files_relative),
                cmocka_unit_test(test_token_file),
                cmocka_unit_test(test_token_wins_over_token_file),
                cmocka_unit_test(test_insecure),
                cmocka_unit_test(test_missing_current_context),
                cmocka_unit_test(test_context_not_defined),
                cmocka_unit_test(test_missing_cluster),
                cmocka_unit_test(test_missing_user),
                cmocka_unit_test(test_bad_base64),
                cmocka_unit_test(test_malformed_yaml),
                cmocka_unit_test(test_malformed_yaml_line_col),
                cmocka_unit_test(test_bad_server),
                cmocka_unit_test(test_bad_shapes),
                cmocka_unit_test(test_insecure_with_ca),
                cmocka_unit_test(test_cert_without_key),
                cmocka_unit_test(test_exec_unsupported),
                cmocka_unit_test(test_token_file_missing),
                cmocka_unit_test(test_load_file),
                cmocka_unit_test(test_incluster),
                cmocka_unit_test(test_resource_path),
        };

        return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
