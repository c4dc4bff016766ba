/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A small Kubernetes API client on the project's event loop (sd-event +
 * libcurl multi, see http.h): configuration (kubeconfig or in-cluster), typed
 * requests on any resource, and a watch modelled on client-go's reflector
 * with a local store. See docs/kube-client.md for the design.
 *
 * Conventions (as everywhere in lib/): functions return 0 or a negative errno
 * (mapping in err.h / docs/errors.md); details come back through an optional
 * `err_info *ret_err`; out-parameters are written only on success.
 *
 * Asynchronous calls take a kube_done_fn. It is called exactly once, from the
 * event loop, if and only if the starting function returned 0 — never from
 * inside the starting function — unless the request is cancelled first. The
 * *_sync() variants run the client's event loop until the request finishes;
 * they are for start-up code and tests and must not be called from inside an
 * event loop callback.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "err.h"
#include "http.h"
#include "macro.h"

/* ---- Configuration ------------------------------------------------------ */

#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* Where and how to connect. All strings are owned by the struct and freed by
 * kube_config_free(); the client copies what it needs, so a config can be
 * freed once a client was made from it. */
typedef struct kube_config {
        char *server;                  /* "https://host:port[/prefix]", no trailing "/" */
        char *ca_file;                 /* PEM file of CAs to trust, or NULL */
        char *ca_pem;                  /* PEM blob of CAs (decoded certificate-authority-data) */
        char *cert_file;               /* client certificate (PEM file) */
        char *key_file;                /* client key (PEM file) */
        char *cert_pem;                /* client certificate as a PEM blob */
        char *key_pem;                 /* client key as a PEM blob */
        char *token;                   /* bearer token, or NULL */
        char *token_file;              /* bearer token file, re-read periodically and after a 401 */
        bool insecure_skip_tls_verify; /* only when the kubeconfig says so */
        char *namespace; /* the context's namespace, or the pod's; "default" when unset */
        char *context;   /* the kubeconfig context used; NULL in-cluster */
        char *source;    /* the file the config came from, for messages */
} kube_config;

