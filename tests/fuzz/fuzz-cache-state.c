/* SPDX-License-Identifier: Apache-2.0 */

/*
 * libFuzzer harness for the agent cache's state record codec (state.json,
 * nodeagent/cache.c; format in docs/agent-cache.md). The disk is untrusted:
 * a state record can be torn, edited or corrupted, and cache_open() must
 * repair or quarantine it, never crash. The decoder is static, so the input
 * goes through the public door: it is written as
 * bundles/prod/web/state.json of a fresh cache directory that also holds one
 * valid manifest (revision 3 of prod/web, uid "u-1"; the seeds that list it
 * use its digest), and the cache is opened. `make fuzz
 * FUZZER=fuzz-cache-state` runs it under libFuzzer; `make check` replays
 * tests/fuzz/corpus/cache-state/ through tests/fuzz/replay.c.
 *
 * Besides "never crash", it checks:
 *   - the cache opens whatever the record says (a bad record is quarantined
 *     and the bundle rebuilt from the manifest), holding prod/web and
 *     nothing else, whose view keeps the cache's invariants (valid uids and
 *     digests, revisions ascending and unique, failures with a reason);
 *   - the repair is stable: opening again gives the same view and leaves
 *     state.json byte for byte as the first open left it;
 *   - the writer and the reader agree: after changes that rewrite the
 *     record with everything it holds (applied, last-known-good, a failure),
 *     the view in memory is the view a new open reads back from disk.
 * The cache reports a record it could not read back after writing it as
 * -ENOMEM; no allocation fails under the fuzzer (libFuzzer's memory limits
 * report instead), so here every open and every change must succeed.
 */

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "fsx.h"
#include "hash.h"

#define NS   "prod"
#define NAME "web"

/* tests/fuzz/corpus/manifest/good.json: prod/web revision 3, uid "u-1". */
static const char seed_manifest[] =
        "{\"apiVersion\":\"ballast.dev/v1alpha1\",\"bundle\":{\"name\":\"web\",\"namespace\":"
        "\"prod\",\"uid\":\"u-1\"},\"files\":[{\"content\":\"v=1\",\"mode\":384,\"path\":"
        "\"a.conf\",\"sha256\":\"a798de8ee75aeb5519c5266239190385c84b21ae031ff12cbebfed7cd2c84fde"
        "\",\"size\":3},{\"content\":\"B\",\"mode\":420,\"path\":\"b.conf\",\"sha256\":"
        "\"df7e70e5021544f4834bbee64a9e3789febc4be81470df629cad6ddb03320a5c\",\"size\":1}],"
        "\"kind\":\"BundleManifest\",\"reload\":\"nginx\",\"revision\":3}";
#define SEED_REVISION 3
#define OTHER_DIGEST  "sha256:df7e70e5021544f4834bbee64a9e3789febc4be81470df629cad6ddb03320a5c"
#define DIGEST_SIZE   (7 + HASH_SHA256_HEX_LEN + 1)
#define MAX_UID       128 /* [A-Za-z0-9-]{0,128}, docs/agent-cache.md */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fails (a crash, for libFuzzer) naming the broken promise. */
#define check(ok) check_at((ok), #ok, __LINE__)
static void check_at(bool ok, const char *what, int line) {
        if (ok)
                return;
        fprintf(stderr, "fuzz-cache-state.c:%d: check failed: %s\n", line, what);
        abort();
}

static char base[200];                         /* where the root lives */
static char root[sizeof(base) + 32];           /* BASE/ballast-fuzz-cache.XXXXXX */
static char cache_dir[sizeof(root) + 8];       /* ROOT/cache */
static char state_dir[sizeof(cache_dir) + 32]; /* CACHE/bundles/NS/NAME */
static char seed_digest[DIGEST_SIZE];          /* "sha256:" + hex of seed_manifest */
static char seed_file[128];

static void remove_root(void) {
        _cleanup_close_ int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd >= 0)
                (void) fsx_rm_rf_at(fd, root + strlen(base) + 1);
}

/* One directory per process, on tmpfs when there is one: every input is
 * written, fsynced and renamed a few times. */
