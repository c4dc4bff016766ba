/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Atomic materialization of a bundle revision under ROOT/NS/NAME. Kept small
 * on purpose: it runs as root and writes where applications read their
 * configuration. Nothing here follows a symlink below ROOT.
 */

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "apply.h"
#include "fsx.h"

int (*apply_fault_hook)(apply_step step) = NULL;

#define LINK_TMP   "..link_tmp"
#define DEL_PREFIX "..del-"
#define ALT_SUFFIX ".1"

static int fault(apply_step step) {
        int r;

        if (!apply_fault_hook)
                return 0;
        r = apply_fault_hook(step);
        return r < 0 ? r : 0;
}

static int fsync_fd(int fd) {
        while (fsync(fd) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

static int write_all(int fd, const char *p, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, p, MIN(len, (size_t) SSIZE_MAX));

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

static bool is_bundle_key(const char *ns, const char *name) {
        return manifest_is_dns_label(ns) && manifest_is_dns_subdomain(name);
}

/* "..rev-N-HEX12" or "..rev-N-HEX12.1"; fills @ret when non-NULL. */
static bool parse_rev_name(const char *s, apply_live *ret) {
        apply_live l = {};
        const char *p, *dash;
        size_t n;

        if (!startswith(s, APPLY_REV_PREFIX) || strlen(s) >= sizeof(l.dir))
                return false;
        p = s + strlen(APPLY_REV_PREFIX);
        dash = strchr(p, '-');
        if (!dash || dash == p || dash - p > 18 || p[0] == '0')
                return false;
        for (const char *q = p; q < dash; q++) {
                if (*q < '0' || *q > '9')
                        return false;
                l.revision = l.revision * 10 + (*q - '0');
        }
        n = strlen(dash + 1);
        if (n != APPLY_DIGEST_PREFIX &&
            !(n == APPLY_DIGEST_PREFIX + 2 && streq(dash + 1 + APPLY_DIGEST_PREFIX, ALT_SUFFIX)))
                return false;
        for (size_t i = 0; i < APPLY_DIGEST_PREFIX; i++) {
                char c = dash[1 + i];

                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                        return false;
                l.digest_prefix[i] = c;
        }
        snprintf(l.dir, sizeof(l.dir), "%s", s);
        if (ret)
                *ret = l;
        return true;
}

static void rev_names(const manifest *m, char base[static APPLY_REV_NAME_MAX],
                      char alt[static APPLY_REV_NAME_MAX]) {
        snprintf(base, APPLY_REV_NAME_MAX, APPLY_REV_PREFIX "%" PRIi64 "-%.12s", m->revision,
                 m->digest + BUNDLE_DIGEST_PREFIX_LEN);
        snprintf(alt, APPLY_REV_NAME_MAX, APPLY_REV_PREFIX "%" PRIi64 "-%.12s" ALT_SUFFIX,
                 m->revision, m->digest + BUNDLE_DIGEST_PREFIX_LEN);
}

static int open_root(const char *root, bool create, err_info *e) {
        int fd;

        if (isempty(root) || root[0] != '/')
                return err_info_set(e, -EINVAL, "root '%s' is not an absolute path", strna(root));
        fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && create) {
                _cleanup_free_ char *p = strdup(root);

                if (!p)
                        return -ENOMEM;
                for (char *s = p + 1;; s++)
                        if (*s == '/' || *s == '\0') {
                                char saved = *s;

                                *s = '\0';
                                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                                        return err_info_set(e, -errno, "cannot create %s: %m", p);
                                *s = saved;
                                if (!saved)
                                        break;
                        }
                fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        if (fd < 0)
                return err_info_set(e, -errno, "cannot open root %s: %m", root);
        return fd;
}

/* Opens directory @name in @parent without following a symlink. With
 * @create, a missing one is made, and a symlink or non-directory planted
 * there is removed first (these names belong to the agent). */
static int open_owned_dir(int parent, const char *name, bool create) {
        int fd, r;

        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
                return fd;
        r = -errno;
        if (!create)
                return r == -ENOTDIR ? -ELOOP : r; /* O_NOFOLLOW|O_DIRECTORY on a link: ENOTDIR */
        if (r == -ELOOP || r == -ENOTDIR) {
                r = fsx_rm_rf_at(parent, name); /* unlinks a symlink, never its target */
                if (r < 0)
                        return r;
        } else if (r != -ENOENT)
                return r;
        if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST)
                return -errno;
        r = fsync_fd(parent);
        if (r < 0)
                return r;
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? (errno == ENOTDIR ? -ELOOP : -errno) : fd;
}

/* ROOT/NS/NAME as an fd; @ret_ns_fd (optional) gets ROOT/NS. */
static int open_bundle(int root_fd, const char *ns, const char *name, bool create, int *ret_ns_fd) {
        _cleanup_close_ int nsfd = -1;
        int fd;

        nsfd = open_owned_dir(root_fd, ns, create);
        if (nsfd < 0)
                return nsfd;
        fd = open_owned_dir(nsfd, name, create);
        if (fd >= 0 && ret_ns_fd)
                *ret_ns_fd = TAKE_FD(nsfd);
        return fd;
}

/* Reads "..data": 0 and the live revision, -ENOENT, or -EBADMSG. */
static int read_data_link(int bundle_fd, apply_live *ret) {
        char target[PATH_MAX];
        ssize_t n;

        n = readlinkat(bundle_fd, APPLY_DATA_LINK, target, sizeof(target) - 1);
        if (n < 0)
                return errno == EINVAL ? -EBADMSG : -errno; /* EINVAL: not a symlink */
        target[n] = '\0';
        if (!parse_rev_name(target, ret))
                return -EBADMSG;
        return 0;
}

/* Removes leftovers of interrupted operations in @bundle_fd that are never
 * part of a good state: "..data_tmp" and "..link_tmp". */
static void remove_tmp_links(int bundle_fd) {
        (void) fsx_rm_rf_at(bundle_fd, APPLY_DATA_TMP);
        (void) fsx_rm_rf_at(bundle_fd, LINK_TMP);
}

/* Removes "..del-*" leftovers of an interrupted apply_remove() in @ns_fd. */
static void remove_deleted(int ns_fd) {
        int dfd = dup(ns_fd);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;

        if (!d) {
                safe_close(dfd);
                return;
        }
        for (struct dirent *de; (de = readdir(d));)
                if (startswith(de->d_name, DEL_PREFIX))
                        (void) fsx_rm_rf_at(dirfd(d), de->d_name);
        closedir(d);
}

/* ---- staging ------------------------------------------------------------ */

typedef struct dir_list {
        char **paths;
        size_t n;
} dir_list;

static void dir_list_done(dir_list *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->paths[i]);
        free(l->paths);
}