kube_config *kube_config_free(kube_config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(kube_config *, kube_config_free);

/* Parses a kubeconfig held in memory. @filename names it in messages and its
 * directory resolves relative file paths (certificate-authority,
 * client-certificate, client-key, tokenFile). @context overrides
 * current-context when non-NULL. Referenced files are not read, except that a
 * tokenFile must be readable (its token is loaded now). Rejects (with
 * "FILE:LINE:COL: field: problem" in @ret_err->message): malformed YAML
 * (-EBADMSG), no current-context and no @context, a context, cluster or user
 * that is not defined, a cluster without server, a server that is not an
 * http(s) URL, bad base64 or non-PEM *-data, a client certificate without its
 * key, exec/auth-provider credentials (unsupported) (-EINVAL). */
int kube_config_parse_kubeconfig(const char *data, size_t len, const char *filename,
                                 const char *context, kube_config **ret, err_info *ret_err);

/* Reads and parses the kubeconfig at @path (at most 4 MiB). -ENOENT when it is
 * missing, else as kube_config_parse_kubeconfig(). */
int kube_config_load_kubeconfig(const char *path, const char *context, kube_config **ret,
                                err_info *ret_err);

/* In-cluster configuration: server from $KUBERNETES_SERVICE_HOST and
 * $KUBERNETES_SERVICE_PORT, and from @sa_dir (NULL: KUBE_SA_DIR) the token
 * file "token" (must be readable now; re-read by the client every 60 s and
 * after a 401), "ca.crt" (must exist) and "namespace" (optional). -ENOENT when
 * the variables are unset or a required file is missing. */
int kube_config_load_incluster(const char *sa_dir, kube_config **ret, err_info *ret_err);

/* The first file of $KUBECONFIG when set, else in-cluster when
 * $KUBERNETES_SERVICE_HOST is set, else ~/.kube/config. */
int kube_config_load_default(const char *context, kube_config **ret, err_info *ret_err);

/* ---- Resources ---------------------------------------------------------- */

/* Names a resource type, so any kind works with the same calls. Strings are
 * borrowed and must outlive every call and watch that uses the descriptor
 * (string literals in practice). */
typedef struct kube_resource {
        const char *group;    /* "" or NULL for the core group ("/api/v1") */
        const char *version;  /* "v1" */
        const char *resource; /* lowercase plural: "configmaps" */
        bool namespaced;
} kube_resource;

extern const kube_resource KUBE_RESOURCE_NAMESPACES;
extern const kube_resource KUBE_RESOURCE_NODES;
extern const kube_resource KUBE_RESOURCE_CONFIGMAPS;
extern const kube_resource KUBE_RESOURCE_SECRETS;
extern const kube_resource KUBE_RESOURCE_SERVICEACCOUNTS;
extern const kube_resource KUBE_RESOURCE_PODS;
extern const kube_resource KUBE_RESOURCE_EVENTS;
extern const kube_resource KUBE_RESOURCE_LEASES;       /* coordination.k8s.io/v1 */
extern const kube_resource KUBE_RESOURCE_ROLES;        /* rbac.authorization.k8s.io/v1 */
extern const kube_resource KUBE_RESOURCE_ROLEBINDINGS; /* rbac.authorization.k8s.io/v1 */
extern const kube_resource KUBE_RESOURCE_CRDS;         /* apiextensions.k8s.io/v1 */

/* Builds the URL path of a resource: "/api/v1/namespaces/NS/configmaps/NAME/status"
 * or "/apis/G/V/...". @namespace is required for a named object of a
 * namespaced resource; NULL for a namespaced collection means all namespaces;
 * it is ignored for cluster-scoped resources. @name and @subresource are
 * optional (a subresource needs a name). Segments are percent-encoded; names
 * containing "/" or equal to "." or ".." are rejected (-EINVAL). The caller
 * frees *@ret. */
int kube_resource_path(const kube_resource *res, const char *namespace, const char *name,
                       const char *subresource, char **ret);

/* The store key of @obj: "namespace/name", or "name" for cluster-scoped
 * objects (client-go's MetaNamespaceKeyFunc). -EINVAL without metadata.name. */
int kube_object_key(json_object *obj, char **ret);

/* ---- Status ------------------------------------------------------------- */

/* Turns an error response into a negative errno (err_from_http_status() with
 * the Status reason) and fills @ret_err: http_status, reason, message (the
 * Status message; for a body that is not a Status, "HTTP 502: non-JSON
 * response body: <first 160 bytes, control characters escaped>"), and
 * retry_after_sec from Status.details.retryAfterSeconds (-1 when absent).
 * A 2xx status returns 0. Never fails on bad input. */
int kube_status_parse(long http_status, const char *body, size_t body_len, err_info *ret_err);

/* The same for a parsed Status object (a watch ERROR event). Its "code"
 * overrides @http_status when present; a Status without a usable code and
 * reason maps to -EPROTO. */
int kube_status_from_object(json_object *status, long http_status, err_info *ret_err);

/* ---- Client ------------------------------------------------------------- */

typedef struct kube_client kube_client;
typedef struct kube_request kube_request;

#define KUBE_DEFAULT_QPS                  20.0
#define KUBE_DEFAULT_BURST                30
#define KUBE_DEFAULT_TIMEOUT_USEC         (60 * USEC_PER_SEC)
#define KUBE_DEFAULT_CONNECT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define KUBE_TOKEN_RELOAD_USEC            (60 * USEC_PER_SEC)

typedef struct kube_client_opts {
        double qps;                    /* 0: KUBE_DEFAULT_QPS; < 0: no limit */
        unsigned burst;                /* 0: KUBE_DEFAULT_BURST */
        uint64_t timeout_usec;         /* per request (not watches); 0: 60 s */
        uint64_t connect_timeout_usec; /* 0: 10 s */
        uint64_t token_reload_usec;    /* token file re-read interval; 0: 60 s */
        const char *user_agent;        /* NULL: "ballast/VERSION" */
} kube_client_opts;

/* Creates a client for @cfg (copied) on event loop @e (a reference is taken).
 * @opts may be NULL for the defaults. -EINVAL for a config without server. */
int kube_client_new(sd_event *e, const kube_config *cfg, const kube_client_opts *opts,
                    kube_client **ret);

/* The same over an existing HTTP client, e.g. one from http_client_new_fake()
 * (the test seam). Takes ownership of @http, also on failure. */
int kube_client_new_with_http(sd_event *e, http_client *http, const kube_config *cfg,
                              const kube_client_opts *opts, kube_client **ret);

/* Cancels every pending request (their callbacks are not called) and frees
 * the client. Free all watches of the client first. NULL is allowed. */
kube_client *kube_client_free(kube_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(kube_client *, kube_client_free);

/* Borrowed; valid while the client lives. */
sd_event *kube_client_get_event(kube_client *c);
const char *kube_client_get_namespace(kube_client *c); /* the config's namespace */

typedef struct kube_client_stats {
        uint64_t requests;      /* HTTP requests sent (retries and pages count) */
        uint64_t throttled;     /* requests that had to wait for the rate limiter */
        uint64_t token_reloads; /* token file reads after the first */
        uint64_t auth_retries;  /* requests retried after a 401 */
        /* requests by verb: GET (get and list), watch (a streamed GET), POST,
         * PUT, PATCH, DELETE */
        uint64_t gets, watches, posts, puts, patches, deletes;
        /* every HTTP exchange (each attempt, list page and watch) by the
         * status it ended with; n[0]: no response */
        http_code_counts codes;
} kube_client_stats;
void kube_client_get_stats(const kube_client *c, kube_client_stats *ret);

/* Completion of an asynchronous request. @r is 0 or a negative errno; @obj is
 * the decoded response body (borrowed for the call: json_object_get() it to
 * keep it; NULL for an empty body or on failure); @err has the details on
 * failure (borrowed). The request handle is gone once this is called. */
typedef void (*kube_done_fn)(kube_client *c, int r, json_object *obj, const err_info *err,
                             void *userdata);

/* Cancels a request that has not completed; its callback is not called.
 * NULL is fine. Not from inside that request's own callback. */
void kube_request_cancel(kube_request *req);

/* A raw request in Kubernetes terms. Everything is borrowed for the call. */
typedef struct kube_call {
        const char *method;            /* "GET" when NULL */
        const kube_resource *resource; /* required */
        const char *namespace;         /* see kube_resource_path() */
        const char *name;              /* NULL: the collection */
        const char *subresource;       /* "status", "token", ... */
        const char *query;             /* extra query, already escaped, without "?" */
        const char *content_type;      /* with a body; NULL: application/json */
        const char *body;              /* copied */
        size_t body_len;
} kube_call;

int kube_call_start(kube_client *c, const kube_call *call, kube_done_fn done, void *userdata,
                    kube_request **ret);
/* On success *@ret (if non-NULL) owns the decoded body (NULL for an empty one). */
int kube_call_run(kube_client *c, const kube_call *call, json_object **ret, err_info *ret_err);

/* GET one object (or a subresource of it, e.g. "status"). */
int kube_get_object(kube_client *c, const kube_resource *res, const char *namespace,
                    const char *name, const char *subresource, kube_done_fn done, void *userdata,
                    kube_request **ret);
int kube_get_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                         const char *name, const char *subresource, json_object **ret,
                         err_info *ret_err);

typedef struct kube_list_opts {
        const char *label_selector;
        const char *field_selector;
        const char *resource_version; /* NULL: a consistent read; "0": any (watch cache) */
        unsigned limit;               /* page size; 0: one request */
} kube_list_opts;

/* Lists a collection (@namespace NULL: all namespaces), following "continue"
 * page by page and accumulating the items. The result is
 * {"apiVersion","kind":"<Kind>List","metadata":{"resourceVersion"},"items":[...]}
 * with each item's apiVersion and kind filled in. A continue token that
 * expired (410) restarts the list once without pagination, as client-go's
 * pager does. @opts may be NULL. */
int kube_list_objects(kube_client *c, const kube_resource *res, const char *namespace,
                      const kube_list_opts *opts, kube_done_fn done, void *userdata,
                      kube_request **ret);
int kube_list_objects_sync(kube_client *c, const kube_resource *res, const char *namespace,
                           const kube_list_opts *opts, json_object **ret, err_info *ret_err);

/* POST @obj (borrowed) to its collection. @namespace NULL: the object's
 * metadata.namespace. */
int kube_create_object(kube_client *c, const kube_resource *res, const char *namespace,
                       json_object *obj, kube_done_fn done, void *userdata, kube_request **ret);
int kube_create_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                            json_object *obj, json_object **ret, err_info *ret_err);

