/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The on-disk cache. Layout (docs/agent-cache.md):
 *
 *   DIR/bundles/NS/NAME/state.json       the commit point for the bundle
 *   DIR/bundles/NS/NAME/REV-HEX.json     manifests, named by revision and digest
 *   DIR/node-labels.json                 the node's labels
 *   DIR/sources/SOURCE                   opaque per-source blobs (last index)
 *   DIR/quarantine/TIME-...              corrupt files, kept for a person to look at
 *
 * Every change is computed on a copy of the bundle's state, written with
 * fsx_write_atomic(), and only then swapped into memory, so a failed write
 * leaves both the disk and this process's view as they were.
 */

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "cache.h"
#include "fsx.h"
#include "jsonx.h"

#define STATE_FILE       "state.json"
#define STATE_FORMAT     1
#define LABELS_FILE      "node-labels.json"
#define MAX_PROBLEMS     64
#define TRASH_PREFIX     ".trash-"
#define TEMP_PREFIX      ".#" /* fsx_write_atomic()'s temporaries */
#define MANIFEST_NAME_SZ (20 + 1 + HASH_SHA256_HEX_LEN + 5 + 1)

struct cache {
        char *dir;
        int dir_fd; /* holds the flock */
        unsigned keep;
        cache_bundle **bundles; /* sorted by namespace, name */
        size_t n_bundles;
        char **problems;
        size_t n_problems;
};

/* ---- small helpers ------------------------------------------------------ */

static void rev_done(cache_rev *r) {
        free(r->uid);
        *r = (cache_rev){};
}

static cache_bundle *bundle_free(cache_bundle *b) {
        if (!b)
                return NULL;
        free(b->namespace);
        free(b->name);
        free(b->uid);
        rev_done(&b->highest);
        rev_done(&b->applied);
        rev_done(&b->lkg);
        for (size_t i = 0; i < b->n_revisions; i++)
                rev_done(&b->revisions[i]);
        free(b->revisions);
        for (size_t i = 0; i < b->n_failures; i++)
                free(b->failures[i].reason);
        free(b->failures);
        for (size_t i = 0; i < b->n_retired; i++)
                free(b->retired_uids[i]);
        free(b->retired_uids);
        free(b);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(cache_bundle *, bundle_free);

cache *cache_free(cache *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_bundles; i++)
                bundle_free(c->bundles[i]);
        free(c->bundles);
        cache_clear_problems(c);
        safe_close(c->dir_fd);
        free(c->dir);
        free(c);
        return NULL;
}

static void problem(cache *c, const char *fmt, ...) _printf_(2, 3);
static void problem(cache *c, const char *fmt, ...) {
        char *msg = NULL, **l;
        va_list ap;

        if (c->n_problems >= MAX_PROBLEMS)
                return;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg)
                return;
        l = realloc(c->problems, (c->n_problems + 1) * sizeof(char *));
        if (!l) {
                free(msg);
                return;
        }
        c->problems = l;
        c->problems[c->n_problems++] = msg;
}

size_t cache_get_problems(cache *c, char *const **ret) {
        if (ret)
                *ret = c->problems;
        return c->n_problems;
}

void cache_clear_problems(cache *c) {
        for (size_t i = 0; i < c->n_problems; i++)
                free(c->problems[i]);
        free(c->problems);
        c->problems = NULL;
        c->n_problems = 0;
}

const char *cache_get_dir(cache *c) {
        return c->dir;
}

static void manifest_file_name(int64_t revision, const char *digest,
                               char buf[static MANIFEST_NAME_SZ]) {
        snprintf(buf, MANIFEST_NAME_SZ, "%" PRIi64 "-%s.json", revision,
                 digest + BUNDLE_DIGEST_PREFIX_LEN);
}

/* Parses "REV-HEX.json"; false for anything else. */
static bool parse_manifest_file_name(const char *s, int64_t *ret_rev,
                                     char ret_digest[static BUNDLE_DIGEST_SIZE]) {
        const char *dash = strchr(s, '-');
        char hex[HASH_SHA256_HEX_LEN + 1];
        int64_t rev = 0;

        if (!dash || dash == s || dash - s > 18 || s[0] == '0')
                return false;
        for (const char *p = s; p < dash; p++) {
                if (*p < '0' || *p > '9')
                        return false;
                rev = rev * 10 + (*p - '0');
        }
        if (strlen(dash + 1) != HASH_SHA256_HEX_LEN + 5 || !streq(dash + 1 + 64, ".json"))
                return false;
        memcpy(hex, dash + 1, HASH_SHA256_HEX_LEN);
        hex[HASH_SHA256_HEX_LEN] = '\0';
        if (!hash_is_sha256_hex(hex))
                return false;
        *ret_rev = rev;
        snprintf(ret_digest, BUNDLE_DIGEST_SIZE, BUNDLE_DIGEST_PREFIX "%s", hex);
        return true;
}

/* A bundle's uid, or "" for a bundle whose manifest carries none. */
static bool is_uid_ok(const char *s) {
        return s && (!*s || bundle_is_uid(s));
}

static bool is_source_name(const char *s) {
        return bundle_is_reload_name(s); /* same shape: [a-z0-9-], 1..63 */
}

static int check_key(const char *ns, const char *name, err_info *e) {
        if (!manifest_is_dns_label(ns) || !manifest_is_dns_subdomain(name))
                return err_info_set(e, -EINVAL, "'%s/%s' is not a namespace/name pair of DNS names",
                                    strna(ns), strna(name));
        return 0;
}

/* mkdirat() @name in @dir_fd (fsyncing @dir_fd when it was created) and opens
 * it without following a symlink. */