/* Adds every proper directory prefix of @path once. */
static int dir_list_add_parents(dir_list *l, const char *path) {
        for (const char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
                size_t n = (size_t) (s - path);
                bool seen = false;
                char **x;

                for (size_t i = 0; i < l->n && !seen; i++)
                        seen = strlen(l->paths[i]) == n && strneq(l->paths[i], path, n);
                if (seen)
                        continue;
                x = realloc(l->paths, (l->n + 1) * sizeof(char *));
                if (!x)
                        return -ENOMEM;
                l->paths = x;
                l->paths[l->n] = strndup(path, n);
                if (!l->paths[l->n])
                        return -ENOMEM;
                l->n++;
        }
        return 0;
}

static size_t depth(const char *p) {
        size_t d = 0;

        for (; *p; p++)
                d += *p == '/';
        return d;
}

static int deeper_first(const void *a, const void *b) {
        size_t da = depth(*(char *const *) a), db = depth(*(char *const *) b);

        return da < db ? 1 : da > db ? -1 : 0;
}

/* Writes one file of @m into @rev_fd. */
static int write_file(int rev_fd, const manifest_file *f) {
        _cleanup_close_ int fd = -1;
        const char *slash = strrchr(f->path, '/');
        int r;

        r = fault(APPLY_STEP_WRITE_FILE);
        if (r < 0)
                return r;
        if (slash) {
                _cleanup_free_ char *dir = strndup(f->path, (size_t) (slash - f->path));
                _cleanup_close_ int dfd = -1;

                if (!dir)
                        return -ENOMEM;
                dfd = fsx_mkdir_beneath(rev_fd, dir, 0755);
                if (dfd < 0)
                        return dfd;
        }
        fd = fsx_open_beneath(rev_fd, f->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY,
                              f->mode & 0777);
        if (fd < 0)
                return fd;
        r = write_all(fd, f->content, f->size);
        if (r < 0)
                return r;
        /* The exact mode, whatever the umask. */
        if (fchmod(fd, f->mode & 0777) < 0)
                return -errno;
        r = fault(APPLY_STEP_FSYNC);
        if (r < 0)
                return r;
        return fsync_fd(fd);
}