/* PUT @obj (borrowed) at metadata.name, or at its @subresource ("status").
 * The server rejects it with -ESTALE (reason Conflict) when
 * metadata.resourceVersion is set and stale. */
int kube_update_object(kube_client *c, const kube_resource *res, const char *namespace,
                       json_object *obj, const char *subresource, kube_done_fn done, void *userdata,
                       kube_request **ret);
int kube_update_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                            json_object *obj, const char *subresource, json_object **ret,
                            err_info *ret_err);

typedef struct kube_delete_opts {
        const char *uid;              /* precondition: only this incarnation */
        const char *resource_version; /* precondition: only this version */
        const char *propagation;      /* "Foreground", "Background", "Orphan" or NULL */
} kube_delete_opts;

/* DELETE with optional preconditions (a failed one is -ESTALE). @opts may be
 * NULL. */
int kube_delete_object(kube_client *c, const kube_resource *res, const char *namespace,
                       const char *name, const kube_delete_opts *opts, kube_done_fn done,
                       void *userdata, kube_request **ret);
int kube_delete_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                            const char *name, const kube_delete_opts *opts, err_info *ret_err);

typedef enum kube_patch_type {
        KUBE_PATCH_MERGE,     /* application/merge-patch+json (RFC 7386) */
        KUBE_PATCH_JSON,      /* application/json-patch+json (RFC 6902) */
        KUBE_PATCH_APPLY,     /* application/apply-patch+yaml: server-side apply */
        KUBE_PATCH_STRATEGIC, /* application/strategic-merge-patch+json (built-in kinds) */
        _KUBE_PATCH_TYPE_MAX,
} kube_patch_type;