static int mkdir_open(int dir_fd, const char *name, bool create) {
        int fd;

        if (create) {
                if (mkdirat(dir_fd, name, 0700) >= 0) {
                        int r = fsx_fsync_dir(dir_fd);

                        if (r < 0)
                                return r;
                } else if (errno != EEXIST)
                        return -errno;
        }
        fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

static int open_bundle_dir(cache *c, const char *ns, const char *name, bool create) {
        _cleanup_close_ int bundles = -1, nsfd = -1;

        bundles = mkdir_open(c->dir_fd, "bundles", create);
        if (bundles < 0)
                return bundles;
        nsfd = mkdir_open(bundles, ns, create);
        if (nsfd < 0)
                return nsfd;
        return mkdir_open(nsfd, name, create);
}

/* Moves @name in @dir_fd to DIR/quarantine/TIME-LABEL. Returns 0 or a
 * negative errno (the file then stays where it is). */
static int quarantine(cache *c, int dir_fd, const char *name, const char *label, char *ret_as,
                      size_t as_size) {
        _cleanup_close_ int q = -1;
        char as[NAME_MAX + 1];
        int r;

        q = mkdir_open(c->dir_fd, "quarantine", true);
        if (q < 0)
                return q;
        for (unsigned i = 0;; i++) {
                snprintf(as, sizeof(as), "%lld-%u-%.200s", (long long) time(NULL), i, label);
                if (faccessat(q, as, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
                        break;
                if (i > 1000)
                        return -EEXIST;
        }
        if (renameat(dir_fd, name, q, as) < 0)
                return -errno;
        r = fsx_fsync_dir(q);
        if (r >= 0)
                r = fsx_fsync_dir(dir_fd);
        if (ret_as)
                snprintf(ret_as, as_size, "quarantine/%s", as);
        return r;
}

/* ---- state.json <-> cache_bundle ---------------------------------------- */

static json_object *rev_to_json(const cache_rev *r, bool with_uid, bool with_at) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "revision", json_object_new_int64(r->revision));
        json_object_object_add(o, "digest", json_object_new_string(r->digest));
        if (with_uid)
                json_object_object_add(o, "uid", json_object_new_string(strna(r->uid)));
        if (with_at)
                json_object_object_add(o, "at", json_object_new_int64(r->at));
        return o;
}

static int state_to_json(const cache_bundle *b, char **ret, size_t *ret_len) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *ident, *revs, *fails, *retired;

        if (!o)
                return -ENOMEM;
        ident = json_object_new_object();
        json_object_object_add(ident, "namespace", json_object_new_string(b->namespace));
        json_object_object_add(ident, "name", json_object_new_string(b->name));
        json_object_object_add(o, "bundle", ident);
        json_object_object_add(o, "format", json_object_new_int(STATE_FORMAT));
        json_object_object_add(o, "uid", json_object_new_string(b->uid));
        json_object_object_add(o, "highest", rev_to_json(&b->highest, false, false));
        if (b->applied.revision > 0)
                json_object_object_add(o, "applied", rev_to_json(&b->applied, true, true));
        if (b->lkg.revision > 0)
                json_object_object_add(o, "lastKnownGood", rev_to_json(&b->lkg, true, true));
        revs = json_object_new_array();
        for (size_t i = 0; i < b->n_revisions; i++)
                json_object_array_add(revs, rev_to_json(&b->revisions[i], true, false));
        json_object_object_add(o, "revisions", revs);
        fails = json_object_new_array();
        for (size_t i = 0; i < b->n_failures; i++) {
                json_object *f = json_object_new_object();

                json_object_object_add(f, "revision",
                                       json_object_new_int64(b->failures[i].revision));
                json_object_object_add(f, "digest", json_object_new_string(b->failures[i].digest));
                json_object_object_add(f, "reason", json_object_new_string(b->failures[i].reason));
                json_object_object_add(f, "at", json_object_new_int64(b->failures[i].at));
                json_object_array_add(fails, f);
        }
        json_object_object_add(o, "failed", fails);
        retired = json_object_new_array();
        for (size_t i = 0; i < b->n_retired; i++)
                json_object_array_add(retired, json_object_new_string(b->retired_uids[i]));
        json_object_object_add(o, "retiredUids", retired);
        /* json-c's constructors return NULL on OOM and the adds then drop
         * them; jsonx_to_canonical() of a tree with holes still works, so
         * check the result parses back in state_from_json() via clone. */
        return jsonx_to_canonical(o, ret, ret_len);
}

/* Reads a revision record. @need_uid/@need_at: whether the fields must be there. */
static bool rev_from_json(json_object *o, bool need_uid, bool need_at, bool allow_zero,
                          cache_rev *ret) {
        const char *digest = jsonx_get_string(o, "digest"), *uid = jsonx_get_string(o, "uid");
        json_object *v;

        if (!json_object_is_type(o, json_type_object))
                return false;
        *ret = (cache_rev){};
        if (!json_object_object_get_ex(o, "revision", &v) || !json_object_is_type(v, json_type_int))
                return false;
        ret->revision = json_object_get_int64(v);
        if (ret->revision < (allow_zero ? 0 : 1))
                return false;
        if (ret->revision > 0 && !bundle_is_digest(digest))
                return false;
        if (ret->revision == 0 && digest && *digest && !bundle_is_digest(digest))
                return false;
        snprintf(ret->digest, sizeof(ret->digest), "%s", digest ? digest : "");
        if (need_uid) {
                if (!is_uid_ok(uid))
                        return false;
                ret->uid = strdup(uid);
                if (!ret->uid)
                        return false;
        }
        if (need_at) {
                if (!json_object_object_get_ex(o, "at", &v) ||
                    !json_object_is_type(v, json_type_int))
                        return false;
                ret->at = json_object_get_int64(v);
        }
        return true;
}

/* Builds a bundle from state.json bytes. Returns -EBADMSG with a reason in
 * @why for anything unexpected. */
static int state_from_json(const char *data, size_t len, const char *ns, const char *name,
                           cache_bundle **ret, char *why, size_t why_size) {
        _cleanup_(bundle_freep) cache_bundle *b = NULL;
        _cleanup_json_ json_object *o = NULL;
        json_object *v, *arr;
        const char *uid;
        err_info e;

        err_info_clear(&e);
        if (jsonx_parse(data, len, &o, &e) < 0) {
                snprintf(why, why_size, "not valid JSON: %.200s", e.message);
                return -EBADMSG;
        }
#define BAD(...)                                                                                   \
        do {                                                                                       \
                snprintf(why, why_size, __VA_ARGS__);                                              \
                return -EBADMSG;                                                                   \
        } while (0)
        if (!json_object_is_type(o, json_type_object))
                BAD("not a JSON object");
        if (jsonx_get_int(o, "format", 0) != STATE_FORMAT)
                BAD("format is not %d", STATE_FORMAT);
        if (!streq(strna(jsonx_get_string(o, "bundle.namespace")), ns) ||
            !streq(strna(jsonx_get_string(o, "bundle.name")), name))
                BAD("bundle is not %s/%s", ns, name);
        uid = jsonx_get_string(o, "uid");
        if (!is_uid_ok(uid))
                BAD("uid is missing or invalid");

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->namespace = strdup(ns);
        b->name = strdup(name);
        b->uid = strdup(uid);
        if (!b->namespace || !b->name || !b->uid)
                return -ENOMEM;
        if (!rev_from_json(jsonx_get(o, "highest"), false, false, true, &b->highest))
                BAD("highest is missing or invalid");
        b->highest.uid = strdup(uid);
        if (!b->highest.uid)
                return -ENOMEM;
        if ((v = jsonx_get(o, "applied")) && !rev_from_json(v, true, true, false, &b->applied))
                BAD("applied is invalid");
        if ((v = jsonx_get(o, "lastKnownGood")) && !rev_from_json(v, true, true, false, &b->lkg))
                BAD("lastKnownGood is invalid");

        arr = jsonx_get(o, "revisions");
        if (!json_object_is_type(arr, json_type_array))
                BAD("revisions is missing");
        b->revisions = calloc(json_object_array_length(arr) + 1, sizeof(cache_rev));
        if (!b->revisions)
                return -ENOMEM;
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                cache_rev *r = &b->revisions[b->n_revisions];

                if (!rev_from_json(json_object_array_get_idx(arr, i), true, false, false, r))
                        BAD("revisions[%zu] is invalid", i);
                b->n_revisions++;
                if (i > 0 && r[-1].revision > r->revision)
                        BAD("revisions are not in ascending order");
                for (size_t j = 0; j + 1 < b->n_revisions; j++)
                        if (streq(b->revisions[j].digest, r->digest))
                                BAD("revisions[%zu] appears twice", i);
        }

        arr = jsonx_get(o, "failed");
        if (!json_object_is_type(arr, json_type_array))
                BAD("failed is missing");
        b->failures = calloc(json_object_array_length(arr) + 1, sizeof(cache_failure));
        if (!b->failures)
                return -ENOMEM;
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                json_object *f = json_object_array_get_idx(arr, i);
                cache_failure *x = &b->failures[b->n_failures];
                const char *reason = jsonx_get_string(f, "reason");
                const char *digest = jsonx_get_string(f, "digest");

                x->revision = jsonx_get_int(f, "revision", 0);
                x->at = jsonx_get_int(f, "at", -1);
                if (x->revision < 1 || x->at < 0 || !reason || !bundle_is_digest(digest))
                        BAD("failed[%zu] is invalid", i);
                snprintf(x->digest, sizeof(x->digest), "%s", digest);
                x->reason = strdup(reason);
                if (!x->reason)
                        return -ENOMEM;
                b->n_failures++;
        }

        arr = jsonx_get(o, "retiredUids");
        if (!json_object_is_type(arr, json_type_array))
                BAD("retiredUids is missing");
        b->retired_uids = calloc(json_object_array_length(arr) + 1, sizeof(char *));
        if (!b->retired_uids)
                return -ENOMEM;
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                json_object *u = json_object_array_get_idx(arr, i);

                if (!json_object_is_type(u, json_type_string) ||
                    !is_uid_ok(json_object_get_string(u)))
                        BAD("retiredUids[%zu] is invalid", i);
                b->retired_uids[b->n_retired] = strdup(json_object_get_string(u));
                if (!b->retired_uids[b->n_retired])
                        return -ENOMEM;
                b->n_retired++;
        }
