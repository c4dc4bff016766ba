/* SPDX-License-Identifier: Apache-2.0 */

/*
 * Client configuration: kubeconfig files (parsed with yamlx so every error
 * can name FILE:LINE:COL) and the in-cluster service-account mount.
 */

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "jsonx.h"
#include "kube-internal.h"
#include "yamlx.h"

#define KUBECONFIG_MAX_SIZE (4u * 1024u * 1024u)
#define TOKEN_MAX_SIZE      (64u * 1024u)

kube_config *kube_config_free(kube_config *c) {
        if (!c)
                return NULL;
        free(c->server);
        free(c->ca_file);
        free(c->ca_pem);
        free(c->cert_file);
        free(c->key_file);
        free(c->cert_pem);
        /* Key material: clear before freeing. */
        if (c->key_pem)
                explicit_bzero(c->key_pem, strlen(c->key_pem));
        free(c->key_pem);
        if (c->token)
                explicit_bzero(c->token, strlen(c->token));
        free(c->token);
        free(c->token_file);
        free(c->namespace);
        free(c->context);
        free(c->source);
        free(c);
        return NULL;
}

int kube_read_file(const char *path, size_t max_size, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;
        struct stat st;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (S_ISREG(st.st_mode) && (uint64_t) st.st_size > max_size)
                return -EFBIG;

        for (;;) {
                ssize_t n;

                if (len + 1 >= cap) {
                        size_t ncap = cap ? cap * 2 : 4096;
                        char *p;

                        if (ncap > max_size + 2)
                                ncap = max_size + 2;
                        if (ncap <= len + 1)
                                return -EFBIG;
                        p = realloc(buf, ncap);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        cap = ncap;
                }
                n = read(fd, buf + len, cap - len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len > max_size)
                        return -EFBIG;
        }
        if (!buf) {
                buf = strdup("");
                if (!buf)
                        return -ENOMEM;
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        if (ret_len)
                *ret_len = len;
        return 0;
}

/* Reads a token file: trimmed of surrounding whitespace, non-empty, no
 * control characters (it goes into an HTTP header). */
static int read_token(const char *path, char **ret, err_info *ret_err, const char *what) {
        _cleanup_free_ char *buf = NULL;
        size_t len;
        char *s, *e;
        int r;

        r = kube_read_file(path, TOKEN_MAX_SIZE, &buf, &len);
        if (r < 0)
                return err_info_set(ret_err, r, "%s: cannot read token file '%s': %s", what, path,
                                    strerror(-r));
        s = buf;
        while (*s && strchr(" \t\r\n", *s))
                s++;
        e = s + strlen(s);
        while (e > s && strchr(" \t\r\n", e[-1]))
                e--;
        *e = '\0';
        if (!*s)
                return err_info_set(ret_err, -EINVAL, "%s: token file '%s' is empty", what, path);
        for (char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return err_info_set(ret_err, -EINVAL,
                                            "%s: token file '%s' contains control characters", what,
                                            path);
        if (s != buf)
                memmove(buf, s, strlen(s) + 1);
        *ret = TAKE_PTR(buf);
        return 0;
}

/* Strict base64 (RFC 4648, standard alphabet, padding optional at the very
 * end); whitespace anywhere is ignored, as in multi-line YAML scalars. */
static int base64_decode(const char *in, char **ret, size_t *ret_len) {
        _cleanup_free_ char *out = NULL;
        size_t n = strlen(in), o = 0;
        unsigned acc = 0, bits = 0, pad = 0, nchars = 0;

        out = malloc(n / 4 * 3 + 4);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char) in[i];
                int v;

                if (strchr(" \t\r\n", ch))
                        continue;
                if (ch == '=') {
                        pad++;
                        continue;
                }
                if (pad > 0)
                        return -EINVAL; /* data after padding */
                if (ch >= 'A' && ch <= 'Z')
                        v = ch - 'A';
                else if (ch >= 'a' && ch <= 'z')
                        v = ch - 'a' + 26;
                else if (ch >= '0' && ch <= '9')
                        v = ch - '0' + 52;
                else if (ch == '+')
                        v = 62;
                else if (ch == '/')
                        v = 63;
                else
                        return -EINVAL;
                nchars++;
                acc = (acc << 6) | (unsigned) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (char) ((acc >> bits) & 0xff);
                }
        }
        if (nchars % 4 == 1 || pad > 2 || (pad > 0 && (nchars + pad) % 4 != 0))
                return -EINVAL;
        /* Leftover bits must be zero, or the encoding was not canonical. */
        if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
                return -EINVAL;
        out[o] = '\0';
        *ret = TAKE_PTR(out);
        *ret_len = o;
        return 0;
}

