/* SPDX-License-Identifier: Apache-2.0 */

/*
 * The Kubernetes API client: URL building, authentication, the client-side
 * rate limiter, request/response handling and Status parsing.
 *
 * A kube_request is one logical call. It may take several HTTP exchanges: a
 * retry after a 401 (with a freshly read token) and the pages of a list.
 * Every exchange passes the token bucket; when it is empty the request waits
 * in a FIFO that one timer drains, so nothing sleeps and order is kept.
 */

#include <ctype.h>
#include <inttypes.h>
#include <string.h>
#include <strings.h>

#include "jsonx.h"
#include "kube-internal.h"
#include "loop.h"
#include "ratelimit.h"

#ifndef BALLAST_VERSION
#define BALLAST_VERSION "0.0.0"
#endif

#define KUBE_TOKEN_MAX_SIZE (64u * 1024u)

const kube_resource KUBE_RESOURCE_NAMESPACES = {"", "v1", "namespaces", false};
const kube_resource KUBE_RESOURCE_NODES = {"", "v1", "nodes", false};
const kube_resource KUBE_RESOURCE_CONFIGMAPS = {"", "v1", "configmaps", true};
const kube_resource KUBE_RESOURCE_SECRETS = {"", "v1", "secrets", true};
const kube_resource KUBE_RESOURCE_SERVICEACCOUNTS = {"", "v1", "serviceaccounts", true};
const kube_resource KUBE_RESOURCE_PODS = {"", "v1", "pods", true};
const kube_resource KUBE_RESOURCE_EVENTS = {"", "v1", "events", true};
const kube_resource KUBE_RESOURCE_LEASES = {"coordination.k8s.io", "v1", "leases", true};
const kube_resource KUBE_RESOURCE_ROLES = {"rbac.authorization.k8s.io", "v1", "roles", true};
const kube_resource KUBE_RESOURCE_ROLEBINDINGS = {"rbac.authorization.k8s.io", "v1", "rolebindings",
                                                  true};
const kube_resource KUBE_RESOURCE_CRDS = {"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                                          false};

struct kube_client {
        sd_event *event;
        http_client *http;

        char *server;
        char *ca_file, *ca_pem, *cert_file, *key_file, *cert_pem, *key_pem;
        bool insecure;
        char *token;
        char *token_file;
        uint64_t token_loaded_usec; /* 0: never read by the client */
        char *namespace;
        char *user_agent; /* "User-Agent: ..." header line */

        uint64_t timeout_usec;
        uint64_t connect_timeout_usec;
        uint64_t token_reload_usec;

        ratelimit rl;
        sd_event_source *rl_timer;
        kube_request *queue_head, *queue_tail; /* waiting for a token */
        kube_request *requests;                /* every live request */

        kube_client_stats stats;
};

struct kube_request {
        kube_client *client;
        kube_request *prev, *next; /* client->requests */
        kube_request *qnext;       /* client->queue_head */
        bool queued;
        http_request *http;

        char *method;
        char *path; /* with the query */
        char *content_type;
        char *body;
        size_t body_len;
        uint64_t timeout_usec;
        bool auth_retried;

        kube_raw_data_fn on_data;
        kube_raw_done_fn raw_done;
        void *raw_userdata;

        /* Decoded-JSON layer. */
        kube_done_fn done;
        void *userdata;

        /* Lists. */
        bool is_list;
        char *list_path;  /* the collection path, no query */
        char *list_query; /* selectors, escaped, "" or "a=b&c=d" */
        char *list_rv;    /* NULL: consistent read */
        unsigned list_limit;
        bool list_unpaginated; /* restarted after an expired continue token */
        bool list_continued;   /* the current page request carries a continue token */
        json_object *list_items;
};

/* ---- small helpers -------------------------------------------------------- */

char *kube_snippet(const char *data, size_t len, size_t max, char *buf, size_t n) {
        size_t o = 0;

        if (n == 0)
                return buf;
        for (size_t i = 0; i < len && i < max; i++) {
                unsigned char ch = (unsigned char) data[i];

                if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '"') {
                        if (o + 2 > n)
                                break;
                        buf[o++] = (char) ch;
                } else {
                        if (o + 5 > n)
                                break;
                        o += (size_t) snprintf(buf + o, n - o, "\\x%02x", ch);
                }
        }
        if (len > max && o + 4 <= n) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = '\0';
        return buf;
}

int kube_json_parse(const char *data, size_t len, json_object **ret, err_info *ret_err) {
        json_tokener *tok;
        json_object *o;
        enum json_tokener_error jerr;
        size_t off;

        if (!data && len > 0)
                return -EINVAL;
        if (len > INT32_MAX)
                return err_info_set(ret_err, -EFBIG, "JSON document too large (%zu bytes)", len);

        tok = json_tokener_new_ex(KUBE_JSON_MAX_DEPTH);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, data ?: "", (int) len);
        jerr = json_tokener_get_error(tok);
        off = json_tokener_get_parse_end(tok);
        if (jerr == json_tokener_continue) {
                /* Ended inside a value, or a bare number at the very end:
                 * an empty final chunk tells the tokener the input is over. */
                o = json_tokener_parse_ex(tok, "", 1);
                jerr = json_tokener_get_error(tok);
                if (jerr == json_tokener_success && o)
                        off = len;
                else {
                        json_object_put(o);
                        json_tokener_free(tok);
                        return err_info_set(ret_err, -EBADMSG,
                                            "unexpected end of JSON input at byte %zu", len);
                }
        }
        json_tokener_free(tok);
        if (jerr != json_tokener_success)
                return err_info_set(ret_err, -EBADMSG, "%s at byte %zu",
                                    json_tokener_error_desc(jerr), off);
        for (size_t i = off; i < len; i++)
                if (!strchr(" \t\r\n", data[i]) || !data[i]) {
                        json_object_put(o);
                        return err_info_set(ret_err, -EBADMSG,
                                            "trailing garbage after JSON value at byte %zu", i);
                }
        if (ret)
                *ret = o;
        else
                json_object_put(o);
        return 0;
}