#undef BAD
        *ret = TAKE_PTR(b);
        return 0;
}

/* A deep copy through the serialized form: the one code path that writes
 * state.json is the one that copies it, so a copy is always loadable. */
static int bundle_clone(const cache_bundle *b, cache_bundle **ret) {
        _cleanup_free_ char *data = NULL;
        char why[256];
        size_t len;
        int r;

        r = state_to_json(b, &data, &len);
        if (r < 0)
                return r;
        r = state_from_json(data, len, b->namespace, b->name, ret, why, sizeof(why));
        return r == -EBADMSG ? -ENOMEM : r; /* json-c dropped a node: out of memory */
}

static int bundle_new(const char *ns, const char *name, const char *uid, cache_bundle **ret) {
        _cleanup_(bundle_freep) cache_bundle *b = calloc(1, sizeof(*b));

        if (!b)
                return -ENOMEM;
        b->namespace = strdup(ns);
        b->name = strdup(name);
        b->uid = strdup(uid);
        b->highest.uid = strdup(uid);
        if (!b->namespace || !b->name || !b->uid || !b->highest.uid)
                return -ENOMEM;
        *ret = TAKE_PTR(b);
        return 0;
}

static bool rev_is(const cache_rev *r, int64_t revision, const char *digest) {
        return r->revision == revision && r->revision > 0 && streq(r->digest, digest);
}

static ssize_t bundle_find_rev(const cache_bundle *b, int64_t revision, const char *digest) {
        for (size_t i = 0; i < b->n_revisions; i++)
                if (rev_is(&b->revisions[i], revision, digest))
                        return (ssize_t) i;
        return -1;
}

static void bundle_drop_rev(cache_bundle *b, size_t i) {
        rev_done(&b->revisions[i]);
        memmove(&b->revisions[i], &b->revisions[i + 1],
                (b->n_revisions - i - 1) * sizeof(cache_rev));
        b->n_revisions--;
}

/* ---- the in-memory index ------------------------------------------------ */

static int bundle_key_cmp(const char *ns, const char *name, const cache_bundle *b) {
        int k = strcmp(ns, b->namespace);

        return k != 0 ? k : strcmp(name, b->name);
}