/* Creates @rev_name in @bundle_fd and writes all of @m into it. */
static int stage_into(int bundle_fd, const char *rev_name, const manifest *m, err_info *e) {
        _cleanup_(dir_list_done) dir_list dirs = {};
        _cleanup_close_ int rev_fd = -1;
        int r;

        /* A leftover under this name (an interrupted stage, or an old copy
         * kept for rollback) is never trusted: start empty. */
        r = fsx_rm_rf_at(bundle_fd, rev_name);
        if (r < 0)
                return err_info_set(e, r, "bundle %s/%s revision %" PRIi64 ": cannot remove %s: %s",
                                    m->namespace, m->name, m->revision, rev_name, strerror(-r));
        r = fault(APPLY_STEP_MKDIR_REV);
        if (r >= 0) {
                rev_fd = fsx_mkdir_beneath(bundle_fd, rev_name, 0755);
                r = rev_fd < 0 ? rev_fd : 0;
        }
        if (r >= 0 && fchmod(rev_fd, 0755) < 0)
                r = -errno;
        if (r < 0)
                return err_info_set(e, r, "bundle %s/%s revision %" PRIi64 ": cannot create %s: %s",
                                    m->namespace, m->name, m->revision, rev_name, strerror(-r));

        for (size_t i = 0; i < m->n_files; i++) {
                const manifest_file *f = &m->files[i];

                r = dir_list_add_parents(&dirs, f->path);
                if (r >= 0)
                        r = write_file(rev_fd, f);
                if (r < 0)
                        return err_info_set(
                                e, r, "bundle %s/%s revision %" PRIi64 ": cannot write %s: %s",
                                m->namespace, m->name, m->revision, f->path, strerror(-r));
        }

        /* Directories deepest first, then the revision directory, then the
         * bundle directory that holds its name. */
        if (dirs.n > 0)
                qsort(dirs.paths, dirs.n, sizeof(char *), deeper_first);
        for (size_t i = 0; i < dirs.n; i++) {
                _cleanup_close_ int dfd = -1;

                dfd = fsx_open_beneath(rev_fd, dirs.paths[i], O_RDONLY | O_DIRECTORY, 0);
                r = dfd < 0 ? dfd : 0;
                if (r >= 0 && fchmod(dfd, 0755) < 0)
                        r = -errno;
                if (r >= 0)
                        r = fault(APPLY_STEP_FSYNC);
                if (r >= 0)
                        r = fsync_fd(dfd);
                if (r < 0)
                        return err_info_set(
                                e, r, "bundle %s/%s revision %" PRIi64 ": cannot sync %s: %s",
                                m->namespace, m->name, m->revision, dirs.paths[i], strerror(-r));
        }
        r = fault(APPLY_STEP_FSYNC);
        if (r >= 0)
                r = fsync_fd(rev_fd);
        if (r >= 0)
                r = fsync_fd(bundle_fd);
        if (r < 0)
                return err_info_set(e, r, "bundle %s/%s revision %" PRIi64 ": cannot sync %s: %s",
                                    m->namespace, m->name, m->revision, rev_name, strerror(-r));
        return 0;
}

static int check_manifest(const manifest *m, err_info *e) {
        if (!m || !is_bundle_key(m->namespace, m->name))
                return err_info_set(e, -EINVAL, "refusing a manifest with an unsafe bundle name");
        if (m->revision < 1 || !bundle_is_digest(m->digest))
                return err_info_set(e, -EINVAL, "bundle %s/%s: invalid revision or digest",
                                    m->namespace, m->name);
        for (size_t i = 0; i < m->n_files; i++)
                if (!bundle_is_path(m->files[i].path) || m->files[i].mode > 0777 ||
                    (!m->files[i].content && m->files[i].size > 0))
                        return err_info_set(e, -EINVAL,
                                            "bundle %s/%s revision %" PRIi64
                                            ": refusing unsafe file path or mode at files[%zu]",
                                            m->namespace, m->name, m->revision, i);
        return 0;
}