static const char *json_plain(json_object *o) {
        return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* ---- resources -------------------------------------------------------------- */

char *kube_resource_api_version(const kube_resource *res) {
        char *s;

        if (isempty(res->group))
                return strdup(res->version);
        if (asprintf(&s, "%s/%s", res->group, res->version) < 0)
                return NULL;
        return s;
}

/* A path segment we are willing to put in a URL: not empty, ".", "..", no
 * "/" and no control characters. It is percent-encoded anyway. */
static bool is_valid_segment(const char *s) {
        if (isempty(s) || streq(s, ".") || streq(s, ".."))
                return false;
        for (; *s; s++)
                if (*s == '/' || (unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

static int append_segment(char **path, const char *seg) {
        _cleanup_free_ char *esc = NULL;
        char *s;

        esc = http_escape(seg, false);
        if (!esc)
                return -ENOMEM;
        if (asprintf(&s, "%s/%s", *path, esc) < 0)
                return -ENOMEM;
        free(*path);
        *path = s;
        return 0;
}

int kube_resource_path(const kube_resource *res, const char *namespace, const char *name,
                       const char *subresource, char **ret) {
        _cleanup_free_ char *p = NULL;
        int r;

        if (!res || !is_valid_segment(res->version) || !is_valid_segment(res->resource) ||
            (!isempty(res->group) && !is_valid_segment(res->group)) || !ret)
                return -EINVAL;
        if (name && !is_valid_segment(name))
                return -EINVAL;
        if (subresource && (!name || !is_valid_segment(subresource)))
                return -EINVAL;
        if (res->namespaced && namespace && !is_valid_segment(namespace))
                return -EINVAL;
        if (res->namespaced && !namespace && name)
                return -EINVAL;

        p = strdup(isempty(res->group) ? "/api" : "/apis");
        if (!p)
                return -ENOMEM;
        if (!isempty(res->group) && (r = append_segment(&p, res->group)) < 0)
                return r;
        if ((r = append_segment(&p, res->version)) < 0)
                return r;
        if (res->namespaced && namespace) {
                if ((r = append_segment(&p, "namespaces")) < 0)
                        return r;
                if ((r = append_segment(&p, namespace)) < 0)
                        return r;
        }
        if ((r = append_segment(&p, res->resource)) < 0)
                return r;
        if (name && (r = append_segment(&p, name)) < 0)
                return r;
        if (subresource && (r = append_segment(&p, subresource)) < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

int kube_object_key(json_object *obj, char **ret) {
        const char *ns = jsonx_get_string(obj, "metadata.namespace");
        const char *name = jsonx_get_string(obj, "metadata.name");
        char *s;

        if (isempty(name))
                return -EINVAL;
        if (isempty(ns))
                s = strdup(name);
        else if (asprintf(&s, "%s/%s", ns, name) < 0)
                s = NULL;
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* ---- Status --------------------------------------------------------------- */

int kube_status_from_object(json_object *status, long http_status, err_info *ret_err) {
        const char *reason = NULL, *message = NULL;
        int64_t code = 0, retry = -1;
        long st;
        int r;

        if (json_object_is_type(status, json_type_object)) {
                reason = jsonx_get_string(status, "reason");
                message = jsonx_get_string(status, "message");
                code = jsonx_get_int(status, "code", 0);
                retry = jsonx_get_int(status, "details.retryAfterSeconds", -1);
        }
        st = code >= 100 && code <= 999 ? (long) code : http_status;

        /* An ERROR event arrives in a 200 response: the Status's own code and
         * reason decide. */
        if (reason && (strcasecmp(reason, "Expired") == 0 || strcasecmp(reason, "Gone") == 0))
                r = -EGONE;
        else if (st >= 300 || (st > 0 && st < 200))
                r = err_from_http_status(st, reason);
        else
                r = -EPROTO;
        if (r == 0)
                r = -EPROTO;

        err_info_clear(ret_err);
        if (ret_err) {
                ret_err->http_status = st;
                snprintf(ret_err->reason, sizeof(ret_err->reason), "%s", reason ?: "");
                ret_err->retry_after_sec = retry >= 0 && retry < INT32_MAX ? (long) retry : -1;
        }
        if (!isempty(message))
                return err_info_set(ret_err, r, "%s", message);
        return err_info_set(ret_err, r, "HTTP %ld%s%s", st, reason ? " " : "", reason ?: "");
}

int kube_status_parse(long http_status, const char *body, size_t body_len, err_info *ret_err) {
        _cleanup_json_ json_object *o = NULL;
        char snip[200];
        int r;

        if ((http_status >= 200 && http_status < 300) || http_status == 304) {
                err_info_clear(ret_err);
                if (ret_err)
                        ret_err->http_status = http_status;
                return 0;
        }

        if (body && body_len > 0 && kube_json_parse(body, body_len, &o, NULL) >= 0 &&
            json_object_is_type(o, json_type_object) &&
            (jsonx_get_string(o, "kind") || jsonx_get_string(o, "message"))) {
                r = kube_status_from_object(o, http_status, ret_err);
                /* The HTTP status is authoritative for the errno when the
                 * Status disagrees (a proxy may have produced either). */
                if (ret_err)
                        ret_err->http_status = http_status;
                return r;
        }

        r = err_from_http_status(http_status, NULL);
        if (r == 0)
                r = -EPROTO;
        err_info_clear(ret_err);
        if (ret_err) {
                ret_err->http_status = http_status;
                snprintf(ret_err->reason, sizeof(ret_err->reason), "%s",
                         body_len > 0 ? "NonJSONBody" : "EmptyBody");
        }
        if (!body || body_len == 0)
                return err_info_set(ret_err, r, "HTTP %ld with an empty response body",
                                    http_status);
        kube_snippet(body, body_len, 160, snip, sizeof(snip));
        return err_info_set(ret_err, r, "HTTP %ld: non-JSON response body: \"%s\"", http_status,
                            snip);
}

/* ---- client ------------------------------------------------------------------ */

static int strdup_opt(char **dst, const char *src) {
        if (!src) {
                *dst = NULL;
                return 0;
        }
        *dst = strdup(src);
        return *dst ? 0 : -ENOMEM;
}

static void request_free(kube_request *kr);

kube_client *kube_client_free(kube_client *c) {
        if (!c)
                return NULL;
        while (c->requests) {
                kube_request *kr = c->requests;

                if (kr->http)
                        http_request_cancel(kr->http);
                kr->http = NULL;
                request_free(kr);
        }
        sd_event_source_disable_unref(c->rl_timer);
        http_client_free(c->http);
        sd_event_unref(c->event);
        free(c->server);
        free(c->ca_file);
        free(c->ca_pem);
        free(c->cert_file);
        free(c->key_file);
        free(c->cert_pem);
        if (c->key_pem)
                explicit_bzero(c->key_pem, strlen(c->key_pem));
        free(c->key_pem);
        if (c->token)
                explicit_bzero(c->token, strlen(c->token));
        free(c->token);
        free(c->token_file);
        free(c->namespace);
        free(c->user_agent);
        free(c);
        return NULL;
}

int kube_client_new_with_http(sd_event *e, http_client *http, const kube_config *cfg,
                              const kube_client_opts *opts, kube_client **ret) {
        _cleanup_(kube_client_freep) kube_client *c = NULL;
        kube_client_opts o = {};
        double qps;
        int r;

        if (!e || !http || !cfg || isempty(cfg->server) || !ret) {
                http_client_free(http);
                return -EINVAL;
        }
        if (opts)
                o = *opts;

        c = calloc(1, sizeof(*c));
        if (!c) {
                http_client_free(http);
                return -ENOMEM;
        }
        c->http = http;
        c->event = sd_event_ref(e);

        if ((r = strdup_opt(&c->server, cfg->server)) < 0 ||
            (r = strdup_opt(&c->ca_file, cfg->ca_file)) < 0 ||
            (r = strdup_opt(&c->ca_pem, cfg->ca_pem)) < 0 ||
            (r = strdup_opt(&c->cert_file, cfg->cert_file)) < 0 ||
            (r = strdup_opt(&c->key_file, cfg->key_file)) < 0 ||
            (r = strdup_opt(&c->cert_pem, cfg->cert_pem)) < 0 ||
            (r = strdup_opt(&c->key_pem, cfg->key_pem)) < 0 ||
            (r = strdup_opt(&c->token, cfg->token)) < 0 ||
            (r = strdup_opt(&c->token_file, cfg->token_file)) < 0 ||
            (r = strdup_opt(&c->namespace, cfg->namespace ?: "default")) < 0)
                return r;
        c->insecure = cfg->insecure_skip_tls_verify;
        /* The token in the config was read just now; the client re-reads the
         * file once the interval has passed. */
        if (c->token_file && c->token)
                c->token_loaded_usec = loop_now(e);
        if (asprintf(&c->user_agent, "User-Agent: %s", o.user_agent ?: "ballast/" BALLAST_VERSION) <
            0) {
                c->user_agent = NULL;
                return -ENOMEM;
        }

        c->timeout_usec = o.timeout_usec ?: KUBE_DEFAULT_TIMEOUT_USEC;
        c->connect_timeout_usec = o.connect_timeout_usec ?: KUBE_DEFAULT_CONNECT_TIMEOUT_USEC;
        c->token_reload_usec = o.token_reload_usec ?: KUBE_TOKEN_RELOAD_USEC;
        qps = o.qps == 0 ? KUBE_DEFAULT_QPS : o.qps < 0 ? 0 : o.qps;
        ratelimit_init(&c->rl, qps, o.burst ?: KUBE_DEFAULT_BURST, loop_now(e));

        *ret = TAKE_PTR(c);
        return 0;
}

int kube_client_new(sd_event *e, const kube_config *cfg, const kube_client_opts *opts,
                    kube_client **ret) {
        http_client *http = NULL;
        int r;

        if (!e || !cfg || isempty(cfg->server) || !ret)
                return -EINVAL;
        r = http_client_new(e, &http);
        if (r < 0)
                return r;
        return kube_client_new_with_http(e, http, cfg, opts, ret);
}

sd_event *kube_client_get_event(kube_client *c) {
        return c ? c->event : NULL;
}

const char *kube_client_get_namespace(kube_client *c) {
        return c ? c->namespace : NULL;
}

void kube_client_get_stats(const kube_client *c, kube_client_stats *ret) {
        *ret = c ? c->stats : (kube_client_stats){};
}

/* Re-reads the token file when @force or when the reload interval has
 * passed. A failed read keeps the previous token (the file may be in the
 * middle of an atomic update); it is retried at the next request. */
static int client_load_token(kube_client *c, bool force) {
        _cleanup_free_ char *buf = NULL;
        uint64_t now;
        size_t len;
        char *s, *e;
        int r;

        if (!c->token_file)
                return 0;
        now = loop_now(c->event);
        if (!force && c->token && c->token_loaded_usec > 0 &&
            now - c->token_loaded_usec < c->token_reload_usec)
                return 0;

        r = kube_read_file(c->token_file, KUBE_TOKEN_MAX_SIZE, &buf, &len);
        if (r < 0)
                return r;
        for (s = buf; *s && isspace((unsigned char) *s); s++)
                ;
        for (e = s + strlen(s); e > s && isspace((unsigned char) e[-1]); e--)
                ;
        *e = '\0';
        if (!*s)
                return -ENODATA;
        for (char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return -EBADMSG;

        if (c->token_loaded_usec > 0 || c->token)
                c->stats.token_reloads++;
        if (!c->token || !streq(c->token, s)) {
                char *t = strdup(s);

                if (!t)
                        return -ENOMEM;
                if (c->token)
                        explicit_bzero(c->token, strlen(c->token));
                free(c->token);
                c->token = t;
        }
        explicit_bzero(buf, len);
        c->token_loaded_usec = MAX(now, (uint64_t) 1);
        return 0;
}

int kube_client_reload_token(kube_client *c) {
        return client_load_token(c, true);
}

/* ---- requests ------------------------------------------------------------------ */

static void request_unqueue(kube_request *kr) {
        kube_client *c = kr->client;
        kube_request **p;

        if (!kr->queued)
                return;
        for (p = &c->queue_head; *p; p = &(*p)->qnext)
                if (*p == kr) {
                        *p = kr->qnext;
                        break;
                }
        c->queue_tail = NULL;
        for (kube_request *q = c->queue_head; q; q = q->qnext)
                c->queue_tail = q;
        kr->qnext = NULL;
        kr->queued = false;
}

static void request_free(kube_request *kr) {
        kube_client *c;

        if (!kr)
                return;
        c = kr->client;
        request_unqueue(kr);
        if (kr->prev)
                kr->prev->next = kr->next;
        else if (c->requests == kr)
                c->requests = kr->next;
        if (kr->next)
                kr->next->prev = kr->prev;
        free(kr->method);
        free(kr->path);
        free(kr->content_type);
        free(kr->body);
        free(kr->list_path);
        free(kr->list_query);
        free(kr->list_rv);
        json_object_put(kr->list_items);
        free(kr);
}

void kube_request_cancel(kube_request *kr) {
        if (!kr)
                return;
        if (kr->http)
                http_request_cancel(kr->http);
        kr->http = NULL;
        request_free(kr);
}

static int request_new(kube_client *c, const char *method, const char *path,
                       const char *content_type, const char *body, size_t body_len,
                       kube_request **ret) {
        kube_request *kr;

        kr = calloc(1, sizeof(*kr));
        if (!kr)
                return -ENOMEM;
        kr->client = c;
        kr->next = c->requests;
        if (c->requests)
                c->requests->prev = kr;
        c->requests = kr;

        kr->method = strdup(method ?: "GET");
        kr->path = path ? strdup(path) : NULL;
        if (!kr->method || (path && !kr->path))
                goto oom;
        if (content_type && !(kr->content_type = strdup(content_type)))
                goto oom;
        if (body) {
                kr->body = malloc(body_len + 1);
                if (!kr->body)
                        goto oom;
                memcpy(kr->body, body, body_len);
                kr->body[body_len] = '\0';
                kr->body_len = body_len;
        }
        *ret = kr;
        return 0;
oom:
        request_free(kr);
        return -ENOMEM;
}

static int on_http_data(http_request *hreq, const void *data, size_t len, void *userdata) {
        kube_request *kr = userdata;

        return kr->on_data(http_request_get_status(hreq), data, len, kr->raw_userdata);
}

static void on_http_done(http_request *hreq, int r, const http_response *resp, const err_info *err,
                         void *userdata);

static int request_dispatch(kube_request *kr) {
        kube_client *c = kr->client;
        _cleanup_free_ char *url = NULL, *ctype = NULL;
        const char *headers[4];
        size_t n = 0;
        http_tls tls = {
                .ca_file = c->ca_file,
                .ca_pem = c->ca_pem,
                .cert_file = c->cert_file,
                .key_file = c->key_file,
                .cert_pem = c->cert_pem,
                .key_pem = c->key_pem,
                .insecure_skip_verify = c->insecure,
        };
        http_request_opts o;
        int r;

        /* Projected service-account tokens rotate: re-read the file now and
         * then. A failed read keeps the previous token. */
        (void) client_load_token(c, false);

        if (asprintf(&url, "%s%s", c->server, kr->path) < 0) {
                url = NULL;
                return -ENOMEM;
        }
        headers[n++] = "Accept: application/json";
        if (kr->body) {
                if (asprintf(&ctype, "Content-Type: %s", kr->content_type ?: "application/json") <
                    0) {
                        ctype = NULL;
                        return -ENOMEM;
                }
                headers[n++] = ctype;
        }
        headers[n++] = c->user_agent;
        headers[n] = NULL;

        o = (http_request_opts){
                .method = kr->method,
                .url = url,
                .headers = headers,
                .body = kr->body,
                .body_len = kr->body_len,
                .tls = &tls,
                .bearer_token = c->token,
                .connect_timeout_usec = c->connect_timeout_usec,
                .timeout_usec = kr->timeout_usec ?: c->timeout_usec,
                .on_data = kr->on_data ? on_http_data : NULL,
        };
        r = http_request_start(c->http, &o, on_http_done, kr, &kr->http);
        if (r < 0)
                return r;
        c->stats.requests++;
        if (!kr->method || streq(kr->method, "GET")) {
                if (kr->on_data)
                        c->stats.watches++;
                else
                        c->stats.gets++;
        } else if (streq(kr->method, "POST"))
                c->stats.posts++;
        else if (streq(kr->method, "PUT"))
                c->stats.puts++;
        else if (streq(kr->method, "PATCH"))
                c->stats.patches++;
        else if (streq(kr->method, "DELETE"))
                c->stats.deletes++;
        return 0;
}

/* Sends @kr now if the bucket has a token and nobody is waiting, else queues
 * it behind the others. Returns a dispatch failure; the caller decides
 * whether that reaches a callback. */
static int on_rl_timer(sd_event_source *s, uint64_t usec, void *userdata);

static int request_submit(kube_request *kr) {
        kube_client *c = kr->client;
        uint64_t wait;

        if (!c->queue_head) {
                wait = ratelimit_take(&c->rl, loop_now(c->event));
                if (wait == 0)
                        return request_dispatch(kr);
                (void) loop_timer_arm(c->event, &c->rl_timer, wait, on_rl_timer, c);
        }
        kr->queued = true;
        kr->qnext = NULL;
        if (c->queue_tail)
                c->queue_tail->qnext = kr;
        else
                c->queue_head = kr;
        c->queue_tail = kr;
        c->stats.throttled++;
        return 0;
}

/* Runs the request's callback and frees it unless the callback sent it
 * again (a retry or the next page). */
static void request_complete(kube_request *kr, int r, const http_response *resp,
                             const err_info *err) {
        err_info e;

        if (!err) {
                err_info_clear(&e);
                err_info_set(&e, r, "failed to send request: %s", strerror(-r));
                err = &e;
        }
        kr->raw_done(kr, r, resp, err, kr->raw_userdata);
        if (!kr->http && !kr->queued)
                request_free(kr);
}

static int on_rl_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        kube_client *c = userdata;

        while (c->queue_head) {
                kube_request *kr = c->queue_head;
                uint64_t wait = ratelimit_take(&c->rl, loop_now(c->event));
                int r;

                if (wait > 0) {
                        (void) loop_timer_arm(c->event, &c->rl_timer, wait, on_rl_timer, c);
                        break;
                }
                request_unqueue(kr);
                r = request_dispatch(kr);
                if (r < 0)
                        request_complete(kr, r, NULL, NULL);
        }
        return 0;
}

static void on_http_done(http_request *hreq, int r, const http_response *resp, const err_info *err,
                         void *userdata) {
        kube_request *kr = userdata;
        kube_client *c = kr->client;

        kr->http = NULL;
        http_code_counts_inc(&c->stats.codes, r >= 0 && resp ? resp->status : 0);
        /* A 401 with a token file: the token may have rotated under us. Read
         * it again and retry once. Streams handle this themselves, since
         * their body may already have been consumed. */
        if (r >= 0 && resp && resp->status == 401 && c->token_file && !kr->auth_retried &&
            !kr->on_data) {
                int q;

                kr->auth_retried = true;
                c->stats.auth_retries++;
                (void) client_load_token(c, true);
                q = request_submit(kr);
                if (q >= 0)
                        return;
                request_complete(kr, q, NULL, NULL);
                return;
        }
        request_complete(kr, r, resp, err);
}

static int request_start(kube_request *kr, kube_request **ret) {
        int r;

        r = request_submit(kr);
        if (r < 0) {
                request_free(kr);
                return r;
        }
        if (ret)
                *ret = kr;
        return 0;
}

int kube_raw_start(kube_client *c, const kube_raw_opts *o, kube_raw_done_fn done, void *userdata,
                   kube_request **ret) {
        kube_request *kr;
        int r;

        if (!c || !o || !o->path || o->path[0] != '/' || !done)
                return -EINVAL;
        r = request_new(c, o->method, o->path, o->content_type, o->body, o->body_len, &kr);
        if (r < 0)
                return r;
        kr->timeout_usec = o->timeout_usec;
        kr->on_data = o->on_data;
        kr->raw_done = done;
        kr->raw_userdata = userdata;
        return request_start(kr, ret);
}

/* ---- the decoded-JSON layer ---------------------------------------------------- */

/* Maps a finished exchange to (r, decoded body, details). *@ret_obj is owned
 * by the caller. */
static int response_decode(int r, const http_response *resp, const err_info *err,
                           json_object **ret_obj, err_info *ret_err) {
        err_info_clear(ret_err);
        *ret_obj = NULL;

        if (r < 0) {
                if (err && ret_err)
                        *ret_err = *err;
                return r;
        }
        if (!resp)
                return err_info_set(ret_err, -EIO, "no response");
        if (resp->status < 200 || resp->status >= 300) {
                r = kube_status_parse(resp->status, resp->body, resp->body_len, ret_err);
                if (ret_err && ret_err->retry_after_sec < 0)
                        ret_err->retry_after_sec = resp->retry_after_sec;
                return r;
        }
        if (resp->body_len == 0)
                return 0;
        r = kube_json_parse(resp->body, resp->body_len, ret_obj, ret_err);
        if (r < 0) {
                char snip[200];

                if (r != -EBADMSG)
                        return r;
                err_info_clear(ret_err);
                if (ret_err) {
                        ret_err->http_status = resp->status;
                        snprintf(ret_err->reason, sizeof(ret_err->reason), "NonJSONBody");
                }
                kube_snippet(resp->body, resp->body_len, 160, snip, sizeof(snip));
                return err_info_set(ret_err, -EBADMSG,
                                    "HTTP %ld: response body is not JSON: \"%s\"", resp->status,
                                    snip);
        }
        if (ret_err)
                ret_err->http_status = resp->status;
        return 0;
}

static void on_json_done(kube_request *kr, int r, const http_response *resp, const err_info *err,
                         void *userdata) {
        _cleanup_json_ json_object *obj = NULL;
        err_info e;

        r = response_decode(r, resp, err, &obj, &e);
        kr->done(kr->client, r, r < 0 ? NULL : obj, &e, kr->userdata);
}

static int query_add(char **q, const char *key, const char *value);

static int list_build_path(kube_request *kr, const char *cont) {
        _cleanup_free_ char *q = NULL, *p = NULL;
        char limit[32];
        int r;

        q = strdup(kr->list_query);
        if (!q)
                return -ENOMEM;
        if (kr->list_limit > 0 && !kr->list_unpaginated) {
                snprintf(limit, sizeof(limit), "%u", kr->list_limit);
                if ((r = query_add(&q, "limit", limit)) < 0)
                        return r;
        }
        /* A continue token carries its own snapshot; resourceVersion must not
         * be sent with it. */
        if ((r = query_add(&q, cont ? "continue" : "resourceVersion", cont ?: kr->list_rv)) < 0)
                return r;
        if (asprintf(&p, "%s%s%s", kr->list_path, *q ? "?" : "", q) < 0)
                return -ENOMEM;
        free(kr->path);
        kr->path = TAKE_PTR(p);
        kr->list_continued = cont != NULL;
        return 0;
}

static int list_add_items(kube_request *kr, json_object *page) {
        json_object *items = NULL;
        const char *api_version = jsonx_get_string(page, "apiVersion");
        const char *list_kind = jsonx_get_string(page, "kind");
        _cleanup_free_ char *kind = NULL;
        size_t n;

        if (!json_object_object_get_ex(page, "items", &items) || !items)
                return 0; /* "items": null is an empty list */
        if (!json_object_is_type(items, json_type_array))
                return -EBADMSG;
        if (list_kind) {
                size_t l = strlen(list_kind);

                if (l > 4 && streq(list_kind + l - 4, "List"))
                        kind = strndup(list_kind, l - 4);
        }

        n = json_object_array_length(items);
        for (size_t i = 0; i < n; i++) {
                json_object *it = json_object_array_get_idx(items, i);

                if (!json_object_is_type(it, json_type_object))
                        return -EBADMSG;
                /* Items of a list carry no apiVersion/kind; watch events do.
                 * Fill them in so stored objects look the same either way. */
                if (api_version && !json_object_object_get_ex(it, "apiVersion", NULL))
                        json_object_object_add(it, "apiVersion",
                                               json_object_new_string(api_version));
                if (kind && !json_object_object_get_ex(it, "kind", NULL))
                        json_object_object_add(it, "kind", json_object_new_string(kind));
                if (json_object_array_add(kr->list_items, json_object_get(it)) < 0) {
                        json_object_put(it);
                        return -ENOMEM;
                }
        }
        return 0;
}

static void on_list_done(kube_request *kr, int r, const http_response *resp, const err_info *err,
                         void *userdata) {
        _cleanup_json_ json_object *page = NULL, *result = NULL, *meta = NULL;
        const char *cont, *rv;
        bool continued = kr->list_continued;
        err_info e;

        r = response_decode(r, resp, err, &page, &e);
        if (r == -EGONE && continued && !kr->list_unpaginated) {
                /* The continue token expired (the snapshot was compacted):
                 * start over in one piece, as client-go's pager does. */
                kr->list_unpaginated = true;
                json_object_put(kr->list_items);
                kr->list_items = json_object_new_array();
                if (!kr->list_items)
                        r = -ENOMEM;
                else
                        r = list_build_path(kr, NULL);
                if (r >= 0)
                        r = request_submit(kr);
                if (r >= 0)
                        return;
                err_info_clear(&e);
                err_info_set(&e, r, "failed to restart list: %s", strerror(-r));
        }
        if (r >= 0 && !json_object_is_type(page, json_type_object))
                r = err_info_set(&e, -EBADMSG, "list response is not a JSON object");
        if (r >= 0 && list_add_items(kr, page) < 0)
                r = err_info_set(&e, -EBADMSG, "list response has malformed items");
        if (r < 0) {
                kr->done(kr->client, r, NULL, &e, kr->userdata);
                return;
        }

        cont = jsonx_get_string(page, "metadata.continue");
        if (!isempty(cont) && kr->list_limit > 0 && !kr->list_unpaginated) {
                r = list_build_path(kr, cont);
                if (r >= 0)
                        r = request_submit(kr);
                if (r >= 0)
                        return;
                err_info_clear(&e);
                kr->done(kr->client,
                         err_info_set(&e, r, "failed to request the next page: %s", strerror(-r)),
                         NULL, &e, kr->userdata);
                return;
        }

        rv = jsonx_get_string(page, "metadata.resourceVersion");
        result = json_object_new_object();
        meta = json_object_new_object();
        if (!result || !meta) {
                err_info_clear(&e);
                kr->done(kr->client, err_info_set(&e, -ENOMEM, "out of memory"), NULL, &e,
                         kr->userdata);
                return;
        }
        if (rv)
                json_object_object_add(meta, "resourceVersion", json_object_new_string(rv));
        if (jsonx_get_string(page, "apiVersion"))
                json_object_object_add(
                        result, "apiVersion",
                        json_object_new_string(jsonx_get_string(page, "apiVersion")));
        if (jsonx_get_string(page, "kind"))
                json_object_object_add(result, "kind",
                                       json_object_new_string(jsonx_get_string(page, "kind")));
        json_object_object_add(result, "metadata", TAKE_PTR(meta));
        json_object_object_add(result, "items", TAKE_PTR(kr->list_items));
        err_info_clear(&e);
        kr->done(kr->client, 0, result, &e, kr->userdata);
}

static int query_add(char **q, const char *key, const char *value) {
        _cleanup_free_ char *esc = NULL;
        char *s;

        if (!value)
                return 0;
        esc = http_escape(value, false);
        if (!esc)
                return -ENOMEM;
        if (asprintf(&s, "%s%s%s=%s", *q, **q ? "&" : "", key, esc) < 0)
                return -ENOMEM;
        free(*q);
        *q = s;
        return 0;
}

int kube_list_start(kube_client *c, const kube_resource *res, const char *namespace,
                    const kube_list_opts *opts, kube_done_fn done, void *userdata,
                    kube_request **ret, err_info *ret_err) {
        _cleanup_free_ char *path = NULL, *query = NULL;
        kube_list_opts o = {};
        kube_request *kr;
        int r;

        err_info_clear(ret_err);
        if (!c || !res || !done)
                return err_info_set(ret_err, -EINVAL, "invalid arguments");
        if (opts)
                o = *opts;
        r = kube_resource_path(res, namespace, NULL, NULL, &path);
        if (r < 0)
                return err_info_set(ret_err, r, "invalid resource or namespace");
        query = strdup("");
        if (!query)
                return -ENOMEM;
        if ((r = query_add(&query, "labelSelector", o.label_selector)) < 0 ||
            (r = query_add(&query, "fieldSelector", o.field_selector)) < 0)
                return r;

        r = request_new(c, "GET", NULL, NULL, NULL, 0, &kr);
        if (r < 0)
                return r;
        kr->is_list = true;
        kr->list_path = TAKE_PTR(path);
        kr->list_query = TAKE_PTR(query);
        kr->list_limit = o.limit;
        kr->list_items = json_object_new_array();
        if (!kr->list_items ||
            (o.resource_version && !(kr->list_rv = strdup(o.resource_version)))) {
                request_free(kr);
                return -ENOMEM;
        }
        r = list_build_path(kr, NULL);
        if (r < 0) {
                request_free(kr);
                return r;
        }
        kr->raw_done = on_list_done;
        kr->done = done;
        kr->userdata = userdata;
        r = request_start(kr, ret);
        if (r < 0)
                return err_info_set(ret_err, r, "failed to start request: %s", strerror(-r));
        return 0;
}

/* ---- public calls ---------------------------------------------------------------- */

static int call_start(kube_client *c, const kube_call *call, kube_done_fn done, void *userdata,
                      kube_request **ret, err_info *ret_err) {
        _cleanup_free_ char *path = NULL, *full = NULL;
        kube_request *kr;
        int r;

        err_info_clear(ret_err);
        if (!c || !call || !call->resource || !done)
                return err_info_set(ret_err, -EINVAL, "invalid arguments");
        r = kube_resource_path(call->resource, call->namespace, call->name, call->subresource,
                               &path);
        if (r < 0)
                return err_info_set(ret_err, r,
                                    "invalid resource path (namespace \"%s\", name \"%s\")",
                                    strna(call->namespace), strna(call->name));
        if (!isempty(call->query)) {
                for (const char *q = call->query; *q; q++)
                        if ((unsigned char) *q <= 0x20 || *q == '#' || *q == 0x7f)
                                return err_info_set(ret_err, -EINVAL, "query is not escaped");
                if (asprintf(&full, "%s?%s", path, call->query) < 0)
                        return -ENOMEM;
        }

        r = request_new(c, call->method, full ?: path, call->body ? call->content_type : NULL,
                        call->body, call->body_len, &kr);
        if (r < 0)
                return r;
        kr->raw_done = on_json_done;
        kr->done = done;
        kr->userdata = userdata;
        r = request_start(kr, ret);
        if (r < 0)
                return err_info_set(ret_err, r, "failed to start request: %s", strerror(-r));
        return 0;
}

int kube_call_start(kube_client *c, const kube_call *call, kube_done_fn done, void *userdata,
                    kube_request **ret) {
        return call_start(c, call, done, userdata, ret, NULL);
}

typedef struct sync_state {
        bool done;
        int r;
        json_object *obj;
        err_info err;
} sync_state;

static void on_sync_done(kube_client *c, int r, json_object *obj, const err_info *err,
                         void *userdata) {
        sync_state *s = userdata;

        s->done = true;
        s->r = r;
        s->obj = obj ? json_object_get(obj) : NULL;
        if (err)
                s->err = *err;
}

/* Runs the loop until the request started with on_sync_done completes. */
static int sync_wait(kube_client *c, int r, kube_request *req, sync_state *s, json_object **ret,
                     err_info *ret_err) {
        if (r < 0)
                return r; /* ret_err was filled by the start function */
        r = loop_run_until(c->event, &s->done, 0);
        if (r < 0) {
                kube_request_cancel(req);
                return err_info_set(ret_err, r, "event loop failed: %s", strerror(-r));
        }
        if (s->r < 0) {
                json_object_put(s->obj);
                if (ret_err)
                        *ret_err = s->err;
                return s->r;
        }
        if (ret_err)
                *ret_err = s->err;
        if (ret)
                *ret = s->obj;
        else
                json_object_put(s->obj);
        return 0;
}

#define SYNC_STATE_INIT                                                                            \
        {                                                                                          \
                .r = 0, .obj = NULL, .err = {.retry_after_sec = -1 }                               \
        }

int kube_call_run(kube_client *c, const kube_call *call, json_object **ret, err_info *ret_err) {
        sync_state s = SYNC_STATE_INIT;
        kube_request *req = NULL;

        return sync_wait(c, call_start(c, call, on_sync_done, &s, &req, ret_err), req, &s, ret,
                         ret_err);
}

/* get */

static int get_start(kube_client *c, const kube_resource *res, const char *namespace,
                     const char *name, const char *subresource, kube_done_fn done, void *userdata,
                     kube_request **ret, err_info *ret_err) {
        kube_call call = {
                .method = "GET",
                .resource = res,
                .namespace = namespace,
                .name = name,
                .subresource = subresource,
        };

        if (isempty(name))
                return err_info_set(ret_err, -EINVAL, "no object name");
        return call_start(c, &call, done, userdata, ret, ret_err);
}

int kube_get_object(kube_client *c, const kube_resource *res, const char *namespace,
                    const char *name, const char *subresource, kube_done_fn done, void *userdata,
                    kube_request **ret) {
        return get_start(c, res, namespace, name, subresource, done, userdata, ret, NULL);
}

int kube_get_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                         const char *name, const char *subresource, json_object **ret,
                         err_info *ret_err) {
        sync_state s = SYNC_STATE_INIT;
        kube_request *req = NULL;

        return sync_wait(
                c, get_start(c, res, namespace, name, subresource, on_sync_done, &s, &req, ret_err),
                req, &s, ret, ret_err);
}

/* list */

int kube_list_objects(kube_client *c, const kube_resource *res, const char *namespace,
                      const kube_list_opts *opts, kube_done_fn done, void *userdata,
                      kube_request **ret) {
        return kube_list_start(c, res, namespace, opts, done, userdata, ret, NULL);
}

int kube_list_objects_sync(kube_client *c, const kube_resource *res, const char *namespace,
                           const kube_list_opts *opts, json_object **ret, err_info *ret_err) {
        sync_state s = SYNC_STATE_INIT;
        kube_request *req = NULL;

        return sync_wait(c,
                         kube_list_start(c, res, namespace, opts, on_sync_done, &s, &req, ret_err),
                         req, &s, ret, ret_err);
}

/* Where an object goes: @namespace, else its metadata.namespace, else the
 * client's namespace; cluster-scoped resources have none. */
static const char *object_namespace(kube_client *c, const kube_resource *res, const char *namespace,
                                    json_object *obj) {
        if (!res || !res->namespaced)
                return NULL;
        if (namespace)
                return namespace;
        return jsonx_get_string(obj, "metadata.namespace") ?: c->namespace;
}

/* create */

static int create_start(kube_client *c, const kube_resource *res, const char *namespace,
                        json_object *obj, kube_done_fn done, void *userdata, kube_request **ret,
                        err_info *ret_err) {
        const char *body;
        kube_call call;

        if (!c || !json_object_is_type(obj, json_type_object))
                return err_info_set(ret_err, -EINVAL, "object is not a JSON object");
        body = json_plain(obj);
        call = (kube_call){
                .method = "POST",
                .resource = res,
                .namespace = object_namespace(c, res, namespace, obj),
                .body = body,
                .body_len = strlen(body),
        };
        return call_start(c, &call, done, userdata, ret, ret_err);
}

int kube_create_object(kube_client *c, const kube_resource *res, const char *namespace,
                       json_object *obj, kube_done_fn done, void *userdata, kube_request **ret) {
        return create_start(c, res, namespace, obj, done, userdata, ret, NULL);
}

int kube_create_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                            json_object *obj, json_object **ret, err_info *ret_err) {
        sync_state s = SYNC_STATE_INIT;
        kube_request *req = NULL;

        return sync_wait(c, create_start(c, res, namespace, obj, on_sync_done, &s, &req, ret_err),
                         req, &s, ret, ret_err);
}

/* update */

static int update_start(kube_client *c, const kube_resource *res, const char *namespace,
                        json_object *obj, const char *subresource, kube_done_fn done,
                        void *userdata, kube_request **ret, err_info *ret_err) {
        const char *body, *name;
        kube_call call;

        if (!c || !json_object_is_type(obj, json_type_object))
                return err_info_set(ret_err, -EINVAL, "object is not a JSON object");
        name = jsonx_get_string(obj, "metadata.name");
        if (isempty(name))
                return err_info_set(ret_err, -EINVAL, "object has no metadata.name");
        body = json_plain(obj);
        call = (kube_call){
                .method = "PUT",
                .resource = res,
                .namespace = object_namespace(c, res, namespace, obj),
                .name = name,
                .subresource = subresource,
                .body = body,
                .body_len = strlen(body),
        };
        return call_start(c, &call, done, userdata, ret, ret_err);
}

int kube_update_object(kube_client *c, const kube_resource *res, const char *namespace,
                       json_object *obj, const char *subresource, kube_done_fn done, void *userdata,
                       kube_request **ret) {
        return update_start(c, res, namespace, obj, subresource, done, userdata, ret, NULL);
}

int kube_update_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                            json_object *obj, const char *subresource, json_object **ret,
                            err_info *ret_err) {
        sync_state s = SYNC_STATE_INIT;
        kube_request *req = NULL;

        return sync_wait(
                c,
                update_start(c, res, namespace, obj, subresource, on_sync_done, &s, &req, ret_err),
                req, &s, ret, ret_err);
}

/* delete */

static int delete_start(kube_client *c, const kube_resource *res, const char *namespace,
                        const char *name, const kube_delete_opts *opts, kube_done_fn done,
                        void *userdata, kube_request **ret, err_info *ret_err) {
        _cleanup_json_ json_object *body = NULL;
        const char *text = NULL;
        kube_call call;

        if (isempty(name))
                return err_info_set(ret_err, -EINVAL, "no object name");
        if (opts && (opts->uid || opts->resource_version || opts->propagation)) {
                json_object *pre;

                body = json_object_new_object();
                if (!body)
                        return -ENOMEM;
                json_object_object_add(body, "apiVersion", json_object_new_string("v1"));
                json_object_object_add(body, "kind", json_object_new_string("DeleteOptions"));
                if (opts->uid || opts->resource_version) {
                        pre = json_object_new_object();
                        if (!pre)
                                return -ENOMEM;
                        if (opts->uid)
                                json_object_object_add(pre, "uid",
                                                       json_object_new_string(opts->uid));
                        if (opts->resource_version)
                                json_object_object_add(
                                        pre, "resourceVersion",
                                        json_object_new_string(opts->resource_version));
                        json_object_object_add(body, "preconditions", pre);
                }
                if (opts->propagation)
                        json_object_object_add(body, "propagationPolicy",
                                               json_object_new_string(opts->propagation));
                text = json_plain(body);
        }
        call = (kube_call){
                .method = "DELETE",
                .resource = res,
                .namespace = res && res->namespaced ? namespace ?: c->namespace : NULL,
                .name = name,
                .body = text,
                .body_len = text ? strlen(text) : 0,
        };
        return call_start(c, &call, done, userdata, ret, ret_err);
}

int kube_delete_object(kube_client *c, const kube_resource *res, const char *namespace,
                       const char *name, const kube_delete_opts *opts, kube_done_fn done,
                       void *userdata, kube_request **ret) {
        if (!c)
                return -EINVAL;
        return delete_start(c, res, namespace, name, opts, done, userdata, ret, NULL);
}

int kube_delete_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                            const char *name, const kube_delete_opts *opts, err_info *ret_err) {
        sync_state s = SYNC_STATE_INIT;
        kube_request *req = NULL;

        if (!c)
                return -EINVAL;
        return sync_wait(
                c, delete_start(c, res, namespace, name, opts, on_sync_done, &s, &req, ret_err),
                req, &s, NULL, ret_err);
}

/* patch and apply */

static const char *const patch_content_types[_KUBE_PATCH_TYPE_MAX] = {
        [KUBE_PATCH_MERGE] = "application/merge-patch+json",
        [KUBE_PATCH_JSON] = "application/json-patch+json",
        [KUBE_PATCH_APPLY] = "application/apply-patch+yaml",
        [KUBE_PATCH_STRATEGIC] = "application/strategic-merge-patch+json",
};

static int patch_start(kube_client *c, const kube_resource *res, const char *namespace,
                       const char *name, const char *subresource, kube_patch_type type,
                       const char *patch, size_t patch_len, const kube_patch_opts *opts,
                       kube_done_fn done, void *userdata, kube_request **ret, err_info *ret_err) {
        _cleanup_free_ char *query = NULL;
        kube_call call;
        int r;

        if (!c || (unsigned) type >= _KUBE_PATCH_TYPE_MAX || !patch)
                return err_info_set(ret_err, -EINVAL, "invalid patch arguments");
        if (isempty(name))
                return err_info_set(ret_err, -EINVAL, "no object name");
        if (type == KUBE_PATCH_APPLY && (!opts || isempty(opts->field_manager)))
                return err_info_set(ret_err, -EINVAL, "server-side apply needs a field manager");

        query = strdup("");
        if (!query)
                return -ENOMEM;
        if (opts && (r = query_add(&query, "fieldManager", opts->field_manager)) < 0)
                return r;
        if (type == KUBE_PATCH_APPLY && opts->force && (r = query_add(&query, "force", "true")) < 0)
                return r;

        call = (kube_call){
                .method = "PATCH",
                .resource = res,
                .namespace = res && res->namespaced ? namespace ?: c->namespace : NULL,
                .name = name,
                .subresource = subresource,
                .query = query,
                .content_type = patch_content_types[type],
                .body = patch,
                .body_len = patch_len,
        };
        return call_start(c, &call, done, userdata, ret, ret_err);
}

int kube_patch_object(kube_client *c, const kube_resource *res, const char *namespace,
                      const char *name, const char *subresource, kube_patch_type type,
                      const char *patch, size_t patch_len, const kube_patch_opts *opts,
                      kube_done_fn done, void *userdata, kube_request **ret) {
        return patch_start(c, res, namespace, name, subresource, type, patch, patch_len, opts, done,
                           userdata, ret, NULL);
}

int kube_patch_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                           const char *name, const char *subresource, kube_patch_type type,
                           const char *patch, size_t patch_len, const kube_patch_opts *opts,
                           json_object **ret, err_info *ret_err) {
        sync_state s = SYNC_STATE_INIT;
        kube_request *req = NULL;

        if (!c)
                return -EINVAL;
        return sync_wait(c,
                         patch_start(c, res, namespace, name, subresource, type, patch, patch_len,
                                     opts, on_sync_done, &s, &req, ret_err),
                         req, &s, ret, ret_err);
}

static int apply_start(kube_client *c, const kube_resource *res, const char *namespace,
                       json_object *obj, const char *subresource, const char *field_manager,
                       bool force, kube_done_fn done, void *userdata, kube_request **ret,
                       err_info *ret_err) {
        kube_patch_opts po = {.field_manager = field_manager, .force = force};
        const char *body, *name;

        if (!c || !json_object_is_type(obj, json_type_object))
                return err_info_set(ret_err, -EINVAL, "object is not a JSON object");
        name = jsonx_get_string(obj, "metadata.name");
        if (isempty(name))
                return err_info_set(ret_err, -EINVAL, "object has no metadata.name");
        if (!jsonx_get_string(obj, "apiVersion") || !jsonx_get_string(obj, "kind"))
                return err_info_set(ret_err, -EINVAL,
                                    "server-side apply needs apiVersion and kind");
        body = json_plain(obj);
        return patch_start(c, res, object_namespace(c, res, namespace, obj), name, subresource,
                           KUBE_PATCH_APPLY, body, strlen(body), &po, done, userdata, ret, ret_err);
}

int kube_apply_object(kube_client *c, const kube_resource *res, const char *namespace,
                      json_object *obj, const char *subresource, const char *field_manager,
                      bool force, kube_done_fn done, void *userdata, kube_request **ret) {
        return apply_start(c, res, namespace, obj, subresource, field_manager, force, done,
                           userdata, ret, NULL);
}

int kube_apply_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                           json_object *obj, const char *subresource, const char *field_manager,
                           bool force, json_object **ret, err_info *ret_err) {
        sync_state s = SYNC_STATE_INIT;
        kube_request *req = NULL;

        if (!c)
                return -EINVAL;
        return sync_wait(c,
                         apply_start(c, res, namespace, obj, subresource, field_manager, force,
                                     on_sync_done, &s, &req, ret_err),
                         req, &s, ret, ret_err);
}