/* Index of @ns/@name, or -(insertion point) - 1. */
static ssize_t index_find(cache *c, const char *ns, const char *name) {
        size_t lo = 0, hi = c->n_bundles;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int k = bundle_key_cmp(ns, name, c->bundles[mid]);

                if (k == 0)
                        return (ssize_t) mid;
                if (k < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return -(ssize_t) lo - 1;
}

/* Puts @b (taken) in the index, replacing the entry of the same key. */
static int index_put(cache *c, cache_bundle *b) {
        ssize_t i = index_find(c, b->namespace, b->name);
        cache_bundle **l;
        size_t at;

        if (i >= 0) {
                bundle_free(c->bundles[i]);
                c->bundles[i] = b;
                return 0;
        }
        l = realloc(c->bundles, (c->n_bundles + 1) * sizeof(cache_bundle *));
        if (!l) {
                bundle_free(b);
                return -ENOMEM;
        }
        c->bundles = l;
        at = (size_t) (-i - 1);
        memmove(&c->bundles[at + 1], &c->bundles[at], (c->n_bundles - at) * sizeof(cache_bundle *));
        c->bundles[at] = b;
        c->n_bundles++;
        return 0;
}

static void index_drop(cache *c, const char *ns, const char *name) {
        ssize_t i = index_find(c, ns, name);

        if (i < 0)
                return;
        bundle_free(c->bundles[i]);
        memmove(&c->bundles[i], &c->bundles[i + 1],
                (c->n_bundles - (size_t) i - 1) * sizeof(cache_bundle *));
        c->n_bundles--;
}

const cache_bundle *cache_get_bundle(cache *c, const char *ns, const char *name) {
        ssize_t i;

        if (!c || !ns || !name)
                return NULL;
        i = index_find(c, ns, name);
        return i >= 0 ? c->bundles[i] : NULL;
}

size_t cache_count_bundles(cache *c) {
        return c->n_bundles;
}

const cache_bundle *cache_get_bundle_at(cache *c, size_t i) {
        return i < c->n_bundles ? c->bundles[i] : NULL;
}

/* ---- writing ------------------------------------------------------------ */

/* Drops from @b every revision that is not among the c->keep highest of the
 * current lineage and is neither applied nor last-known-good; their file
 * names go to @victims (up to @max). Returns how many. */
static size_t bundle_gc(cache *c, cache_bundle *b, char (*victims)[MANIFEST_NAME_SZ], size_t max) {
        size_t n = 0, kept_current = 0;

        /* Ascending by revision, so walk from the top. */
        for (size_t k = b->n_revisions; k > 0; k--) {
                cache_rev *r = &b->revisions[k - 1];
                bool current = streq(r->uid, b->uid);
                bool pinned = rev_is(&b->applied, r->revision, r->digest) ||
                              rev_is(&b->lkg, r->revision, r->digest);

                if (current && kept_current < c->keep) {
                        kept_current++;
                        continue;
                }
                if (pinned || n >= max)
                        continue;
                manifest_file_name(r->revision, r->digest, victims[n++]);
                bundle_drop_rev(b, k - 1);
        }
        return n;
}

/* Garbage-collects @nb, writes it as state.json in @bundle_fd and puts it
 * in the index (takes @nb in every case). Only unreferenced files are
 * unlinked, and only after state.json no longer lists them. */
static int bundle_store(cache *c, int bundle_fd, cache_bundle *nb, err_info *e) {
        _cleanup_(bundle_freep) cache_bundle *b = nb;
        _cleanup_free_ char *data = NULL;
        char victims[64][MANIFEST_NAME_SZ];
        size_t n_victims, len;
        int r;

        n_victims = bundle_gc(c, b, victims, ELEMENTSOF(victims));
        r = state_to_json(b, &data, &len);
        if (r < 0)
                return r;
        {
                /* Never write what would not load back: json-c constructors
                 * that failed for lack of memory leave holes in the tree. */
                _cleanup_(bundle_freep) cache_bundle *check = NULL;
                char why[256];

                if (state_from_json(data, len, b->namespace, b->name, &check, why, sizeof(why)) < 0)
                        return -ENOMEM;
        }
        r = fsx_write_atomic(bundle_fd, STATE_FILE, data, len, 0600);
        if (r < 0)
                return err_info_set(e, r, "cache %s: cannot write bundles/%s/%s/" STATE_FILE ": %s",
                                    c->dir, b->namespace, b->name, strerror(-r));
        for (size_t i = 0; i < n_victims; i++)
                (void) unlinkat(bundle_fd, victims[i], 0);
        if (n_victims > 0)
                (void) fsx_fsync_dir(bundle_fd);
        return index_put(c, TAKE_PTR(b));
}

static int bundle_update(cache *c, cache_bundle *nb, err_info *e) {
        _cleanup_(bundle_freep) cache_bundle *b = nb;
        _cleanup_close_ int fd = -1;

        fd = open_bundle_dir(c, b->namespace, b->name, true);
        if (fd < 0)
                return err_info_set(e, fd, "cache %s: cannot open bundles/%s/%s: %s", c->dir,
                                    b->namespace, b->name, strerror(-fd));
        return bundle_store(c, fd, TAKE_PTR(b), e);
}

int cache_check_revision(cache *c, const char *ns, const char *name, const char *uid,
                         int64_t revision, const char *digest, err_info *ret_err) {
        const cache_bundle *b;
        int r;

        r = check_key(ns, name, ret_err);
        if (r < 0)
                return r;
        if (!uid || !is_uid_ok(uid) || revision < 1 || !bundle_is_digest(digest))
                return err_info_set(ret_err, -EINVAL,
                                    "bundle %s/%s: invalid uid, revision or digest", ns, name);
        b = cache_get_bundle(c, ns, name);
        if (!b)
                return 0;
        for (size_t i = 0; i < b->n_retired; i++)
                if (streq(b->retired_uids[i], uid))
                        return err_info_set(ret_err, -ESTALE,
                                            "bundle %s/%s revision %" PRIi64
                                            ": uid %s belongs to a deleted incarnation of the "
                                            "bundle (now %s)",
                                            ns, name, revision, uid, b->uid);
        if (!streq(uid, b->uid))
                return 0; /* a new lineage */
        if (bundle_find_rev(b, revision, digest) >= 0)
                return -EALREADY;
        /* Refetching a lost applied or last-known-good manifest is not going
         * back: it is the state we are in. */
        if ((rev_is(&b->applied, revision, digest) && streq(b->applied.uid, uid)) ||
            (rev_is(&b->lkg, revision, digest) && streq(b->lkg.uid, uid)))
                return 0;
        if (revision < b->highest.revision)
                return err_info_set(ret_err, -ESTALE,
                                    "bundle %s/%s revision %" PRIi64
                                    " is older than revision %" PRIi64 " the cache holds",
                                    ns, name, revision, b->highest.revision);
        if (revision == b->highest.revision && !streq(digest, b->highest.digest))
                return err_info_set(ret_err, -ESTALE,
                                    "bundle %s/%s revision %" PRIi64
                                    " is cached with digest %s, refusing %s",
                                    ns, name, revision, b->highest.digest, digest);
        return 0;
}

static int rev_set(cache_rev *r, int64_t revision, const char *digest, const char *uid,
                   int64_t at) {
        char *u = strdup(uid);

        if (!u)
                return -ENOMEM;
        rev_done(r);
        r->revision = revision;
        snprintf(r->digest, sizeof(r->digest), "%s", digest);
        r->uid = u;
        r->at = at;
        return 0;
}

int cache_commit(cache *c, const manifest *m, err_info *ret_err) {
        _cleanup_(bundle_freep) cache_bundle *nb = NULL;
        _cleanup_close_ int fd = -1;
        const cache_bundle *b;
        char fname[MANIFEST_NAME_SZ];
        size_t at;
        int r;

        if (!c || !m)
                return -EINVAL;
        r = cache_check_revision(c, m->namespace, m->name, m->uid, m->revision, m->digest, ret_err);
        if (r == -EALREADY)
                return 0;
        if (r < 0)
                return r;

        b = cache_get_bundle(c, m->namespace, m->name);
        if (!b)
                r = bundle_new(m->namespace, m->name, m->uid, &nb);
        else
                r = bundle_clone(b, &nb);
        if (r >= 0 && b && !streq(b->uid, m->uid)) {
                /* A new lineage: the old uid is retired for good and its
                 * failures forgotten. Its applied and last-known-good stay
                 * pinned (they are what is on the node) until replaced; its
                 * other revisions go at the GC below. */
                size_t drop;
                char **l;

                for (size_t i = 0; i < nb->n_failures; i++)
                        free(nb->failures[i].reason);
                nb->n_failures = 0;
                l = realloc(nb->retired_uids, (nb->n_retired + 1) * sizeof(char *));
                if (!l)
                        return -ENOMEM;
                nb->retired_uids = l;
                l[nb->n_retired] = TAKE_PTR(nb->uid);
                nb->n_retired++;
                drop = nb->n_retired > CACHE_MAX_RETIRED ? nb->n_retired - CACHE_MAX_RETIRED : 0;
                for (size_t i = 0; i < drop; i++)
                        free(l[i]);
                memmove(l, l + drop, (nb->n_retired - drop) * sizeof(char *));
                nb->n_retired -= drop;
                nb->uid = strdup(m->uid);
                if (!nb->uid)
                        return -ENOMEM;
                r = rev_set(&nb->highest, 0, "", m->uid, 0);
        }
        if (r < 0)
                return r;

        /* The manifest file first: until state.json lists it, it is an orphan
         * that the next cache_open() removes. */
        fd = open_bundle_dir(c, m->namespace, m->name, true);
        if (fd < 0)
                return err_info_set(ret_err, fd, "cache %s: cannot create bundles/%s/%s: %s",
                                    c->dir, m->namespace, m->name, strerror(-fd));
        manifest_file_name(m->revision, m->digest, fname);
        r = fsx_write_atomic(fd, fname, m->bytes, m->n_bytes, 0600);
        if (r < 0)
                return err_info_set(ret_err, r, "cache %s: cannot write bundles/%s/%s/%s: %s",
                                    c->dir, m->namespace, m->name, fname, strerror(-r));

        if (bundle_find_rev(nb, m->revision, m->digest) < 0) {
                cache_rev *l = realloc(nb->revisions, (nb->n_revisions + 1) * sizeof(cache_rev));

                if (!l)
                        return -ENOMEM;
                nb->revisions = l;
                /* Keep ascending order (stable for equal revisions of other lineages). */
                for (at = nb->n_revisions; at > 0 && nb->revisions[at - 1].revision > m->revision;
                     at--)
                        ;
                memmove(&nb->revisions[at + 1], &nb->revisions[at],
                        (nb->n_revisions - at) * sizeof(cache_rev));
                nb->revisions[at] = (cache_rev){};
                nb->n_revisions++;
                r = rev_set(&nb->revisions[at], m->revision, m->digest, m->uid, 0);
                if (r < 0)
                        return r;
        }
        if (m->revision >= nb->highest.revision) {
                r = rev_set(&nb->highest, m->revision, m->digest, m->uid, 0);
                if (r < 0)
                        return r;
        }
        r = bundle_store(c, fd, TAKE_PTR(nb), ret_err);
        return r < 0 ? r : 1;
}

static int verify_manifest_file(int bundle_fd, const char *fname, const char *ns, const char *name,
                                const cache_rev *want, manifest **ret, err_info *e) {
        _cleanup_(manifest_freep) manifest *m = NULL;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r;

        r = fsx_read_file(bundle_fd, fname, BUNDLE_MAX_MANIFEST_SIZE, &data, &len);
        if (r == -EFBIG)
                return err_info_set(e, -EBADMSG, "larger than %d bytes", BUNDLE_MAX_MANIFEST_SIZE);
        if (r < 0)
                return err_info_set(e, r, "cannot read: %s", strerror(-r));
        r = manifest_parse(data, len, want->digest, NULL, &m, e);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -EBADMSG;
        if (!streq(m->namespace, ns) || !streq(m->name, name) || m->revision != want->revision ||
            (want->uid && !streq(m->uid, want->uid)))
                return err_info_set(e, -EBADMSG,
                                    "is bundle %s/%s revision %" PRIi64 " uid %s, not what the "
                                    "cache lists",
                                    m->namespace, m->name, m->revision, m->uid);
        if (ret)
                *ret = TAKE_PTR(m);
        return 0;
}

int cache_load_manifest(cache *c, const char *ns, const char *name, int64_t revision,
                        const char *digest, manifest **ret, err_info *ret_err) {
        _cleanup_close_ int fd = -1;
        const cache_bundle *b;
        char fname[MANIFEST_NAME_SZ], as[NAME_MAX + 32];
        bool missing;
        ssize_t i;
        err_info e;
        int r;

        r = check_key(ns, name, ret_err);
        if (r < 0)
                return r;
        if (!bundle_is_digest(digest))
                return -EINVAL;
        b = cache_get_bundle(c, ns, name);
        i = b ? bundle_find_rev(b, revision, digest) : -1;
        if (i < 0)
                return err_info_set(ret_err, -ENOENT,
                                    "bundle %s/%s revision %" PRIi64 " (%s) is not cached", ns,
                                    name, revision, digest);
        fd = open_bundle_dir(c, ns, name, false);
        if (fd < 0)
                return err_info_set(ret_err, fd, "cache %s: cannot open bundles/%s/%s: %s", c->dir,
                                    ns, name, strerror(-fd));
        manifest_file_name(revision, digest, fname);
        err_info_clear(&e);
        r = verify_manifest_file(fd, fname, ns, name, &b->revisions[i], ret, &e);
        if (r >= 0 || r == -ENOMEM)
                return r;
        missing = r == -ENOENT;

        /* Corrupt (or gone): quarantine, drop from the cache, let the caller
         * refetch. The in-memory view drops it even if state.json cannot be
         * rewritten, since the file is no longer usable either way. */
        {
                _cleanup_(bundle_freep) cache_bundle *nb = NULL;
                char label[NAME_MAX];
                int q;

                snprintf(label, sizeof(label), "%s_%s_%s", ns, name, fname);
                if (missing)
                        problem(c, "bundles/%s/%s/%s: listed but missing; refetch it", ns, name,
                                fname);
                else {
                        q = quarantine(c, fd, fname, label, as, sizeof(as));
                        problem(c, "bundles/%s/%s/%s: %s (%s%s)", ns, name, fname, e.message,
                                q >= 0 ? "quarantined as " : "not quarantined: ",
                                q >= 0 ? as : strerror(-q));
                }
                r = bundle_clone(b, &nb);
                if (r < 0)
                        return r;
                bundle_drop_rev(nb, (size_t) bundle_find_rev(nb, revision, digest));
                {
                        _cleanup_(bundle_freep) cache_bundle *mem = NULL;

                        r = bundle_clone(nb, &mem);
                        if (r < 0)
                                return r;
                        r = bundle_store(c, fd, TAKE_PTR(nb), NULL);
                        if (r < 0) {
                                problem(c, "bundles/%s/%s/" STATE_FILE ": cannot rewrite: %s", ns,
                                        name, strerror(-r));
                                r = index_put(c, TAKE_PTR(mem));
                                if (r < 0)
                                        return r;
                        }
                }
        }
        if (missing)
                return err_info_set(ret_err, -ENOENT,
                                    "bundle %s/%s revision %" PRIi64
                                    ": the cached manifest is missing; refetch it",
                                    ns, name, revision);
        return err_info_set(ret_err, -EBADMSG,
                            "bundle %s/%s revision %" PRIi64 ": the cached manifest is corrupt "
                            "(%s); dropped from the cache, refetch it",
                            ns, name, revision, e.message);
}

static int set_pin(cache *c, bool lkg, const char *ns, const char *name, int64_t revision,
                   const char *digest, int64_t now, err_info *e) {
        _cleanup_(bundle_freep) cache_bundle *nb = NULL;
        const cache_bundle *b;
        ssize_t i;
        int r;

        r = check_key(ns, name, e);
        if (r < 0)
                return r;
        if (!bundle_is_digest(digest))
                return -EINVAL;
        b = cache_get_bundle(c, ns, name);
        i = b ? bundle_find_rev(b, revision, digest) : -1;
        if (i < 0)
                return err_info_set(e, -ENOENT,
                                    "bundle %s/%s revision %" PRIi64 " (%s) is not cached", ns,
                                    name, revision, digest);
        r = bundle_clone(b, &nb);
        if (r < 0)
                return r;
        r = rev_set(lkg ? &nb->lkg : &nb->applied, revision, digest, b->revisions[i].uid, now);
        if (r < 0)
                return r;
        return bundle_update(c, TAKE_PTR(nb), e);
}

int cache_set_applied(cache *c, const char *ns, const char *name, int64_t revision,
                      const char *digest, int64_t now, err_info *ret_err) {
        return set_pin(c, false, ns, name, revision, digest, now, ret_err);
}

int cache_set_lkg(cache *c, const char *ns, const char *name, int64_t revision, const char *digest,
                  int64_t now, err_info *ret_err) {
        return set_pin(c, true, ns, name, revision, digest, now, ret_err);
}

int cache_record_failure(cache *c, const char *ns, const char *name, int64_t revision,
                         const char *digest, const char *reason, int64_t now, err_info *ret_err) {
        _cleanup_(bundle_freep) cache_bundle *nb = NULL;
        const cache_bundle *b;
        cache_failure *l;
        int r;

        r = check_key(ns, name, ret_err);
        if (r < 0)
                return r;
        if (revision < 1 || !bundle_is_digest(digest) || !reason)
                return -EINVAL;
        b = cache_get_bundle(c, ns, name);
        if (!b)
                return err_info_set(ret_err, -ENOENT, "bundle %s/%s is not cached", ns, name);
        r = bundle_clone(b, &nb);
        if (r < 0)
                return r;
        /* One record per revision: a repeat replaces the older one. */
        for (size_t i = 0; i < nb->n_failures; i++)
                if (nb->failures[i].revision == revision && streq(nb->failures[i].digest, digest)) {
                        free(nb->failures[i].reason);
                        memmove(&nb->failures[i], &nb->failures[i + 1],
                                (nb->n_failures - i - 1) * sizeof(cache_failure));
                        nb->n_failures--;
                        break;
                }
        if (nb->n_failures >= CACHE_MAX_FAILURES) {
                free(nb->failures[0].reason);
                memmove(&nb->failures[0], &nb->failures[1],
                        (nb->n_failures - 1) * sizeof(cache_failure));
                nb->n_failures--;
        }
        l = realloc(nb->failures, (nb->n_failures + 1) * sizeof(cache_failure));
        if (!l)
                return -ENOMEM;
        nb->failures = l;
        l[nb->n_failures] = (cache_failure){.revision = revision, .at = now};
        snprintf(l[nb->n_failures].digest, BUNDLE_DIGEST_SIZE, "%s", digest);
        l[nb->n_failures].reason = strndup(reason, CACHE_MAX_REASON);
        if (!l[nb->n_failures].reason)
                return -ENOMEM;
        nb->n_failures++;
        return bundle_update(c, TAKE_PTR(nb), ret_err);
}

bool cache_is_failed(cache *c, const char *ns, const char *name, int64_t revision,
                     const char *digest) {
        const cache_bundle *b = cache_get_bundle(c, ns, name);

        if (!b || !digest)
                return false;
        for (size_t i = 0; i < b->n_failures; i++)
                if (b->failures[i].revision == revision && streq(b->failures[i].digest, digest))
                        return true;
        return false;
}

int cache_remove_bundle(cache *c, const char *ns, const char *name, err_info *ret_err) {
        _cleanup_close_ int bundles = -1, nsfd = -1;
        char trash[NAME_MAX + 1];
        int r;

        r = check_key(ns, name, ret_err);
        if (r < 0)
                return r;
        bundles = mkdir_open(c->dir_fd, "bundles", false);
        if (bundles >= 0)
                nsfd = mkdir_open(bundles, ns, false);
        if (nsfd < 0) {
                index_drop(c, ns, name);
                return 0;
        }
        /* One rename makes the removal atomic; the trash is emptied now or,
         * after a crash, by the next cache_open(). */
        snprintf(trash, sizeof(trash), TRASH_PREFIX "%s", name);
        r = fsx_rm_rf_at(nsfd, trash);
        if (r >= 0 && renameat(nsfd, name, nsfd, trash) < 0 && errno != ENOENT)
                r = -errno;
        if (r >= 0)
                r = fsx_fsync_dir(nsfd);
        if (r < 0)
                return err_info_set(ret_err, r, "cache %s: cannot remove bundles/%s/%s: %s", c->dir,
                                    ns, name, strerror(-r));
        index_drop(c, ns, name);
        (void) fsx_rm_rf_at(nsfd, trash);
        if (unlinkat(bundles, ns, AT_REMOVEDIR) >= 0)
                (void) fsx_fsync_dir(bundles);
        return 0;
}

/* ---- node labels and source blobs -------------------------------------- */

static bool is_label_map(json_object *o) {
        if (!json_object_is_type(o, json_type_object))
                return false;
        json_object_object_foreach(o, k, v) {
                (void) k;
                if (!json_object_is_type(v, json_type_string))
                        return false;
        }
        return true;
}

int cache_save_node_labels(cache *c, json_object *labels, err_info *ret_err) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r;

        if (!is_label_map(labels))
                return err_info_set(ret_err, -EINVAL, "node labels must be an object of strings");
        r = jsonx_to_canonical(labels, &data, &len);
        if (r < 0)
                return r;
        r = fsx_write_atomic(c->dir_fd, LABELS_FILE, data, len, 0600);
        if (r < 0)
                return err_info_set(ret_err, r, "cache %s: cannot write " LABELS_FILE ": %s",
                                    c->dir, strerror(-r));
        return 0;
}