typedef struct kube_patch_opts {
        const char *field_manager; /* required for KUBE_PATCH_APPLY */
        bool force;                /* apply: take over conflicting fields */
} kube_patch_opts;

/* PATCH @name (or its @subresource) with the @patch_len bytes at @patch. */
int kube_patch_object(kube_client *c, const kube_resource *res, const char *namespace,
                      const char *name, const char *subresource, kube_patch_type type,
                      const char *patch, size_t patch_len, const kube_patch_opts *opts,
                      kube_done_fn done, void *userdata, kube_request **ret);
int kube_patch_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                           const char *name, const char *subresource, kube_patch_type type,
                           const char *patch, size_t patch_len, const kube_patch_opts *opts,
                           json_object **ret, err_info *ret_err);

/* Server-side apply of @obj (borrowed; must carry apiVersion, kind and
 * metadata.name) as @field_manager (required), at its @subresource when
 * non-NULL ("status"). @namespace NULL: the object's. JSON is valid YAML, so
 * the body is @obj serialized. */
int kube_apply_object(kube_client *c, const kube_resource *res, const char *namespace,
                      json_object *obj, const char *subresource, const char *field_manager,
                      bool force, kube_done_fn done, void *userdata, kube_request **ret);
int kube_apply_object_sync(kube_client *c, const kube_resource *res, const char *namespace,
                           json_object *obj, const char *subresource, const char *field_manager,
                           bool force, json_object **ret, err_info *ret_err);

/* ---- Watch stream parser ------------------------------------------------- */

typedef enum kube_event_type {
        KUBE_EVENT_ADDED,
        KUBE_EVENT_MODIFIED,
        KUBE_EVENT_DELETED,
        KUBE_EVENT_BOOKMARK,
        KUBE_EVENT_ERROR, /* the object is a Status */
        _KUBE_EVENT_TYPE_MAX,
} kube_event_type;

const char *kube_event_type_to_string(kube_event_type t);

#define KUBE_MAX_EVENT_SIZE_DEFAULT (16u * 1024u * 1024u)

typedef struct kube_stream kube_stream;

/* Called for each complete event. @object is borrowed for the call
 * (json_object_get() it to keep it). A negative return stops the stream:
 * kube_stream_feed() returns it. */
typedef int (*kube_stream_event_fn)(kube_event_type type, json_object *object, void *userdata);