static int stage(int root_fd, const manifest *m, const char *root, char **ret_name, char **ret_path,
                 err_info *e) {
        _cleanup_close_ int bundle_fd = -1, ns_fd = -1;
        _cleanup_free_ char *path = NULL, *dup = NULL;
        char base[APPLY_REV_NAME_MAX], alt[APPLY_REV_NAME_MAX];
        const char *use;
        apply_live live;
        size_t n;
        int r;

        bundle_fd = open_bundle(root_fd, m->namespace, m->name, true, &ns_fd);
        if (bundle_fd < 0)
                return err_info_set(e, bundle_fd, "bundle %s/%s: cannot open %s/%s/%s: %s",
                                    m->namespace, m->name, root, m->namespace, m->name,
                                    strerror(-bundle_fd));
        remove_deleted(ns_fd);
        remove_tmp_links(bundle_fd);

        rev_names(m, base, alt);
        use = base;
        if (read_data_link(bundle_fd, &live) >= 0 && streq(live.dir, base))
                use = alt;
        r = stage_into(bundle_fd, use, m, e);
        if (r < 0)
                return r;
        n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
                n--;
        if (asprintf(&path, "%.*s/%s/%s/%s", (int) n, root, m->namespace, m->name, use) < 0) {
                path = NULL;
                return -ENOMEM;
        }
        dup = strdup(use);
        if (!dup)
                return -ENOMEM;
        if (ret_path)
                *ret_path = TAKE_PTR(path);
        if (ret_name)
                *ret_name = TAKE_PTR(dup);
        return 0;
}

int apply_stage(const char *root, const manifest *m, char **ret_name, char **ret_path,
                err_info *ret_err) {
        _cleanup_close_ int root_fd = -1;
        int r;

        r = check_manifest(m, ret_err);
        if (r < 0)
                return r;
        root_fd = open_root(root, true, ret_err);
        if (root_fd < 0)
                return root_fd;
        return stage(root_fd, m, root, ret_name, ret_path, ret_err);
}

/* ---- swapping ----------------------------------------------------------- */

static void strv_free_n(char **l, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(l[i]);
        free(l);
}