int cache_load_node_labels(cache *c, json_object **ret, err_info *ret_err) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *data = NULL;
        char as[NAME_MAX + 32];
        size_t len = 0;
        err_info e;
        int r, q;

        r = fsx_read_file(c->dir_fd, LABELS_FILE, CACHE_MAX_STATE_SIZE, &data, &len);
        if (r == -ENOENT)
                return err_info_set(ret_err, r, "cache %s: no node labels saved", c->dir);
        if (r < 0 && r != -EFBIG)
                return err_info_set(ret_err, r, "cache %s: cannot read " LABELS_FILE ": %s", c->dir,
                                    strerror(-r));
        err_info_clear(&e);
        if (r >= 0 && jsonx_parse(data, len, &o, &e) >= 0 && is_label_map(o)) {
                *ret = TAKE_PTR(o);
                return 0;
        }
        q = quarantine(c, c->dir_fd, LABELS_FILE, LABELS_FILE, as, sizeof(as));
        problem(c, LABELS_FILE ": corrupt (%s) (%s%s)",
                r < 0        ? "too large"
                : *e.message ? e.message
                             : "not an object of strings",
                q >= 0 ? "quarantined as " : "not quarantined: ", q >= 0 ? as : strerror(-q));
        return err_info_set(ret_err, -EBADMSG, "cache %s: " LABELS_FILE " is corrupt%s", c->dir,
                            q >= 0 ? " and was quarantined" : "");
}