static void setup(void) {
        static bool done;
        const char *tmp = getenv("TMPDIR");

        if (done)
                return;
        snprintf(base, sizeof(base), "%s",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                 : !isempty(tmp)               ? tmp
                                               : "/tmp");
        snprintf(root, sizeof(root), "%s/ballast-fuzz-cache.XXXXXX", base);
        check(mkdtemp(root) != NULL);
        atexit(remove_root);
        snprintf(cache_dir, sizeof(cache_dir), "%s/cache", root);
        snprintf(state_dir, sizeof(state_dir), "%s/bundles/" NS "/" NAME, cache_dir);
        memcpy(seed_digest, "sha256:", 7);
        check(hash_sha256_hex(seed_manifest, strlen(seed_manifest), seed_digest + 7) == 0);
        snprintf(seed_file, sizeof(seed_file), "%d-%s.json", SEED_REVISION, seed_digest + 7);
        done = true;
}

static void write_file(int dir_fd, const char *name, const void *data, size_t len) {
        _cleanup_close_ int fd =
                openat(dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        check(fd >= 0);
        check(len == 0 || write(fd, data, len) == (ssize_t) len);
}

/* A fresh cache directory holding the manifest and @data as the record. */
static void make_cache(const uint8_t *data, size_t size) {
        _cleanup_close_ int root_fd = -1, fd = -1;

        root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        check(root_fd >= 0);
        check(fsx_rm_rf_at(root_fd, "cache") >= 0);
        fd = fsx_mkdir_beneath(root_fd, "cache/bundles/" NS "/" NAME, 0700);
        check(fd >= 0);
        write_file(fd, "state.json", data, size);
        write_file(fd, seed_file, seed_manifest, strlen(seed_manifest));
}

static char *read_state(size_t *ret_len) {
        _cleanup_close_ int fd = -1;
        char *text = NULL;

        fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        check(fd >= 0);
        check(fsx_read_file(fd, "state.json", 64 * 1024 * 1024, &text, ret_len) == 0);
        return text;
}

/* "sha256:" and 64 lowercase hex digits, checked here without the cache's
 * own helpers. */
static bool is_digest(const char *s) {
        if (strlen(s) != DIGEST_SIZE - 1 || strncmp(s, "sha256:", 7) != 0)
                return false;
        for (s += 7; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

static bool is_uid(const char *s) {
        if (!s || strlen(s) > MAX_UID)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '-'))
                        return false;
        return true;
}

static void check_rev(const cache_rev *r, bool need_uid) {
        check(r->revision >= 0);
        check(r->revision == 0 ? r->digest[0] == '\0' || is_digest(r->digest)
                               : is_digest(r->digest));
        check(!need_uid || r->revision == 0 || is_uid(r->uid));
}

static void check_bundle(const cache_bundle *b) {
        check(streq(b->namespace, NS) && streq(b->name, NAME) && is_uid(b->uid));
        check_rev(&b->highest, true);
        check_rev(&b->applied, true);
        check_rev(&b->lkg, true);
        for (size_t i = 0; i < b->n_revisions; i++) {
                check(b->revisions[i].revision >= 1);
                check_rev(&b->revisions[i], true);
                check(i == 0 || b->revisions[i - 1].revision <= b->revisions[i].revision);
                for (size_t j = 0; j < i; j++)
                        check(!streq(b->revisions[j].digest, b->revisions[i].digest));
        }
        for (size_t i = 0; i < b->n_failures; i++) {
                const cache_failure *f = &b->failures[i];

                check(f->revision >= 1 && f->at >= 0 && f->reason);
                check(is_digest(f->digest));
        }
        for (size_t i = 0; i < b->n_retired; i++)
                check(is_uid(b->retired_uids[i]));
}

static void put_rev(FILE *f, const char *what, const cache_rev *r) {
        fprintf(f, "%s %lld %s %s %lld\n", what, (long long) r->revision, r->digest,
                r->uid ? r->uid : "(null)", (long long) r->at);
}

/* Everything the cache shows of its bundles, as text to compare. */
static char *describe(cache *c) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        check(f != NULL);
        for (size_t k = 0; k < cache_count_bundles(c); k++) {
                const cache_bundle *b = cache_get_bundle_at(c, k);

                fprintf(f, "bundle %s/%s uid %s\n", b->namespace, b->name, b->uid);
                put_rev(f, "highest", &b->highest);
                put_rev(f, "applied", &b->applied);
                put_rev(f, "lkg", &b->lkg);
                for (size_t i = 0; i < b->n_revisions; i++)
                        put_rev(f, "revision", &b->revisions[i]);
                for (size_t i = 0; i < b->n_failures; i++)
                        fprintf(f, "failed %lld %s %lld %zu:%s\n",
                                (long long) b->failures[i].revision, b->failures[i].digest,
                                (long long) b->failures[i].at, strlen(b->failures[i].reason),
                                b->failures[i].reason);
                for (size_t i = 0; i < b->n_retired; i++)
                        fprintf(f, "retired %s\n", b->retired_uids[i]);
        }
        check(fclose(f) == 0);
        return text;
}