typedef struct kc_parser {
        const char *filename;
        char *dir; /* directory of the file, for relative paths; NULL: cwd */
        err_info *err;
} kc_parser;

/* Looks up @key in mapping @o. Absent or null: 0 and *ret = NULL. A value of
 * another type than @type: -EINVAL naming @what. */
static int kc_get(kc_parser *p, json_object *o, const char *key, json_type type, const char *what,
                  json_object **ret) {
        json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v) || !v) {
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, type))
                return yamlx_error(p->err, -EINVAL, p->filename, v, "%s%s%s: must be a %s", what,
                                   *what ? "." : "", key,
                                   type == json_type_string    ? "string"
                                   : type == json_type_boolean ? "boolean (true or false)"
                                   : type == json_type_array   ? "list"
                                                               : "mapping");
        *ret = v;
        return 0;
}

static int kc_get_string(kc_parser *p, json_object *o, const char *key, const char *what,
                         const char **ret) {
        json_object *v = NULL;
        int r;

        r = kc_get(p, o, key, json_type_string, what, &v);
        if (r < 0)
                return r;
        *ret = v && json_object_get_string_len(v) > 0 ? json_object_get_string(v) : NULL;
        return 0;
}

/* Finds the entry of list @list_key whose "name" is @name and returns its
 * @inner_key mapping (e.g. contexts[name=X].context). */
static int kc_find_named(kc_parser *p, json_object *root, json_object *ref_node,
                         const char *list_key, const char *inner_key, const char *name,
                         json_object **ret) {
        json_object *list, *inner;
        size_t n;
        int r;

        r = kc_get(p, root, list_key, json_type_array, "", &list);
        if (r < 0)
                return r;
        n = list ? json_object_array_length(list) : 0;
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(list, i), *nm;

                if (!json_object_is_type(e, json_type_object))
                        return yamlx_error(p->err, -EINVAL, p->filename, e,
                                           "%s[%zu]: must be a mapping", list_key, i);
                if (!json_object_object_get_ex(e, "name", &nm) ||
                    !json_object_is_type(nm, json_type_string))
                        return yamlx_error(p->err, -EINVAL, p->filename, e,
                                           "%s[%zu].name: missing or not a string", list_key, i);
                if (!streq(json_object_get_string(nm), name))
                        continue;
                if (!json_object_object_get_ex(e, inner_key, &inner) || !inner)
                        return yamlx_error(p->err, -EINVAL, p->filename, e,
                                           "%s[\"%s\"].%s: missing", list_key, name, inner_key);
                if (!json_object_is_type(inner, json_type_object))
                        return yamlx_error(p->err, -EINVAL, p->filename, inner,
                                           "%s[\"%s\"].%s: must be a mapping", list_key, name,
                                           inner_key);
                *ret = inner;
                return 0;
        }
        /* Point at whatever named the missing entry. */
        return yamlx_error(p->err, -EINVAL, p->filename, ref_node ?: list,
                           "%s: no entry named \"%s\"", list_key, name);
}