int cache_save_source(cache *c, const char *source, const void *data, size_t len,
                      err_info *ret_err) {
        _cleanup_close_ int fd = -1;
        int r;

        if (!is_source_name(source) || len > CACHE_MAX_BLOB_SIZE)
                return -EINVAL;
        fd = mkdir_open(c->dir_fd, "sources", true);
        if (fd < 0)
                return err_info_set(ret_err, fd, "cache %s: cannot create sources: %s", c->dir,
                                    strerror(-fd));
        r = fsx_write_atomic(fd, source, data, len, 0600);
        if (r < 0)
                return err_info_set(ret_err, r, "cache %s: cannot write sources/%s: %s", c->dir,
                                    source, strerror(-r));
        return 0;
}

int cache_load_source(cache *c, const char *source, char **ret, size_t *ret_len,
                      err_info *ret_err) {
        _cleanup_close_ int fd = -1;
        int r;

        if (!is_source_name(source))
                return -EINVAL;
        fd = mkdir_open(c->dir_fd, "sources", false);
        if (fd < 0)
                return fd == -ENOENT ? -ENOENT
                                     : err_info_set(ret_err, fd, "cache %s: sources: %s", c->dir,
                                                    strerror(-fd));
        r = fsx_read_file(fd, source, CACHE_MAX_BLOB_SIZE, ret, ret_len);
        if (r < 0 && r != -ENOENT)
                return err_info_set(ret_err, r, "cache %s: cannot read sources/%s: %s", c->dir,
                                    source, strerror(-r));
        return r;
}