static cache *open_cache(void) {
        cache *c = NULL;
        char *const *problems;
        size_t n;
        err_info e;

        err_info_clear(&e);
        check(cache_open(cache_dir, 0, &c, &e) == 0);
        n = cache_get_problems(c, &problems);
        check(n <= 64);
        for (size_t i = 0; i < n; i++)
                check(problems[i] && problems[i][0] != '\0');
        return c;
}

static bool has_seed_manifest(const cache_bundle *b) {
        for (size_t i = 0; i < b->n_revisions; i++)
                if (b->revisions[i].revision == SEED_REVISION &&
                    streq(b->revisions[i].digest, seed_digest))
                        return true;
        return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *first = NULL, *second = NULL, *changed = NULL, *reread = NULL;
        _cleanup_free_ char *state1 = NULL, *state2 = NULL;
        size_t state1_len = 0, state2_len = 0;
        const cache_bundle *b;
        bool have_bundle;
        cache *c;
        err_info e;

        if (size > 2 * 1024 * 1024)
                return 0;
        setup();
        make_cache(data, size);

        /* Opens whatever the record says. Without a usable record the
         * bundle is rebuilt from the manifest (or, were that unusable too,
         * dropped). */
        c = open_cache();
        check(cache_count_bundles(c) <= 1);
        b = cache_get_bundle(c, NS, NAME);
        check((b != NULL) == (cache_count_bundles(c) == 1));
        have_bundle = b != NULL;
        if (have_bundle)
                check_bundle(b);
        first = describe(c);
        cache_free(c);
        if (have_bundle)
                state1 = read_state(&state1_len);

        /* A second open repairs nothing more. */
        c = open_cache();
        second = describe(c);
        check(streq(first, second));
        if (!have_bundle) {
                cache_free(c);
                return 0;
        }
        state2 = read_state(&state2_len);
        check(state1_len == state2_len && memcmp(state1, state2, state1_len) == 0);

        /* Rewrite the record with all it holds, then read it back. */
        b = cache_get_bundle(c, NS, NAME);
        if (has_seed_manifest(b)) {
                err_info_clear(&e);
                check(cache_set_applied(c, NS, NAME, SEED_REVISION, seed_digest, 1767000000, &e) ==
                      0);
                check(cache_set_lkg(c, NS, NAME, SEED_REVISION, seed_digest, 1767000001, &e) == 0);
        }
        err_info_clear(&e);
        check(cache_record_failure(c, NS, NAME, SEED_REVISION + 1, OTHER_DIGEST,
                                   "check failed: \"exit\" status 1\n\t\\", 1767000300, &e) == 0);
        b = cache_get_bundle(c, NS, NAME);
        check(b != NULL);
        check_bundle(b);
        check(cache_is_failed(c, NS, NAME, SEED_REVISION + 1, OTHER_DIGEST));
        changed = describe(c);
        cache_free(c);

        c = open_cache();
        reread = describe(c);
        check(streq(changed, reread));
        cache_free(c);
        return 0;
}