static int kc_path(kc_parser *p, const char *path, char **ret) {
        char *s;

        if (path[0] == '/' || !p->dir)
                s = strdup(path);
        else if (asprintf(&s, "%s/%s", p->dir, path) < 0)
                s = NULL;
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* certificate-authority-data and friends: base64 of a PEM document. */
static int kc_pem_data(kc_parser *p, json_object *o, const char *key, const char *what,
                       char **ret) {
        _cleanup_free_ char *pem = NULL;
        json_object *v = NULL;
        size_t len;
        int r;

        r = kc_get(p, o, key, json_type_string, what, &v);
        if (r < 0)
                return r;
        if (!v || json_object_get_string_len(v) == 0) {
                *ret = NULL;
                return 0;
        }
        r = base64_decode(json_object_get_string(v), &pem, &len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return yamlx_error(p->err, -EINVAL, p->filename, v, "%s.%s: invalid base64", what,
                                   key);
        if (memchr(pem, '\0', len) || !strstr(pem, "-----BEGIN "))
                return yamlx_error(p->err, -EINVAL, p->filename, v,
                                   "%s.%s: does not decode to a PEM document", what, key);
        *ret = TAKE_PTR(pem);
        return 0;
}

static int kc_file(kc_parser *p, json_object *o, const char *key, const char *what, char **ret) {
        const char *s;
        int r;

        r = kc_get_string(p, o, key, what, &s);
        if (r < 0)
                return r;
        if (!s) {
                *ret = NULL;
                return 0;
        }
        return kc_path(p, s, ret);
}

static int kc_parse_cluster(kc_parser *p, json_object *cl, const char *name, kube_config *cfg) {
        char what[300];
        const char *server;
        json_object *v;
        size_t n;
        int r;

        snprintf(what, sizeof(what), "clusters[\"%s\"].cluster", name);

        r = kc_get_string(p, cl, "server", what, &server);
        if (r < 0)
                return r;
        if (!server)
                return yamlx_error(p->err, -EINVAL, p->filename, cl, "%s.server: missing", what);
        if (!startswith(server, "https://") && !startswith(server, "http://"))
                return yamlx_error(p->err, -EINVAL, p->filename,
                                   json_object_object_get(cl, "server"),
                                   "%s.server: \"%s\" is not an http(s) URL", what, server);
        for (const char *c = server; *c; c++)
                if ((unsigned char) *c <= 0x20 || *c == 0x7f)
                        return yamlx_error(
                                p->err, -EINVAL, p->filename, json_object_object_get(cl, "server"),
                                "%s.server: contains whitespace or control characters", what);
        cfg->server = strdup(server);
        if (!cfg->server)
                return -ENOMEM;
        n = strlen(cfg->server);
        while (n > 0 && cfg->server[n - 1] == '/')
                cfg->server[--n] = '\0';

        r = kc_file(p, cl, "certificate-authority", what, &cfg->ca_file);
        if (r < 0)
                return r;
        r = kc_pem_data(p, cl, "certificate-authority-data", what, &cfg->ca_pem);
        if (r < 0)
                return r;
        r = kc_get(p, cl, "insecure-skip-tls-verify", json_type_boolean, what, &v);
        if (r < 0)
                return r;
        cfg->insecure_skip_tls_verify = v && json_object_get_boolean(v);
        if (cfg->insecure_skip_tls_verify && (cfg->ca_file || cfg->ca_pem))
                return yamlx_error(p->err, -EINVAL, p->filename, v,
                                   "%s: insecure-skip-tls-verify together with a "
                                   "certificate-authority is not allowed",
                                   what);
        return 0;
}

static int kc_parse_user(kc_parser *p, json_object *u, const char *name, kube_config *cfg) {
        char what[300];
        const char *token, *token_file;
        json_object *v;
        int r;

        snprintf(what, sizeof(what), "users[\"%s\"].user", name);

        r = kc_file(p, u, "client-certificate", what, &cfg->cert_file);
        if (r < 0)
                return r;
        r = kc_pem_data(p, u, "client-certificate-data", what, &cfg->cert_pem);
        if (r < 0)
                return r;
        r = kc_file(p, u, "client-key", what, &cfg->key_file);
        if (r < 0)
                return r;
        r = kc_pem_data(p, u, "client-key-data", what, &cfg->key_pem);
        if (r < 0)
                return r;
        if (!!(cfg->cert_file || cfg->cert_pem) != !!(cfg->key_file || cfg->key_pem))
                return yamlx_error(p->err, -EINVAL, p->filename, u,
                                   "%s: a client certificate needs a client key and vice versa",
                                   what);

        r = kc_get_string(p, u, "token", what, &token);
        if (r < 0)
                return r;
        r = kc_get_string(p, u, "tokenFile", what, &token_file);
        if (r < 0)
                return r;
        if (token) {
                /* client-go: an inline token wins over tokenFile. */
                for (const char *c = token; *c; c++)
                        if ((unsigned char) *c < 0x20 || *c == 0x7f)
                                return yamlx_error(p->err, -EINVAL, p->filename,
                                                   json_object_object_get(u, "token"),
                                                   "%s.token: contains control characters", what);
                cfg->token = strdup(token);
                if (!cfg->token)
                        return -ENOMEM;
        } else if (token_file) {
                err_info e;

                r = kc_path(p, token_file, &cfg->token_file);
                if (r < 0)
                        return r;
                err_info_clear(&e);
                r = read_token(cfg->token_file, &cfg->token, &e, "tokenFile");
                if (r < 0)
                        return yamlx_error(p->err, r, p->filename,
                                           json_object_object_get(u, "tokenFile"), "%s.%s", what,
                                           e.message);
        }

        if (!cfg->token && !cfg->cert_file && !cfg->cert_pem) {
                static const char *const unsupported[] = {"exec", "auth-provider", "username"};

                for (size_t i = 0; i < ELEMENTSOF(unsupported); i++)
                        if (json_object_object_get_ex(u, unsupported[i], &v) && v)
                                return yamlx_error(p->err, -EINVAL, p->filename, v,
                                                   "%s.%s: this credential type is not "
                                                   "supported (use a token, tokenFile or "
                                                   "client certificate)",
                                                   what, unsupported[i]);
        }
        return 0;
}

int kube_config_parse_kubeconfig(const char *data, size_t len, const char *filename,
                                 const char *context, kube_config **ret, err_info *ret_err) {
        _cleanup_(kube_config_freep) kube_config *cfg = NULL;
        _cleanup_json_ json_object *root = NULL;
        _cleanup_free_ char *dir = NULL;
        json_object *ctx, *ctx_ref, *cl, *u;
        const char *ctx_name, *cluster_name, *user_name, *ns;
        kc_parser p;
        int r;

        if (!filename)
                filename = "kubeconfig";
        err_info_clear(ret_err);

        r = yamlx_parse(data, len, filename, &root, ret_err);
        if (r < 0)
                return r;
        if (!root || !json_object_is_type(root, json_type_object))
                return err_info_set(ret_err, -EINVAL, "%s: not a kubeconfig (expected a mapping)",
                                    filename);

        if (strchr(filename, '/')) {
                dir = strdup(filename);
                if (!dir)
                        return -ENOMEM;
                *strrchr(dir, '/') = '\0';
                if (!*dir) {
                        free(dir);
                        dir = strdup("/");
                        if (!dir)
                                return -ENOMEM;
                }
        }
        p = (kc_parser){.filename = filename, .dir = dir, .err = ret_err};

        cfg = calloc(1, sizeof(*cfg));
        if (!cfg)
                return -ENOMEM;
        cfg->source = strdup(filename);
        if (!cfg->source)
                return -ENOMEM;

        ctx_ref = root;
        if (context) {
                ctx_name = context;
        } else {
                r = kc_get_string(&p, root, "current-context", "", &ctx_name);
                if (r < 0)
                        return r;
                if (!ctx_name)
                        return yamlx_error(ret_err, -EINVAL, p.filename, root,
                                           "current-context: not set and no context was given");
                ctx_ref = json_object_object_get(root, "current-context");
        }
        r = kc_find_named(&p, root, ctx_ref, "contexts", "context", ctx_name, &ctx);
        if (r < 0)
                return r;
        cfg->context = strdup(ctx_name);
        if (!cfg->context)
                return -ENOMEM;

        r = kc_get_string(&p, ctx, "cluster", "context", &cluster_name);
        if (r < 0)
                return r;
        if (!cluster_name)
                return yamlx_error(ret_err, -EINVAL, p.filename, ctx,
                                   "contexts[\"%s\"].context.cluster: missing", ctx_name);
        r = kc_find_named(&p, root, json_object_object_get(ctx, "cluster"), "clusters", "cluster",
                          cluster_name, &cl);
        if (r < 0)
                return r;
        r = kc_parse_cluster(&p, cl, cluster_name, cfg);
        if (r < 0)
                return r;

        r = kc_get_string(&p, ctx, "user", "context", &user_name);
        if (r < 0)
                return r;
        if (user_name) {
                r = kc_find_named(&p, root, json_object_object_get(ctx, "user"), "users", "user",
                                  user_name, &u);
                if (r < 0)
                        return r;
                r = kc_parse_user(&p, u, user_name, cfg);
                if (r < 0)
                        return r;
        }

        r = kc_get_string(&p, ctx, "namespace", "context", &ns);
        if (r < 0)
                return r;
        cfg->namespace = strdup(ns ?: "default");
        if (!cfg->namespace)
                return -ENOMEM;

        *ret = TAKE_PTR(cfg);
        return 0;
}

int kube_config_load_kubeconfig(const char *path, const char *context, kube_config **ret,
                                err_info *ret_err) {
        _cleanup_free_ char *data = NULL;
        size_t len;
        int r;

        err_info_clear(ret_err);
        r = kube_read_file(path, KUBECONFIG_MAX_SIZE, &data, &len);
        if (r < 0)
                return err_info_set(ret_err, r, "%s: cannot read kubeconfig: %s", path,
                                    strerror(-r));
        return kube_config_parse_kubeconfig(data, len, path, context, ret, ret_err);
}

int kube_config_load_incluster(const char *sa_dir, kube_config **ret, err_info *ret_err) {
        _cleanup_(kube_config_freep) kube_config *cfg = NULL;
        _cleanup_free_ char *ns_path = NULL, *ns = NULL;
        const char *host, *port;
        int r;

        err_info_clear(ret_err);
        if (!sa_dir)
                sa_dir = KUBE_SA_DIR;
        host = getenv("KUBERNETES_SERVICE_HOST");
        port = getenv("KUBERNETES_SERVICE_PORT");
        if (isempty(host) || isempty(port))
                return err_info_set(ret_err, -ENOENT,
                                    "not in a cluster: KUBERNETES_SERVICE_HOST and "
                                    "KUBERNETES_SERVICE_PORT must be set");
        for (const char *c = port; *c; c++)
                if (*c < '0' || *c > '9')
                        return err_info_set(ret_err, -EINVAL,
                                            "KUBERNETES_SERVICE_PORT: \"%s\" is not a port", port);
        for (const char *c = host; *c; c++)
                if ((unsigned char) *c <= 0x20 || strchr("/?#@", *c))
                        return err_info_set(ret_err, -EINVAL,
                                            "KUBERNETES_SERVICE_HOST: \"%s\" is not a host", host);

        cfg = calloc(1, sizeof(*cfg));
        if (!cfg)
                return -ENOMEM;
        /* An IPv6 address needs brackets in a URL. */
        if (asprintf(&cfg->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
                     port) < 0) {
                cfg->server = NULL;
                return -ENOMEM;
        }
        if (asprintf(&cfg->token_file, "%s/token", sa_dir) < 0) {
                cfg->token_file = NULL;
                return -ENOMEM;
        }
        if (asprintf(&cfg->ca_file, "%s/ca.crt", sa_dir) < 0) {
                cfg->ca_file = NULL;
                return -ENOMEM;
        }
        if (asprintf(&cfg->source, "%s", sa_dir) < 0) {
                cfg->source = NULL;
                return -ENOMEM;
        }

        r = read_token(cfg->token_file, &cfg->token, ret_err, "in-cluster config");
        if (r < 0)
                return r;
        if (access(cfg->ca_file, R_OK) < 0)
                return err_info_set(ret_err, -errno, "in-cluster config: cannot read CA '%s': %m",
                                    cfg->ca_file);

        if (asprintf(&ns_path, "%s/namespace", sa_dir) < 0) {
                ns_path = NULL;
                return -ENOMEM;
        }
        if (read_token(ns_path, &ns, NULL, "namespace") >= 0)
                cfg->namespace = TAKE_PTR(ns);
        else {
                cfg->namespace = strdup("default");
                if (!cfg->namespace)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(cfg);
        return 0;
}

int kube_config_load_default(const char *context, kube_config **ret, err_info *ret_err) {
        _cleanup_free_ char *path = NULL;
        const char *env, *home;

        env = getenv("KUBECONFIG");
        if (!isempty(env)) {
                /* The first non-empty entry of the list; merging is not
                 * supported. */
                const char *s = env;

                while (*s == ':')
                        s++;
                path = strndup(s, strcspn(s, ":"));
        } else if (!isempty(getenv("KUBERNETES_SERVICE_HOST")))
                return kube_config_load_incluster(NULL, ret, ret_err);
        else {
                home = getenv("HOME");
                if (isempty(home))
                        return err_info_set(ret_err, -ENOENT,
                                            "no configuration: not in a cluster, $KUBECONFIG and "
                                            "$HOME unset");
                if (asprintf(&path, "%s/.kube/config", home) < 0)
                        path = NULL;
        }
        if (!path)
                return -ENOMEM;
        if (isempty(path))
                return err_info_set(ret_err, -ENOENT, "$KUBECONFIG names no file");
        return kube_config_load_kubeconfig(path, context, ret, ret_err);
}