uint64_t cache_get_size(cache *c) {
        uint64_t total = 0;

        for (size_t i = 0; i < c->n_bundles; i++) {
                const cache_bundle *b = c->bundles[i];
                _cleanup_close_ int fd = open_bundle_dir(c, b->namespace, b->name, false);

                if (fd < 0)
                        continue;
                for (size_t k = 0; k < b->n_revisions; k++) {
                        char fname[MANIFEST_NAME_SZ];
                        struct stat st;

                        manifest_file_name(b->revisions[k].revision, b->revisions[k].digest, fname);
                        if (fstatat(fd, fname, &st, AT_SYMLINK_NOFOLLOW) >= 0)
                                total += (uint64_t) st.st_size;
                }
        }
        return total;
}

/* ---- opening and recovery ----------------------------------------------- */

typedef struct found_file {
        char name[MANIFEST_NAME_SZ];
        int64_t revision;
        char digest[BUNDLE_DIGEST_SIZE];
        struct timespec mtime;
        char uid[BUNDLE_MAX_UID + 1];
        bool used;
} found_file;

/* Loads one bundle directory: state.json is the truth; files it does not
 * list are leftovers of an interrupted commit or GC and are removed. Without
 * a (valid) state.json the state is rebuilt from the manifests that verify.
 * Corrupt entries are quarantined. Never fails for bad data; only -ENOMEM. */
static int load_bundle(cache *c, int nsfd, const char *ns, const char *name) {
        _cleanup_(bundle_freep) cache_bundle *b = NULL;
        _cleanup_free_ found_file *files = NULL;
        _cleanup_free_ char *data = NULL;
        _cleanup_close_ int fd = -1;
        size_t n_files = 0, cap = 0, len = 0;
        bool dirty = false, removed = false;
        char why[256], as[NAME_MAX + 32], label[NAME_MAX];
        DIR *d;
        int r;

        fd = openat(nsfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                problem(c, "bundles/%s/%s: cannot open: %m (ignored)", ns, name);
                return 0;
        }
        {
                int dfd = dup(fd);

                d = dfd >= 0 ? fdopendir(dfd) : NULL;
                if (!d) {
                        safe_close(dfd);
                        problem(c, "bundles/%s/%s: cannot list: %m (ignored)", ns, name);
                        return 0;
                }
        }
        for (struct dirent *de; (de = readdir(d));) {
                found_file f = {};
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, "..") ||
                    streq(de->d_name, STATE_FILE))
                        continue;
                if (startswith(de->d_name, TEMP_PREFIX)) {
                        (void) unlinkat(fd, de->d_name, 0); /* an interrupted write */
                        continue;
                }
                if (!parse_manifest_file_name(de->d_name, &f.revision, f.digest) ||
                    fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) {
                        problem(c, "bundles/%s/%s/%s: not a cache file (ignored)", ns, name,
                                de->d_name);
                        continue;
                }
                memcpy(f.name, de->d_name, strlen(de->d_name) + 1); /* checked above */
                f.mtime = st.st_mtim;
                if (n_files == cap) {
                        found_file *l = realloc(files, (cap = cap * 2 + 8) * sizeof(found_file));

                        if (!l) {
                                closedir(d);
                                return -ENOMEM;
                        }
                        files = l;
                }
                files[n_files++] = f;
        }
        closedir(d);

        r = fsx_read_file(fd, STATE_FILE, CACHE_MAX_STATE_SIZE, &data, &len);
        if (r >= 0) {
                r = state_from_json(data, len, ns, name, &b, why, sizeof(why));
                if (r == -ENOMEM)
                        return r;
        } else if (r == -EFBIG) {
                snprintf(why, sizeof(why), "larger than %d bytes", CACHE_MAX_STATE_SIZE);
                r = -EBADMSG;
        } else if (r != -ENOENT) {
                snprintf(why, sizeof(why), "cannot read: %s", strerror(-r));
                r = -EBADMSG;
        }
        if (r == -EBADMSG) {
                int q;

                snprintf(label, sizeof(label), "%s_%s_" STATE_FILE, ns, name);
                q = quarantine(c, fd, STATE_FILE, label, as, sizeof(as));
                problem(c, "bundles/%s/%s/" STATE_FILE ": %s (%s%s); rebuilding from the manifests",
                        ns, name, why, q >= 0 ? "quarantined as " : "not quarantined: ",
                        q >= 0 ? as : strerror(-q));
        }

        if (b) {
                /* Verify what state.json lists. */
                for (size_t i = b->n_revisions; i > 0; i--) {
                        cache_rev *want = &b->revisions[i - 1];
                        found_file *f = NULL;
                        err_info e;

                        for (size_t k = 0; k < n_files; k++)
                                if (files[k].revision == want->revision &&
                                    streq(files[k].digest, want->digest))
                                        f = &files[k];
                        if (!f) {
                                problem(c,
                                        "bundles/%s/%s: revision %" PRIi64 " (%s) is listed "
                                        "but missing; refetch it",
                                        ns, name, want->revision, want->digest);
                                bundle_drop_rev(b, i - 1);
                                dirty = true;
                                continue;
                        }
                        f->used = true;
                        err_info_clear(&e);
                        r = verify_manifest_file(fd, f->name, ns, name, want, NULL, &e);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0) {
                                int q;

                                snprintf(label, sizeof(label), "%s_%s_%s", ns, name, f->name);
                                q = quarantine(c, fd, f->name, label, as, sizeof(as));
                                problem(c, "bundles/%s/%s/%s: %s (%s%s)", ns, name, f->name,
                                        e.message, q >= 0 ? "quarantined as " : "not quarantined: ",
                                        q >= 0 ? as : strerror(-q));
                                bundle_drop_rev(b, i - 1);
                                dirty = true;
                        }
                }
                /* Not listed: never committed, or collected. */
                for (size_t k = 0; k < n_files; k++)
                        if (!files[k].used && unlinkat(fd, files[k].name, 0) >= 0)
                                removed = true;
        } else {
                /* Rebuild: adopt every manifest that verifies; the current
                 * lineage is that of the most recently written one. */
                ssize_t newest = -1;

                for (size_t k = 0; k < n_files; k++) {
                        _cleanup_(manifest_freep) manifest *m = NULL;
                        cache_rev want = {.revision = files[k].revision};
                        found_file *f = &files[k];
                        err_info e;

                        snprintf(want.digest, sizeof(want.digest), "%s", f->digest);
                        err_info_clear(&e);
                        r = verify_manifest_file(fd, f->name, ns, name, &want, &m, &e);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0) {
                                int q;

                                snprintf(label, sizeof(label), "%s_%s_%s", ns, name, f->name);
                                q = quarantine(c, fd, f->name, label, as, sizeof(as));
                                problem(c, "bundles/%s/%s/%s: %s (%s%s)", ns, name, f->name,
                                        e.message, q >= 0 ? "quarantined as " : "not quarantined: ",
                                        q >= 0 ? as : strerror(-q));
                                continue;
                        }
                        f->used = true;
                        snprintf(f->uid, sizeof(f->uid), "%s", m->uid);
                        if (newest < 0 || f->mtime.tv_sec > files[newest].mtime.tv_sec ||
                            (f->mtime.tv_sec == files[newest].mtime.tv_sec &&
                             (f->mtime.tv_nsec > files[newest].mtime.tv_nsec ||
                              (f->mtime.tv_nsec == files[newest].mtime.tv_nsec &&
                               f->revision > files[newest].revision))))
                                newest = (ssize_t) k;
                }
                if (newest < 0) {
                        /* Nothing usable: the bundle is not in the cache. */
                        (void) fsx_rm_rf_at(nsfd, name);
                        (void) fsx_fsync_dir(nsfd);
                        return 0;
                }
                r = bundle_new(ns, name, files[newest].uid, &b);
                if (r < 0)
                        return r;
                b->revisions = calloc(n_files, sizeof(cache_rev));
                if (!b->revisions)
                        return -ENOMEM;
                for (size_t k = 0; k < n_files; k++) {
                        found_file *f = &files[k];
                        size_t at;

                        if (!f->used)
                                continue;
                        for (at = b->n_revisions;
                             at > 0 && b->revisions[at - 1].revision > f->revision; at--)
                                ;
                        memmove(&b->revisions[at + 1], &b->revisions[at],
                                (b->n_revisions - at) * sizeof(cache_rev));
                        b->revisions[at] = (cache_rev){};
                        b->n_revisions++;
                        r = rev_set(&b->revisions[at], f->revision, f->digest, f->uid, 0);
                        if (r < 0)
                                return r;
                        if (streq(f->uid, b->uid) && f->revision > b->highest.revision) {
                                r = rev_set(&b->highest, f->revision, f->digest, f->uid, 0);
                                if (r < 0)
                                        return r;
                        }
                }
                dirty = true;
        }
        if (removed)
                (void) fsx_fsync_dir(fd);

        if (dirty) {
                _cleanup_(bundle_freep) cache_bundle *mem = NULL;

                r = bundle_clone(b, &mem);
                if (r < 0)
                        return r;
                r = bundle_store(c, fd, TAKE_PTR(b), NULL);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        problem(c, "bundles/%s/%s/" STATE_FILE ": cannot rewrite: %s", ns, name,
                                strerror(-r));
                        return index_put(c, TAKE_PTR(mem));
                }
                return 0;
        }
        return index_put(c, TAKE_PTR(b));
}