/* A parser of the newline-delimited JSON of a watch response
 * ({"type":"ADDED","object":{...}} per line), fed in chunks of any size.
 * @max_event (0: KUBE_MAX_EVENT_SIZE_DEFAULT) caps one line. A bare Status
 * object (a line with kind "Status" and no type, as an error body is) is
 * reported as KUBE_EVENT_ERROR. */
int kube_stream_new(size_t max_event, kube_stream_event_fn cb, void *userdata, kube_stream **ret);
kube_stream *kube_stream_free(kube_stream *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(kube_stream *, kube_stream_free);

/* Feeds @len bytes. Returns 0, the callback's negative return, -EFBIG for a
 * line longer than the cap, or -EBADMSG for a line that is not a watch event
 * (with its line number and a snippet in @ret_err). After an error the stream
 * must be reset before it is fed again (-EBADFD otherwise). */
int kube_stream_feed(kube_stream *s, const void *data, size_t len, err_info *ret_err);

/* Ends the stream: -EBADMSG ("truncated") if an incomplete line is left,
 * except whitespace. */
int kube_stream_finish(kube_stream *s, err_info *ret_err);

/* Discards buffered bytes and any error; counters restart. */
void kube_stream_reset(kube_stream *s);

/* Events delivered since the last reset. */
uint64_t kube_stream_get_events(const kube_stream *s);

/* ---- Store -------------------------------------------------------------- */

typedef struct kube_store kube_store;

/* Returns a borrowed pointer to the object under @key ("namespace/name", or
 * "name" when cluster-scoped), or NULL. It stays valid until the store next
 * changes, i.e. until control returns to the event loop or the watch is
 * freed; json_object_get() it to keep it longer. In a compact store it is a
 * parsed copy that stays valid only until the next kube_store_get() on the
 * same store. Objects in the store must be treated as read-only. */
json_object *kube_store_get(kube_store *s, const char *key);
/* The same as a new reference (put it when done), in either kind of store. */
json_object *kube_store_ref(kube_store *s, const char *key);
bool kube_store_contains(kube_store *s, const char *key);
size_t kube_store_count(kube_store *s);

/* Makes @s keep objects as serialized JSON (about a tenth of json-c's
 * in-memory size) after passing each through @transform, if given, which
 * returns a new reference to what should be stored (for example the object
 * without fields its owner never reads; keep metadata.resourceVersion, the
 * watch compares it) or NULL on allocation failure. Readers then get parsed
 * copies. Call it while the store is empty (-EBUSY otherwise), e.g. right
 * after kube_watch_start(): the first list arrives from the event loop. */
typedef json_object *(*kube_store_transform_fn)(json_object *obj, void *userdata);
int kube_store_set_compact(kube_store *s, kube_store_transform_fn transform, void *userdata);

/* What a compact store holds: the bytes of its values as stored (deflated),
 * and in *@ret_text_bytes the length of their texts. 0 for a tree store. */
size_t kube_store_bytes(kube_store *s, size_t *ret_text_bytes);

/* Calls @fn for each object (in no particular order) until it returns
 * non-zero, which is then returned. @fn must not change the store (it cannot
 * run the event loop). */
int kube_store_foreach(kube_store *s, int (*fn)(const char *key, json_object *obj, void *userdata),
                       void *userdata);
/* The same for the keys alone (no parsing in a compact store). */
int kube_store_foreach_key(kube_store *s, int (*fn)(const char *key, void *userdata),
                           void *userdata);

/* For code that keeps a store of its own. kube_store_put() takes a reference
 * on @obj (the caller keeps its own) and returns the previous object (whose
 * reference now belongs to the caller) or NULL. kube_store_remove() returns the
 * removed object's reference, or NULL. */
int kube_store_new(kube_store **ret);
kube_store *kube_store_free(kube_store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(kube_store *, kube_store_free);
int kube_store_put(kube_store *s, const char *key, json_object *obj, json_object **ret_old);
json_object *kube_store_remove(kube_store *s, const char *key);

/* ---- Watch (reflector) --------------------------------------------------- */

typedef struct kube_watch kube_watch;

/* Callbacks run from the event loop, never from inside a libcurl callback, so
 * they may start requests, and may kube_watch_free() the watch. Objects are
 * borrowed for the call. */
typedef struct kube_watch_opts {
        const kube_resource *resource; /* required; borrowed for the watch's life */
        const char *namespace;         /* namespaced resources: NULL means all */
        const char *label_selector;    /* e.g. "app=ballast" */
        const char *field_selector;    /* e.g. "metadata.name=NODE" for one Node */
        unsigned page_size;            /* list page size; 0: unpaginated */
        size_t max_event_size;         /* 0: 16 MiB; bigger: error, restart the watch */
        uint64_t backoff_base_usec;    /* 0: 800 ms */
        uint64_t backoff_cap_usec;     /* 0: 30 s */
        /* benchmark baseline only: backoff without jitter, timeoutSeconds 300,
         * no resume splay */
        bool no_jitter;
        /* Relist with a streaming list (a WATCH with sendInitialEvents, served
         * from the watch cache: one request instead of LIST + WATCH); a server
         * that rejects it (400/422) gets LIST + WATCH for the watch's life. */
        bool streaming_list;
        /* After an outage (connection refused or timed out, 5xx, 429), come
         * back at a random point of this window, drawn once per outage and
         * repeated every window while the server stays away, instead of
         * backing off: a fleet's reconnections spread evenly over the window
         * after the server returns. 0: back off as usual. See
         * docs/kube-client.md. */
        uint64_t resume_splay_usec;

        void (*on_add)(kube_watch *w, json_object *obj, void *userdata);
        void (*on_update)(kube_watch *w, json_object *old_obj, json_object *obj, void *userdata);
        /* @obj is the last state known (the DELETED event's, or the store's
         * after a relist). */
        void (*on_delete)(kube_watch *w, json_object *obj, void *userdata);
        /* Once, after the first list has been applied to the store. */
        void (*on_synced)(kube_watch *w, void *userdata);
        /* Informational: each failed list or watch (the watch retries by
         * itself). @err is borrowed. */
        void (*on_error)(kube_watch *w, int r, const err_info *err, void *userdata);
        void *userdata;
} kube_watch_opts;

/* Starts listing and watching. Strings in @opts are copied. The client must
 * outlive the watch. The first list asks the watch cache
 * (resourceVersion=0; with streaming_list a consistent streaming list); the
 * watch then runs from the list's resourceVersion with bookmarks and a random
 * timeoutSeconds in [300, 600]. Failures back off (full jitter, reset after
 * 2 min healthy) and resume from the last resourceVersion (with
 * streaming_list, after an outage: a streaming list from it); 410 Gone
 * relists (a consistent read) and sends on_delete for objects that
 * disappeared; 429 waits for Retry-After (and, with resume_splay_usec, at
 * least until the splayed time). */
int kube_watch_start(kube_client *c, const kube_watch_opts *opts, kube_watch **ret);

/* Stops the watch and frees it and its store. No callback runs after this.
 * Allowed from inside the watch's own callbacks. NULL is allowed. */
kube_watch *kube_watch_free(kube_watch *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(kube_watch *, kube_watch_free);

bool kube_watch_is_synced(const kube_watch *w);
/* Borrowed, valid while the watch lives. */
kube_store *kube_watch_get_store(kube_watch *w);
/* The last resourceVersion seen ("" before the first list). Borrowed, valid
 * until the watch next handles an event. */
const char *kube_watch_get_resource_version(const kube_watch *w);

typedef struct kube_watch_stats {
        uint64_t lists;           /* lists applied to the store (LIST or streaming) */
        uint64_t streaming_lists; /* of which streaming lists (sendInitialEvents) */
        uint64_t outages;         /* outages begun (see resume_splay_usec) */
        uint64_t relists_gone;    /* relists caused by 410 Gone */
        uint64_t watches;         /* watch requests started (streaming lists too) */
        uint64_t events;          /* ADDED/MODIFIED/DELETED applied */
        uint64_t bookmarks;
        uint64_t failures;      /* failed lists/watches (each backs off) */
        uint64_t throttled;     /* 429s */
        uint64_t short_watches; /* watches that ended within 1 s without events */
        unsigned consecutive_failures;
        uint64_t last_delay_usec; /* the last wait scheduled before an attempt */
} kube_watch_stats;
void kube_watch_get_stats(const kube_watch *w, kube_watch_stats *ret);