/* Top-level entries of the revision directory. */
static int list_top(int bundle_fd, const char *rev_name, char ***ret, size_t *ret_n) {
        _cleanup_close_ int fd = -1;
        char **l = NULL;
        size_t n = 0;
        DIR *d;

        fd = openat(bundle_fd, rev_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOTDIR ? -ELOOP : -errno;
        d = fdopendir(TAKE_FD(fd));
        if (!d)
                return -errno;
        for (struct dirent *de; (de = readdir(d));) {
                char **x;

                if (de->d_name[0] == '.' && de->d_name[1] == '.')
                        continue; /* ".", "..", and never a bundle path */
                if (streq(de->d_name, "."))
                        continue;
                x = realloc(l, (n + 1) * sizeof(char *));
                if (!x) {
                        closedir(d);
                        strv_free_n(l, n);
                        return -ENOMEM;
                }
                l = x;
                l[n] = strdup(de->d_name);
                if (!l[n]) {
                        closedir(d);
                        strv_free_n(l, n);
                        return -ENOMEM;
                }
                n++;
        }
        closedir(d);
        *ret = l;
        *ret_n = n;
        return 0;
}

static bool in_list(char **l, size_t n, const char *s) {
        for (size_t i = 0; i < n; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

/* Makes @entry a symlink to "..data/@entry" unless it already is one. */
static int ensure_link(int bundle_fd, const char *entry) {
        char want[NAME_MAX + 16], have[PATH_MAX];
        ssize_t n;
        int r;

        snprintf(want, sizeof(want), APPLY_DATA_LINK "/%s", entry);
        n = readlinkat(bundle_fd, entry, have, sizeof(have) - 1);
        if (n >= 0) {
                have[n] = '\0';
                if (streq(have, want))
                        return 0;
        }
        r = fault(APPLY_STEP_LINK);
        if (r < 0)
                return r;
        (void) unlinkat(bundle_fd, LINK_TMP, 0);
        if (symlinkat(want, bundle_fd, LINK_TMP) < 0)
                return -errno;
        if (renameat(bundle_fd, LINK_TMP, bundle_fd, entry) < 0) {
                /* A real directory is in the way (planted, or an older
                 * layout): remove it, then retry once. */
                if (errno != EISDIR && errno != ENOTEMPTY && errno != EEXIST && errno != ENOTDIR)
                        return -errno;
                r = fsx_rm_rf_at(bundle_fd, entry);
                if (r < 0)
                        return r;
                if (renameat(bundle_fd, LINK_TMP, bundle_fd, entry) < 0)
                        return -errno;
        }
        return 0;
}

static int swap(int bundle_fd, const char *ns, const char *name, const char *rev_name,
                char **ret_previous, err_info *e) {
        _cleanup_free_ char *previous = NULL;
        char **top = NULL;
        size_t n_top = 0;
        apply_live live;
        struct stat st;
        DIR *d;
        int r, dfd;

        if (!parse_rev_name(rev_name, NULL))
                return err_info_set(e, -EINVAL, "bundle %s/%s: '%s' is not a revision directory",
                                    ns, name, rev_name);
        if (fstatat(bundle_fd, rev_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return err_info_set(e, -errno, "bundle %s/%s: %s: %m", ns, name, rev_name);
        if (!S_ISDIR(st.st_mode))
                return err_info_set(e, -ELOOP, "bundle %s/%s: %s is not a directory", ns, name,
                                    rev_name);
        if (read_data_link(bundle_fd, &live) >= 0) {
                previous = strdup(live.dir);
                if (!previous)
                        return -ENOMEM;
        }

        /* The switch: one rename of a fresh symlink over "..data". */
        remove_tmp_links(bundle_fd);
        r = fault(APPLY_STEP_SYMLINK_TMP);
        if (r >= 0 && symlinkat(rev_name, bundle_fd, APPLY_DATA_TMP) < 0)
                r = -errno;
        if (r < 0)
                return err_info_set(e, r, "bundle %s/%s: cannot create " APPLY_DATA_TMP ": %s", ns,
                                    name, strerror(-r));
        r = fault(APPLY_STEP_RENAME_DATA);
        if (r >= 0 && renameat(bundle_fd, APPLY_DATA_TMP, bundle_fd, APPLY_DATA_LINK) < 0) {
                r = -errno;
                /* "..data" is a real directory (planted): not ours to keep. */
                if (r == -EISDIR || r == -ENOTEMPTY || r == -EEXIST || r == -ENOTDIR) {
                        r = fsx_rm_rf_at(bundle_fd, APPLY_DATA_LINK);
                        if (r >= 0 &&
                            renameat(bundle_fd, APPLY_DATA_TMP, bundle_fd, APPLY_DATA_LINK) < 0)
                                r = -errno;
                }
        }
        if (r < 0) {
                (void) unlinkat(bundle_fd, APPLY_DATA_TMP, 0);
                return err_info_set(e, r,
                                    "bundle %s/%s: cannot switch " APPLY_DATA_LINK " to %s: %s", ns,
                                    name, rev_name, strerror(-r));
        }
        r = fault(APPLY_STEP_FSYNC_DIR);
        if (r >= 0)
                r = fsync_fd(bundle_fd);
        if (r < 0)
                return err_info_set(e, r, "bundle %s/%s: cannot sync after the switch: %s", ns,
                                    name, strerror(-r));

        /* From here on the new revision is live; what follows makes the
         * top-level names match it, and is redone by a repeated swap. */
        r = list_top(bundle_fd, rev_name, &top, &n_top);
        if (r < 0)
                return err_info_set(e, r, "bundle %s/%s: cannot list %s: %s", ns, name, rev_name,
                                    strerror(-r));
        for (size_t i = 0; i < n_top && r >= 0; i++) {
                r = ensure_link(bundle_fd, top[i]);
                if (r < 0)
                        err_info_set(e, r, "bundle %s/%s: cannot link %s: %s", ns, name, top[i],
                                     strerror(-r));
        }

        /* Remove what is not ours or no longer wanted; collect old revisions. */
        dfd = r >= 0 ? dup(bundle_fd) : -1;
        d = dfd >= 0 ? fdopendir(dfd) : NULL;
        if (r >= 0 && !d) {
                safe_close(dfd);
                r = err_info_set(e, -errno, "bundle %s/%s: cannot list: %m", ns, name);
        }
        for (struct dirent *de; d && r >= 0 && (de = readdir(d));) {
                const char *s = de->d_name;
                bool drop;
                apply_step step;

                if (streq(s, ".") || streq(s, "..") || streq(s, APPLY_DATA_LINK))
                        continue;
                if (parse_rev_name(s, NULL)) {
                        drop = !streq(s, rev_name) && !(previous && streq(s, previous));
                        step = APPLY_STEP_GC;
                } else {
                        drop = !in_list(top, n_top, s);
                        step = APPLY_STEP_LINK;
                }
                if (!drop)
                        continue;
                r = fault(step);
                if (r >= 0)
                        r = fsx_rm_rf_at(dirfd(d), s);
                if (r < 0)
                        err_info_set(e, r, "bundle %s/%s: cannot remove %s: %s", ns, name, s,
                                     strerror(-r));
        }
        if (d)
                closedir(d);
        strv_free_n(top, n_top);
        if (r < 0)
                return r;
        r = fsync_fd(bundle_fd);
        if (r < 0)
                return err_info_set(e, r, "bundle %s/%s: cannot sync: %s", ns, name, strerror(-r));
        if (ret_previous)
                *ret_previous = TAKE_PTR(previous);
        return 0;
}

int apply_swap(const char *root, const char *ns, const char *name, const char *rev_name,
               char **ret_previous, err_info *ret_err) {
        _cleanup_close_ int root_fd = -1, bundle_fd = -1;

        if (!is_bundle_key(ns, name) || !rev_name)
                return err_info_set(ret_err, -EINVAL, "'%s/%s' is not a bundle name", strna(ns),
                                    strna(name));
        root_fd = open_root(root, false, ret_err);
        if (root_fd < 0)
                return root_fd;
        bundle_fd = open_bundle(root_fd, ns, name, false, NULL);
        if (bundle_fd < 0)
                return err_info_set(ret_err, bundle_fd, "bundle %s/%s: cannot open %s/%s/%s: %s",
                                    ns, name, root, ns, name, strerror(-bundle_fd));
        return swap(bundle_fd, ns, name, rev_name, ret_previous, ret_err);
}

/* ---- reading and verifying --------------------------------------------- */

int apply_current(const char *root, const char *ns, const char *name, apply_live *ret,
                  err_info *ret_err) {
        _cleanup_close_ int root_fd = -1, bundle_fd = -1;
        int r;

        if (!is_bundle_key(ns, name))
                return -EINVAL;
        root_fd = open_root(root, false, ret_err);
        if (root_fd < 0)
                return root_fd;
        bundle_fd = open_bundle(root_fd, ns, name, false, NULL);
        if (bundle_fd == -ENOENT)
                return -ENOENT;
        if (bundle_fd < 0)
                return err_info_set(ret_err, bundle_fd, "bundle %s/%s: %s", ns, name,
                                    strerror(-bundle_fd));
        r = read_data_link(bundle_fd, ret);
        if (r == -EBADMSG)
                return err_info_set(ret_err, r,
                                    "bundle %s/%s: " APPLY_DATA_LINK
                                    " is not a symlink to a revision directory",
                                    ns, name);
        return r;
}

/* Counts regular files below @fd; any other type (symlink, device, FIFO)
 * is a difference. */
static int count_files(int fd, size_t *count, unsigned level, char *bad, size_t bad_size) {
        int dfd = dup(fd);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
        int r = 0;

        if (!d) {
                safe_close(dfd);
                return -errno;
        }
        rewinddir(d);
        for (struct dirent *de; r >= 0 && (de = readdir(d));) {
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        r = -errno;
                        break;
                }
                if (S_ISREG(st.st_mode))
                        (*count)++;
                else if (S_ISDIR(st.st_mode) && level < 64) {
                        _cleanup_close_ int sub =
                                openat(dirfd(d), de->d_name,
                                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                        r = sub < 0 ? -errno : count_files(sub, count, level + 1, bad, bad_size);
                } else {
                        snprintf(bad, bad_size, "%s is not a regular file or directory",
                                 de->d_name);
                        r = -EUCLEAN;
                }
        }
        closedir(d);
        return r;
}

/* 0 if the tree at @rev_fd is exactly @m's files, else -EUCLEAN with why. */
static int verify_tree(int rev_fd, const manifest *m, err_info *e) {
        char bad[NAME_MAX + 64] = "";
        size_t count = 0;
        int r;

        for (size_t i = 0; i < m->n_files; i++) {
                const manifest_file *f = &m->files[i];
                _cleanup_close_ int fd = -1;
                char hex[HASH_SHA256_HEX_LEN + 1];
                struct stat st;

                fd = fsx_open_beneath(rev_fd, f->path, O_RDONLY | O_NOCTTY, 0);
                if (fd < 0)
                        return err_info_set(e, -EUCLEAN, "%s: cannot open: %s", f->path,
                                            strerror(-fd));
                if (fstat(fd, &st) < 0)
                        return -errno;
                if (!S_ISREG(st.st_mode))
                        return err_info_set(e, -EUCLEAN, "%s: not a regular file", f->path);
                if ((st.st_mode & 07777) != f->mode)
                        return err_info_set(e, -EUCLEAN, "%s: mode %04o, want %04o", f->path,
                                            (unsigned) (st.st_mode & 07777), (unsigned) f->mode);
                if ((uint64_t) st.st_size != f->size)
                        return err_info_set(e, -EUCLEAN, "%s: %jd bytes, want %zu", f->path,
                                            (intmax_t) st.st_size, f->size);
                {
                        _cleanup_free_ char *buf = malloc(f->size + 1);
                        size_t got = 0;

                        if (!buf)
                                return -ENOMEM;
                        while (got < f->size) {
                                ssize_t n = pread(fd, buf + got, f->size - got, (off_t) got);

                                if (n < 0 && errno == EINTR)
                                        continue;
                                if (n <= 0)
                                        return err_info_set(e, -EUCLEAN, "%s: short read", f->path);
                                got += (size_t) n;
                        }
                        r = hash_sha256_hex(buf, f->size, hex);
                        if (r < 0)
                                return r;
                }
                if (!streq(hex, f->sha256))
                        return err_info_set(e, -EUCLEAN, "%s: content differs (sha256 %s)", f->path,
                                            hex);
        }
        r = count_files(rev_fd, &count, 0, bad, sizeof(bad));
        if (r == -EUCLEAN)
                return err_info_set(e, r, "%s", bad);
        if (r < 0)
                return err_info_set(e, -EUCLEAN, "cannot list: %s", strerror(-r));
        if (count != m->n_files)
                return err_info_set(e, -EUCLEAN, "%zu files, want %zu", count, m->n_files);
        return 0;
}

int apply_verify(const char *root, const manifest *m, err_info *ret_err) {
        _cleanup_close_ int root_fd = -1, bundle_fd = -1, rev_fd = -1;
        char base[APPLY_REV_NAME_MAX], alt[APPLY_REV_NAME_MAX];
        char **top = NULL;
        size_t n_top = 0;
        apply_live live;
        int r;

        r = check_manifest(m, ret_err);
        if (r < 0)
                return r;
        root_fd = open_root(root, false, ret_err);
        if (root_fd < 0)
                return root_fd;
        bundle_fd = open_bundle(root_fd, m->namespace, m->name, false, NULL);
        if (bundle_fd == -ENOENT)
                return err_info_set(ret_err, -ENOENT, "bundle %s/%s is not applied", m->namespace,
                                    m->name);
        if (bundle_fd < 0)
                return err_info_set(ret_err, -EUCLEAN, "bundle %s/%s: %s", m->namespace, m->name,
                                    strerror(-bundle_fd));
        r = read_data_link(bundle_fd, &live);
        if (r == -ENOENT)
                return err_info_set(ret_err, -ENOENT, "bundle %s/%s is not applied", m->namespace,
                                    m->name);
        if (r < 0)
                return err_info_set(ret_err, -EUCLEAN,
                                    "bundle %s/%s: " APPLY_DATA_LINK " is not ours", m->namespace,
                                    m->name);
        rev_names(m, base, alt);
        if (!streq(live.dir, base) && !streq(live.dir, alt))
                return err_info_set(ret_err, -ESTALE,
                                    "bundle %s/%s: revision %" PRIi64 " is live, not %" PRIi64,
                                    m->namespace, m->name, live.revision, m->revision);
        rev_fd = openat(bundle_fd, live.dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (rev_fd < 0)
                return err_info_set(ret_err, -EUCLEAN, "bundle %s/%s: %s: %m", m->namespace,
                                    m->name, live.dir);
        r = verify_tree(rev_fd, m, ret_err);
        if (r < 0) {
                if (ret_err) {
                        char inner[sizeof(ret_err->message)];

                        snprintf(inner, sizeof(inner), "%s", ret_err->message);
                        err_info_set(ret_err, r, "bundle %s/%s revision %" PRIi64 ": %s",
                                     m->namespace, m->name, m->revision, inner);
                }
                return r;
        }
        r = list_top(bundle_fd, live.dir, &top, &n_top);
        if (r < 0)
                return err_info_set(ret_err, -EUCLEAN, "bundle %s/%s: cannot list: %s",
                                    m->namespace, m->name, strerror(-r));
        for (size_t i = 0; i < n_top; i++) {
                char want[NAME_MAX + 16], have[PATH_MAX];
                ssize_t n = readlinkat(bundle_fd, top[i], have, sizeof(have) - 1);

                snprintf(want, sizeof(want), APPLY_DATA_LINK "/%s", top[i]);
                if (r >= 0 && (n < 0 || (have[n] = '\0', !streq(have, want))))
                        r = err_info_set(ret_err, -EUCLEAN, "bundle %s/%s: %s is not a link to %s",
                                         m->namespace, m->name, top[i], want);
        }
        strv_free_n(top, n_top);
        return r;
}

/* ---- rollback, discard, remove ------------------------------------------ */

int apply_rollback(const char *root, const manifest *m, err_info *ret_err) {
        _cleanup_close_ int root_fd = -1, bundle_fd = -1;
        char base[APPLY_REV_NAME_MAX], alt[APPLY_REV_NAME_MAX];
        const char *use = NULL;
        _cleanup_free_ char *staged = NULL;
        int r;

        r = check_manifest(m, ret_err);
        if (r < 0)
                return r;
        root_fd = open_root(root, true, ret_err);
        if (root_fd < 0)
                return root_fd;
        bundle_fd = open_bundle(root_fd, m->namespace, m->name, true, NULL);
        if (bundle_fd < 0)
                return err_info_set(ret_err, bundle_fd, "bundle %s/%s: cannot open: %s",
                                    m->namespace, m->name, strerror(-bundle_fd));

        /* Reuse the kept directory only if it is exactly @m. */
        rev_names(m, base, alt);
        for (unsigned i = 0; i < 2 && !use; i++) {
                const char *cand = i == 0 ? base : alt;
                _cleanup_close_ int fd =
                        openat(bundle_fd, cand, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                if (fd >= 0 && verify_tree(fd, m, NULL) >= 0)
                        use = cand;
        }
        if (!use) {
                r = stage(root_fd, m, root, &staged, NULL, ret_err);
                if (r < 0)
                        return r;
                use = staged;
        }
        return swap(bundle_fd, m->namespace, m->name, use, NULL, ret_err);
}

int apply_discard(const char *root, const char *ns, const char *name, const char *rev_name,
                  err_info *ret_err) {
        _cleanup_close_ int root_fd = -1, bundle_fd = -1;
        apply_live live;
        int r;

        if (!is_bundle_key(ns, name) || !rev_name || !parse_rev_name(rev_name, NULL))
                return -EINVAL;
        root_fd = open_root(root, false, ret_err);
        if (root_fd < 0)
                return root_fd;
        bundle_fd = open_bundle(root_fd, ns, name, false, NULL);
        if (bundle_fd == -ENOENT)
                return 0;
        if (bundle_fd < 0)
                return err_info_set(ret_err, bundle_fd, "bundle %s/%s: %s", ns, name,
                                    strerror(-bundle_fd));
        if (read_data_link(bundle_fd, &live) >= 0 && streq(live.dir, rev_name))
                return err_info_set(ret_err, -EBUSY, "bundle %s/%s: %s is live", ns, name,
                                    rev_name);
        r = fsx_rm_rf_at(bundle_fd, rev_name);
        if (r >= 0)
                r = fsync_fd(bundle_fd);
        if (r < 0)
                return err_info_set(ret_err, r, "bundle %s/%s: cannot remove %s: %s", ns, name,
                                    rev_name, strerror(-r));
        return 0;
}

int apply_remove(const char *root, const char *ns, const char *name, err_info *ret_err) {
        _cleanup_close_ int root_fd = -1, ns_fd = -1;
        char del[NAME_MAX + 1];
        int r;

        if (!is_bundle_key(ns, name))
                return err_info_set(ret_err, -EINVAL, "'%s/%s' is not a bundle name", strna(ns),
                                    strna(name));
        root_fd = open_root(root, false, ret_err);
        if (root_fd == -ENOENT)
                return 0;
        if (root_fd < 0)
                return root_fd;
        ns_fd = openat(root_fd, ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (ns_fd < 0) {
                if (errno == ENOENT)
                        return 0;
                if (errno != ENOTDIR && errno != ELOOP)
                        return err_info_set(ret_err, -errno, "bundle %s/%s: cannot open %s: %m", ns,
                                            name, ns);
                /* A symlink or file planted at our namespace name holds no
                 * bundle of ours: remove it (never its target). */
                r = fsx_rm_rf_at(root_fd, ns);
                if (r >= 0)
                        r = fsync_fd(root_fd);
                return r < 0 ? err_info_set(ret_err, r, "bundle %s/%s: cannot remove %s: %s", ns,
                                            name, ns, strerror(-r))
                             : 0;
        }
        remove_deleted(ns_fd);
        snprintf(del, sizeof(del), DEL_PREFIX "%s", name);
        if (renameat(ns_fd, name, ns_fd, del) < 0) {
                if (errno == ENOENT)
                        goto out_rmdir_ns;
                return err_info_set(ret_err, -errno, "bundle %s/%s: cannot remove: %m", ns, name);
        }
        r = fsync_fd(ns_fd);
        if (r >= 0)
                r = fsx_rm_rf_at(ns_fd, del);
        if (r < 0)
                return err_info_set(ret_err, r, "bundle %s/%s: cannot remove: %s", ns, name,
                                    strerror(-r));
out_rmdir_ns:
        if (unlinkat(root_fd, ns, AT_REMOVEDIR) >= 0)
                (void) fsync_fd(root_fd);
        return 0;
}