static int load_bundles(cache *c) {
        _cleanup_close_ int bundles = -1;
        DIR *d;
        int r = 0;

        bundles = mkdir_open(c->dir_fd, "bundles", false);
        if (bundles == -ENOENT)
                return 0;
        if (bundles < 0) {
                problem(c, "bundles: cannot open: %s", strerror(-bundles));
                return 0;
        }
        d = fdopendir(bundles);
        if (!d)
                return -errno;
        bundles = -1; /* owned by d now */
        for (struct dirent *de; r >= 0 && (de = readdir(d));) {
                _cleanup_close_ int nsfd = -1;
                DIR *nd;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (!manifest_is_dns_label(de->d_name)) {
                        problem(c, "bundles/%s: not a namespace (ignored)", de->d_name);
                        continue;
                }
                nsfd = openat(dirfd(d), de->d_name,
                              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (nsfd < 0) {
                        problem(c, "bundles/%s: cannot open: %m (ignored)", de->d_name);
                        continue;
                }
                {
                        int dfd = dup(nsfd);

                        nd = dfd >= 0 ? fdopendir(dfd) : NULL;
                        if (!nd) {
                                safe_close(dfd);
                                continue;
                        }
                }
                for (struct dirent *be; r >= 0 && (be = readdir(nd));) {
                        if (streq(be->d_name, ".") || streq(be->d_name, ".."))
                                continue;
                        if (startswith(be->d_name, TRASH_PREFIX)) {
                                (void) fsx_rm_rf_at(nsfd, be->d_name);
                                continue;
                        }
                        if (!manifest_is_dns_subdomain(be->d_name)) {
                                problem(c, "bundles/%s/%s: not a bundle name (ignored)", de->d_name,
                                        be->d_name);
                                continue;
                        }
                        r = load_bundle(c, nsfd, de->d_name, be->d_name);
                }
                closedir(nd);
        }
        closedir(d);
        return r;
}

/* Removes fsx_write_atomic() temporaries an interrupted write left in @dir_fd. */
static void remove_temps(int dir_fd) {
        int dfd = dup(dir_fd);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;

        if (!d) {
                safe_close(dfd);
                return;
        }
        for (struct dirent *de; (de = readdir(d));)
                if (startswith(de->d_name, TEMP_PREFIX))
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
}

/* mkdir -p @path with mode 0700 for what it creates. */
static int mkdir_parents(const char *path) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1;; s++) {
                if (*s == '/' || *s == '\0') {
                        char saved = *s;

                        *s = '\0';
                        if (mkdir(p, 0700) < 0 && errno != EEXIST)
                                return -errno;
                        *s = saved;
                        if (!saved)
                                return 0;
                }
        }
}

int cache_open(const char *dir, unsigned keep, cache **ret, err_info *ret_err) {
        _cleanup_(cache_freep) cache *c = NULL;
        int r;

        if (isempty(dir) || !ret)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->dir_fd = -1;
        c->keep = keep > 0 ? keep : CACHE_DEFAULT_KEEP;
        c->dir = strdup(dir);
        if (!c->dir)
                return -ENOMEM;

        c->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (c->dir_fd < 0 && errno == ENOENT) {
                r = mkdir_parents(dir);
                if (r < 0)
                        return err_info_set(ret_err, r, "cache %s: cannot create: %s", dir,
                                            strerror(-r));
                c->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        if (c->dir_fd < 0)
                return err_info_set(ret_err, -errno, "cache %s: cannot open: %m", dir);
        if (flock(c->dir_fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return err_info_set(ret_err, -EBUSY, "cache %s: in use by another process",
                                            dir);
                return err_info_set(ret_err, -errno, "cache %s: cannot lock: %m", dir);
        }
        remove_temps(c->dir_fd);
        {
                _cleanup_close_ int fd = mkdir_open(c->dir_fd, "sources", false);

                if (fd >= 0)
                        remove_temps(fd);
        }

        r = load_bundles(c);
        if (r < 0)
                return err_info_set(ret_err, r, "cache %s: cannot load: %s", dir, strerror(-r));
        *ret = TAKE_PTR(c);
        return 0;
}
