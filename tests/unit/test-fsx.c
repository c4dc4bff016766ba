/* SPDX-License-Identifier: Apache-2.0 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "fsx.h"

/* Each test gets a fresh directory: "root" (what the helpers may touch)
 * beside "outside" (what they must never touch). */
typedef struct fixture {
        char base[64];
        int base_fd, root_fd, outside_fd;
} fixture;

static int setup(void **state) {
        fixture *f = calloc(1, sizeof(*f));

        snprintf(f->base, sizeof(f->base), "/tmp/test-fsx-XXXXXX");
        if (!mkdtemp(f->base))
                return -1;
        f->base_fd = open(f->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (mkdirat(f->base_fd, "root", 0755) < 0 || mkdirat(f->base_fd, "outside", 0755) < 0)
                return -1;
        f->root_fd = openat(f->base_fd, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        f->outside_fd = openat(f->base_fd, "outside", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        *state = f;
        fsx_fault_hook = NULL;
        fsx_disable_openat2 = false;
        fsx_disable_tmpfile = false;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;
        int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        fsx_fault_hook = NULL;
        close(f->root_fd);
        close(f->outside_fd);
        close(f->base_fd);
        assert_int_equal(fsx_rm_rf_at(tmp, f->base + strlen("/tmp/")), 0);
        assert_int_equal(faccessat(tmp, f->base + strlen("/tmp/"), F_OK, AT_SYMLINK_NOFOLLOW), -1);
        close(tmp);
        free(f);
        return 0;
}

static char *read_all(int dir_fd, const char *name) {
        char *s = NULL;

        if (fsx_read_file(dir_fd, name, 1 << 20, &s, NULL) < 0)
                return NULL;
        return s;
}

/* Number of entries in @dir_fd other than "." and "..". */
static unsigned count_entries(int dir_fd) {
        int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fdopendir(fd);
        struct dirent *de;
        unsigned n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static void test_safe_relpath(void **state) {
        char long_path[FSX_PATH_MAX + 2];
        char long_seg[300];
        const char *good[] = {"a",     "a/b", "a/b/c.conf", ".hidden", "a/..b",
                              "a/b..", "...", "x y",        "\xc3\xa9"};
        const char *bad[] = {"",     "/etc/passwd", "../x", "..",     ".",   "a/../../b",
                             "a//b", "a/./b",       "a/",   "a/b/",   "./a", "a/..",
                             "a\nb", "a\tb",        "\x7f", "a/\x01", "/"};

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                if (!fsx_is_safe_relpath(good[i]))
                        fail_msg("'%s' rejected", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (fsx_is_safe_relpath(bad[i]))
                        fail_msg("'%s' accepted", bad[i]);
        assert_false(fsx_is_safe_relpath(NULL));

        memset(long_path, 'a', sizeof(long_path));
        for (size_t i = 1; i < sizeof(long_path) - 1; i += 100)
                long_path[i] = '/';
        long_path[FSX_PATH_MAX] = '\0';
        assert_true(fsx_is_safe_relpath(long_path));
        long_path[FSX_PATH_MAX] = 'a';
        long_path[FSX_PATH_MAX + 1] = '\0';
        assert_false(fsx_is_safe_relpath(long_path));

        memset(long_seg, 'b', sizeof(long_seg) - 1);
        long_seg[sizeof(long_seg) - 1] = '\0';
        assert_false(fsx_is_safe_relpath(long_seg)); /* a segment over NAME_MAX */
}

static void test_write_atomic_basic(void **state) {
        fixture *f = *state;
        _cleanup_free_ char *a = NULL, *b = NULL;
        struct stat st;
        mode_t old_umask = umask(077);

        for (int tmpfile = 1; tmpfile >= 0; tmpfile--) {
                fsx_disable_tmpfile = !tmpfile;
                assert_int_equal(fsx_write_atomic(f->root_fd, "file", "one", 3, 0644), 0);
                free(a);
                a = read_all(f->root_fd, "file");
                assert_string_equal(a, "one");
                assert_int_equal(fstatat(f->root_fd, "file", &st, 0), 0);
                assert_int_equal(st.st_mode & 07777, 0644); /* exact, despite umask */

                assert_int_equal(fsx_write_atomic(f->root_fd, "file", "second", 6, 0600), 0);
                free(b);
                b = read_all(f->root_fd, "file");
                assert_string_equal(b, "second");
                assert_int_equal(fstatat(f->root_fd, "file", &st, 0), 0);
                assert_int_equal(st.st_mode & 07777, 0600);

                /* Empty content is content. */
                assert_int_equal(fsx_write_atomic(f->root_fd, "empty", NULL, 0, 0644), 0);
                assert_int_equal(fstatat(f->root_fd, "empty", &st, 0), 0);
                assert_int_equal(st.st_size, 0);
                assert_int_equal(count_entries(f->root_fd), 2);
        }
        umask(old_umask);

        assert_int_equal(fsx_write_atomic(f->root_fd, "a/b", "x", 1, 0644), -EINVAL);
        assert_int_equal(fsx_write_atomic(f->root_fd, "..", "x", 1, 0644), -EINVAL);
        assert_int_equal(fsx_write_atomic(f->root_fd, "", "x", 1, 0644), -EINVAL);
        assert_int_equal(fsx_write_atomic(f->root_fd, NULL, "x", 1, 0644), -EINVAL);
        assert_int_equal(fsx_write_atomic(f->root_fd, "x", NULL, 1, 0644), -EINVAL);
        assert_int_equal(count_entries(f->root_fd), 2);
}

static fsx_step fail_at;
static unsigned hook_calls;

static int failing_hook(fsx_step step) {
        hook_calls++;
        return step == fail_at ? -EIO : 0;
}

static void test_write_atomic_fault_injection(void **state) {
        fixture *f = *state;
        size_t big_len = 300000;
        _cleanup_free_ char *big = malloc(big_len);

        memset(big, 'n', big_len);
        for (int tmpfile = 1; tmpfile >= 0; tmpfile--) {
                fsx_disable_tmpfile = !tmpfile;
                for (fsx_step s = 0; s < _FSX_STEP_MAX; s++) {
                        _cleanup_free_ char *now = NULL;

                        fsx_fault_hook = NULL;
                        assert_int_equal(
                                fsx_write_atomic(f->root_fd, "state", "old content", 11, 0644), 0);

                        fail_at = s;
                        hook_calls = 0;
                        fsx_fault_hook = failing_hook;
                        assert_int_equal(fsx_write_atomic(f->root_fd, "state", big, big_len, 0644),
                                         -EIO);
                        fsx_fault_hook = NULL;
                        assert_int_equal(hook_calls, (unsigned) s + 1);

                        now = read_all(f->root_fd, "state");
                        assert_non_null(now);
                        if (s < FSX_STEP_FSYNC_DIR)
                                /* Failed before the rename: the old file is whole. */
                                assert_string_equal(now, "old content");
                        else {
                                /* Only durability is in doubt: the new file is whole. */
                                assert_int_equal(strlen(now), big_len);
                                assert_memory_equal(now, big, big_len);
                        }
                        /* No temporary left behind. */
                        assert_int_equal(count_entries(f->root_fd), 1);
                }

                /* A failed first write leaves nothing at all. */
                fail_at = FSX_STEP_RENAME;
                fsx_fault_hook = failing_hook;
                assert_int_equal(fsx_write_atomic(f->root_fd, "fresh", "x", 1, 0644), -EIO);
                fsx_fault_hook = NULL;
                assert_int_equal(faccessat(f->root_fd, "fresh", F_OK, AT_SYMLINK_NOFOLLOW), -1);
                assert_int_equal(count_entries(f->root_fd), 1);
        }
}

static void test_write_atomic_replaces_symlink_not_target(void **state) {
        fixture *f = *state;
        _cleanup_free_ char *out = NULL, *in = NULL;
        struct stat st;

        assert_int_equal(fsx_write_atomic(f->outside_fd, "secret", "keep", 4, 0600), 0);
        assert_int_equal(symlinkat("../outside/secret", f->root_fd, "link"), 0);
        assert_int_equal(fsx_write_atomic(f->root_fd, "link", "new", 3, 0644), 0);
        out = read_all(f->outside_fd, "secret");
        assert_string_equal(out, "keep");
        assert_int_equal(fstatat(f->root_fd, "link", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISREG(st.st_mode));
        in = read_all(f->root_fd, "link");
        assert_string_equal(in, "new");
}

static void test_read_file(void **state) {
        fixture *f = *state;
        char *s = NULL;
        size_t len = 0;

        assert_int_equal(fsx_write_atomic(f->root_fd, "f", "hello\0world", 11, 0644), 0);
        assert_int_equal(fsx_read_file(f->root_fd, "f", 100, &s, &len), 0);
        assert_int_equal(len, 11);
        assert_memory_equal(s, "hello\0world", 12); /* NUL-terminated too */
        free(s);

        s = NULL;
        assert_int_equal(fsx_read_file(f->root_fd, "f", 11, &s, &len), 0); /* exactly max */
        free(s);
        s = NULL;
        assert_int_equal(fsx_read_file(f->root_fd, "f", 10, &s, &len), -EFBIG);
        assert_null(s);

        assert_int_equal(fsx_write_atomic(f->root_fd, "empty", "", 0, 0644), 0);
        assert_int_equal(fsx_read_file(f->root_fd, "empty", 10, &s, &len), 0);
        assert_int_equal(len, 0);
        assert_string_equal(s, "");
        free(s);

        assert_int_equal(fsx_read_file(f->root_fd, "missing", 10, &s, &len), -ENOENT);
        assert_int_equal(mkdirat(f->root_fd, "dir", 0755), 0);
        assert_int_equal(fsx_read_file(f->root_fd, "dir", 10, &s, &len), -EISDIR);
        assert_int_equal(mkfifoat(f->root_fd, "fifo", 0644), 0);
        assert_int_equal(fsx_read_file(f->root_fd, "fifo", 10, &s, &len), -EINVAL);

        /* /proc files report size 0 but have content. */
        assert_int_equal(fsx_read_file(AT_FDCWD, "/proc/self/status", 1 << 20, &s, &len), 0);
        assert_true(len > 0);
        assert_non_null(strstr(s, "Name:"));
        free(s);
}

static void test_open_beneath(void **state) {
        fixture *f = *state;
        const char *hostile[] = {
                "../outside/x", "/etc/passwd",      "a//b", "a/./b", "a/../../b", "a/", "", "..",
                "a\nb",         "x/../../outside/x"};

        for (int walk = 0; walk <= 1; walk++) {
                int dfd, fd;
                char buf[16] = {};

                fsx_disable_openat2 = walk;

                for (size_t i = 0; i < ELEMENTSOF(hostile); i++)
                        assert_int_equal(
                                fsx_open_beneath(f->root_fd, hostile[i], O_WRONLY | O_CREAT, 0644),
                                -EINVAL);

                /* The ordinary case. */
                dfd = fsx_mkdir_beneath(f->root_fd, "a/b", 0755);
                assert_true(dfd >= 0);
                close(dfd);
                fd = fsx_open_beneath(f->root_fd, "a/b/c", O_WRONLY | O_CREAT | O_TRUNC, 0600);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, "data", 4), 4);
                close(fd);
                fd = fsx_open_beneath(f->root_fd, "a/b/c", O_RDONLY, 0);
                assert_true(fd >= 0);
                assert_int_equal(read(fd, buf, sizeof(buf)), 4);
                assert_string_equal(buf, "data");
                close(fd);
                /* Parents are not created by open. */
                assert_int_equal(fsx_open_beneath(f->root_fd, "new/c", O_WRONLY | O_CREAT, 0600),
                                 -ENOENT);

                /* A symlink as an intermediate directory, pointing out. */
                (void) unlinkat(f->root_fd, "evil", 0);
                assert_int_equal(symlinkat("../outside", f->root_fd, "evil"), 0);
                assert_int_equal(fsx_open_beneath(f->root_fd, "evil/x", O_WRONLY | O_CREAT, 0600),
                                 -ELOOP);
                /* Even one that stays inside the root. */
                (void) unlinkat(f->root_fd, "inner", 0);
                assert_int_equal(symlinkat("a", f->root_fd, "inner"), 0);
                assert_int_equal(fsx_open_beneath(f->root_fd, "inner/b/c", O_RDONLY, 0), -ELOOP);

                /* A symlink as the leaf: existing target, and dangling. */
                assert_int_equal(fsx_write_atomic(f->outside_fd, "target", "t", 1, 0644), 0);
                (void) unlinkat(f->root_fd, "leaf", 0);
                assert_int_equal(symlinkat("../outside/target", f->root_fd, "leaf"), 0);
                assert_int_equal(fsx_open_beneath(f->root_fd, "leaf", O_RDONLY, 0), -ELOOP);
                assert_int_equal(fsx_open_beneath(f->root_fd, "leaf", O_WRONLY | O_TRUNC, 0),
                                 -ELOOP);
                (void) unlinkat(f->root_fd, "dangling", 0);
                assert_int_equal(symlinkat("../outside/created", f->root_fd, "dangling"), 0);
                assert_int_equal(fsx_open_beneath(f->root_fd, "dangling", O_WRONLY | O_CREAT, 0600),
                                 -ELOOP);

                /* mkdir through a symlink is refused too. */
                assert_int_equal(fsx_mkdir_beneath(f->root_fd, "evil/sub", 0755), -ELOOP);
                assert_int_equal(fsx_mkdir_beneath(f->root_fd, "a/b/c/d", 0755), -ENOTDIR);
                assert_int_equal(fsx_mkdir_beneath(f->root_fd, "../x", 0755), -EINVAL);

                /* Nothing outside was touched. */
                assert_int_equal(count_entries(f->outside_fd), 1);
                {
                        _cleanup_free_ char *t = read_all(f->outside_fd, "target");

                        assert_string_equal(t, "t");
                }
        }
}

static void test_mkdir_beneath(void **state) {
        fixture *f = *state;
        int fd, fd2;
        struct stat st;

        fd = fsx_mkdir_beneath(f->root_fd, "x/y/z", 0750);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        /* The fd is the final directory. */
        assert_int_equal(fsx_write_atomic(fd, "in-z", "1", 1, 0644), 0);
        close(fd);
        assert_int_equal(fstatat(f->root_fd, "x/y/z/in-z", &st, 0), 0);

        /* Existing is fine. */
        fd2 = fsx_mkdir_beneath(f->root_fd, "x/y", 0750);
        assert_true(fd2 >= 0);
        close(fd2);
        /* A symlink as the last component. */
        assert_int_equal(symlinkat("/tmp", f->root_fd, "x/last"), 0);
        assert_int_equal(fsx_mkdir_beneath(f->root_fd, "x/last", 0750), -ELOOP);
}

static void test_rm_rf(void **state) {
        fixture *f = *state;
        int fd;

        assert_int_equal(fsx_write_atomic(f->outside_fd, "keep", "k", 1, 0644), 0);
        fd = fsx_mkdir_beneath(f->root_fd, "tree/a/b", 0755);
        assert_true(fd >= 0);
        assert_int_equal(fsx_write_atomic(fd, "file", "x", 1, 0644), 0);
        close(fd);
        assert_int_equal(symlinkat("../../outside", f->root_fd, "tree/a/out"), 0);
        assert_int_equal(symlinkat("/nonexistent", f->root_fd, "tree/dangling"), 0);
        assert_int_equal(mkfifoat(f->root_fd, "tree/a/fifo", 0644), 0);

        assert_int_equal(fsx_rm_rf_at(f->root_fd, "tree"), 0);
        assert_int_equal(count_entries(f->root_fd), 0);
        /* The symlink was removed, not followed. */
        assert_int_equal(count_entries(f->outside_fd), 1);

        assert_int_equal(fsx_rm_rf_at(f->root_fd, "missing"), 0);
        assert_int_equal(fsx_rm_rf_at(f->root_fd, "a/b"), -EINVAL);
        assert_int_equal(fsx_rm_rf_at(f->root_fd, ".."), -EINVAL);

        /* A plain file and a symlink at the top. */
        assert_int_equal(fsx_write_atomic(f->root_fd, "plain", "p", 1, 0644), 0);
        assert_int_equal(fsx_rm_rf_at(f->root_fd, "plain"), 0);
        assert_int_equal(symlinkat("../outside", f->root_fd, "toplink"), 0);
        assert_int_equal(fsx_rm_rf_at(f->root_fd, "toplink"), 0);
        assert_int_equal(count_entries(f->root_fd), 0);
        assert_int_equal(count_entries(f->outside_fd), 1);
}

static void test_fsync_dir(void **state) {
        fixture *f = *state;

        assert_int_equal(fsx_fsync_dir(f->root_fd), 0);
        assert_int_equal(fsx_fsync_dir(AT_FDCWD), 0);
        assert_int_equal(fsx_fsync_dir(-1), -EBADF);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_safe_relpath, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_atomic_basic, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_atomic_fault_injection, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_atomic_replaces_symlink_not_target,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_beneath, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mkdir_beneath, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rm_rf, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fsync_dir, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
