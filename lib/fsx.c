/* SPDX-License-Identifier: Apache-2.0 */

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backoff.h"
#include "fsx.h"

int (*fsx_fault_hook)(fsx_step step) = NULL;
bool fsx_disable_openat2 = false;
bool fsx_disable_tmpfile = false;

#define RM_RF_MAX_DEPTH 512

static int fault(fsx_step step) {
        int r;

        if (!fsx_fault_hook)
                return 0;
        r = fsx_fault_hook(step);
        return r < 0 ? r : 0;
}

bool fsx_is_safe_relpath(const char *path) {
        size_t n;
        const char *seg;

        if (isempty(path))
                return false;
        n = strnlen(path, FSX_PATH_MAX + 1);
        if (n > FSX_PATH_MAX)
                return false;
        if (path[0] == '/' || path[n - 1] == '/')
                return false;
        for (const char *p = path; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;

        /* Every segment non-empty and neither "." nor "..". */
        seg = path;
        for (;;) {
                const char *end = strchrnul(seg, '/');
                size_t len = (size_t) (end - seg);

                if (len == 0 || len > NAME_MAX)
                        return false;
                if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
                        return false;
                if (*end == '\0')
                        return true;
                seg = end + 1;
        }
}

static bool is_single_component(const char *name) {
        return fsx_is_safe_relpath(name) && !strchr(name, '/');
}

int fsx_fsync_dir(int dir_fd) {
        _cleanup_close_ int fd = -1;

        if (dir_fd == AT_FDCWD) {
                fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                dir_fd = fd;
        }
        while (fsync(dir_fd) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

static int write_all(int fd, const void *data, size_t len) {
        const char *p = data;

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

static int fsync_full(int fd) {
        while (fsync(fd) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

/* ".#NAME.XXXXXX": hidden, and recognisably ours. NAME is cut so the whole
 * stays within NAME_MAX. */
static void temp_name(char *buf, size_t size, const char *name) {
        static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
        char suffix[7];

        for (unsigned i = 0; i < 6; i++)
                suffix[i] = chars[random_u64_below(sizeof(chars) - 2)];
        suffix[6] = '\0';
        snprintf(buf, size, ".#%.*s.%s", NAME_MAX - 10, name, suffix);
}

/* Whether O_TMPFILE + linkat() worked before; after a failure we stop trying
 * (a filesystem without O_TMPFILE, no /proc). */
static bool tmpfile_broken;

static int link_tmpfile(int fd, int dir_fd, const char *name, char *tmp, size_t tmp_size) {
        char proc[64];

        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        for (unsigned attempt = 0; attempt < 100; attempt++) {
                temp_name(tmp, tmp_size, name);
                if (linkat(AT_FDCWD, proc, dir_fd, tmp, AT_SYMLINK_FOLLOW) >= 0)
                        return 0;
                if (errno == EEXIST)
                        continue;
                /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, /proc may be absent. */
                if (linkat(fd, "", dir_fd, tmp, AT_EMPTY_PATH) >= 0)
                        return 0;
                if (errno == EEXIST)
                        continue;
                return -errno;
        }
        return -EEXIST;
}

/* One attempt. Returns -EOPNOTSUPP (with nothing left on disk) when an
 * O_TMPFILE could not be linked in, so the caller retries with a named temp. */
static int write_atomic_once(int dir_fd, const char *name, const void *data, size_t len,
                             mode_t mode, bool use_tmpfile) {
        _cleanup_close_ int fd = -1;
        char tmp[NAME_MAX + 1] = "";
        bool linked = false;
        int r;

        r = fault(FSX_STEP_OPEN_TEMP);
        if (r < 0)
                return r;
        if (use_tmpfile) {
                fd = openat(dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode & 07777);
                if (fd < 0) {
                        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL &&
                            errno != ENOENT)
                                return -errno;
                        tmpfile_broken = true;
                        use_tmpfile = false;
                }
        }
        if (!use_tmpfile) {
                for (unsigned attempt = 0; attempt < 100 && fd < 0; attempt++) {
                        temp_name(tmp, sizeof(tmp), name);
                        fd = openat(dir_fd, tmp,
                                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
                                    mode & 07777);
                        if (fd < 0 && errno != EEXIST)
                                return -errno;
                }
                if (fd < 0)
                        return -EEXIST;
                linked = true;
        }

        /* The exact mode, whatever the umask. */
        if (fchmod(fd, mode & 07777) < 0) {
                r = -errno;
                goto out_unlink;
        }

        r = fault(FSX_STEP_WRITE);
        if (r >= 0)
                r = write_all(fd, data, len);
        if (r < 0)
                goto out_unlink;

        r = fault(FSX_STEP_FSYNC_FILE);
        if (r >= 0)
                r = fsync_full(fd);
        if (r < 0)
                goto out_unlink;

        r = fault(FSX_STEP_RENAME);
        if (r < 0)
                goto out_unlink;
        if (!linked) {
                r = link_tmpfile(fd, dir_fd, name, tmp, sizeof(tmp));
                if (r < 0) {
                        tmpfile_broken = true;
                        return -EOPNOTSUPP;
                }
                linked = true;
        }
        if (renameat(dir_fd, tmp, dir_fd, name) < 0) {
                r = -errno;
                goto out_unlink;
        }

        /* Past the rename the new content is in place; a failed directory
         * fsync only means it may not survive a crash. */
        r = fault(FSX_STEP_FSYNC_DIR);
        if (r >= 0)
                r = fsx_fsync_dir(dir_fd);
        return r;

out_unlink:
        if (linked)
                (void) unlinkat(dir_fd, tmp, 0);
        return r;
}

int fsx_write_atomic(int dir_fd, const char *name, const void *data, size_t len, mode_t mode) {
        int r;

        if (!is_single_component(name) || (!data && len > 0))
                return -EINVAL;

        r = write_atomic_once(dir_fd, name, data, len, mode,
                              !tmpfile_broken && !fsx_disable_tmpfile);
        if (r == -EOPNOTSUPP)
                r = write_atomic_once(dir_fd, name, data, len, mode, false);
        return r;
}

int fsx_read_file(int dir_fd, const char *name, size_t max_size, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;
        struct stat st;

        if (!name)
                return -EINVAL;
        /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EINVAL; /* a FIFO or device could block or never end */
        if (fcntl(fd, F_SETFL, 0) < 0)
                return -errno;

        /* st_size is a hint only (files in /proc say 0). */
        cap = (size_t) MIN((uint64_t) st.st_size, (uint64_t) max_size) + 1;
        for (;;) {
                ssize_t n;

                if (len + 1 >= cap) {
                        size_t ncap;
                        char *b;

                        if (len > max_size)
                                return -EFBIG;
                        ncap = MAX(cap * 2, (size_t) 4096);
                        ncap = MIN(ncap, max_size + 2);
                        b = realloc(buf, ncap);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                        cap = ncap;
                } else if (!buf) {
                        buf = malloc(cap);
                        if (!buf)
                                return -ENOMEM;
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
                buf = malloc(1);
                if (!buf)
                        return -ENOMEM;
        }
        buf[len] = '\0';
        if (ret_len)
                *ret_len = len;
        if (ret)
                *ret = TAKE_PTR(buf);
        return 0;
}

/* Opens directory @name in @dir_fd without following a symlink: -ELOOP if it
 * is one. */
static int open_dir_nofollow(int dir_fd, const char *name) {
        int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;

        if (fd >= 0)
                return fd;
        if (errno == ENOTDIR || errno == ELOOP) {
                int saved = errno;

                if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) >= 0 && S_ISLNK(st.st_mode))
                        return -ELOOP;
                return -saved;
        }
        return -errno;
}

static int open_beneath_walk(int root_fd, const char *path, int flags, mode_t mode) {
        _cleanup_close_ int cur = -1;
        char buf[FSX_PATH_MAX + 1];
        char *seg, *slash;
        int fd;

        snprintf(buf, sizeof(buf), "%s", path);
        seg = buf;
        while ((slash = strchr(seg, '/'))) {
                *slash = '\0';
                fd = open_dir_nofollow(cur >= 0 ? cur : root_fd, seg);
                if (fd < 0)
                        return fd;
                safe_close(cur);
                cur = fd;
                seg = slash + 1;
        }
        fd = openat(cur >= 0 ? cur : root_fd, seg, flags | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        return fd;
}

int fsx_open_beneath(int root_fd, const char *path, int flags, mode_t mode) {
        struct open_how how = {};
        long fd;

        if (!fsx_is_safe_relpath(path))
                return -EINVAL;

        if (!fsx_disable_openat2) {
                how.flags = (uint64_t) (flags | O_NOFOLLOW | O_CLOEXEC);
                how.mode = (flags & (O_CREAT | O_TMPFILE)) ? (uint64_t) (mode & 07777) : 0;
                how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
                fd = syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
                if (fd >= 0)
                        return (int) fd;
                /* ENOSYS: kernel < 5.6; EPERM: a seccomp filter that predates
                 * openat2. Walk instead. */
                if (errno != ENOSYS && errno != EPERM)
                        return errno == EXDEV ? -ELOOP : -errno;
        }
        return open_beneath_walk(root_fd, path, flags, mode);
}

int fsx_mkdir_beneath(int root_fd, const char *path, mode_t mode) {
        _cleanup_close_ int cur = -1;
        char buf[FSX_PATH_MAX + 1];
        char *seg;

        if (!fsx_is_safe_relpath(path))
                return -EINVAL;

        snprintf(buf, sizeof(buf), "%s", path);
        seg = buf;
        for (;;) {
                char *slash = strchr(seg, '/');
                int dfd = cur >= 0 ? cur : root_fd, fd;

                if (slash)
                        *slash = '\0';
                if (mkdirat(dfd, seg, mode & 07777) < 0 && errno != EEXIST)
                        return -errno;
                /* Re-check what is there now: a symlink planted before or
                 * after our mkdirat() is refused. */
                fd = open_dir_nofollow(dfd, seg);
                if (fd < 0)
                        return fd;
                safe_close(cur);
                cur = fd;
                if (!slash)
                        return TAKE_FD(cur);
                seg = slash + 1;
        }
}

static int rm_rf_at(int dir_fd, const char *name, unsigned depth) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        DIR *d;
        int r = 0;

        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode)) {
                if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
                        return -errno;
                return 0;
        }
        if (depth >= RM_RF_MAX_DEPTH)
                return -ELOOP;

        fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                if (errno == ENOTDIR || errno == ELOOP) {
                        /* Replaced by a file or symlink meanwhile: remove that. */
                        if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
                                return -errno;
                        return 0;
                }
                return -errno;
        }
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -1; /* owned by d now */

        for (;;) {
                struct dirent *de;
                int k;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0 && r >= 0)
                                r = -errno;
                        break;
                }
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                k = rm_rf_at(dirfd(d), de->d_name, depth + 1);
                if (k < 0 && r >= 0)
                        r = k;
        }
        closedir(d);
        if (r < 0)
                return r;
        if (unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int fsx_rm_rf_at(int dir_fd, const char *name) {
        if (isempty(name) || strchr(name, '/') || streq(name, ".") || streq(name, ".."))
                return -EINVAL;
        return rm_rf_at(dir_fd, name, 0);
}
