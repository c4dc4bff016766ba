/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Safe file handling. Everything that writes state goes through
 * fsx_write_atomic(): a crash at any instant leaves the old or the new
 * content, never a mix. Everything that resolves a path from untrusted input
 * (a manifest's file paths) goes through the *_beneath() helpers, which
 * cannot leave their root via "..", absolute paths or symlinks.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "macro.h"

#define FSX_PATH_MAX 1024 /* longest relative path we accept */

/* True if @path is a clean relative path: non-empty, at most FSX_PATH_MAX
 * bytes, no leading "/", no empty, "." or ".." segments, no NUL or control
 * characters, no trailing "/". */
bool fsx_is_safe_relpath(const char *path);

/* Atomically replaces @name in directory @dir_fd with @len bytes of @data and
 * mode @mode: creates a temporary file beside it (O_TMPFILE when possible, else
 * a random ".#name.XXXXXX"), writes, fsyncs, renames over @name, fsyncs the
 * directory. On failure nothing at @name changes and no temporary is left,
 * with one exception: when only the final directory fsync fails, the new
 * content is already in place (whole) but may not survive a crash, and the
 * error is returned. @name must be a single path component (-EINVAL). */
int fsx_write_atomic(int dir_fd, const char *name, const void *data, size_t len, mode_t mode);

/* Reads all of @name in @dir_fd (AT_FDCWD works) into a NUL-terminated
 * buffer owned by the caller. -EFBIG if longer than @max_size. */
int fsx_read_file(int dir_fd, const char *name, size_t max_size, char **ret, size_t *ret_len);

/* Opens @path beneath @root_fd, refusing symlinks in every component and any
 * path fsx_is_safe_relpath() rejects (-EINVAL for the path, -ELOOP for a
 * symlink). With O_CREAT in @flags, missing parent directories are NOT
 * created; see fsx_mkdir_beneath(). Returns the fd. */
int fsx_open_beneath(int root_fd, const char *path, int flags, mode_t mode);

/* mkdir -p of @path beneath @root_fd with the same rules. Returns an O_DIRECTORY
 * fd of the final directory. */
int fsx_mkdir_beneath(int root_fd, const char *path, mode_t mode);

/* Recursively removes @name (a single path component) in @dir_fd without
 * following symlinks. Missing is not an error. */
int fsx_rm_rf_at(int dir_fd, const char *name);

/* fsync()s the directory @dir_fd (retrying EINTR). */
int fsx_fsync_dir(int dir_fd);

/* Failure injection for tests (SQLite-style anomaly testing). When set, the
 * hook is called before each step of fsx_write_atomic() and can make it fail
 * by returning a negative errno. */
typedef enum fsx_step {
        FSX_STEP_OPEN_TEMP,
        FSX_STEP_WRITE,
        FSX_STEP_FSYNC_FILE,
        FSX_STEP_RENAME,
        FSX_STEP_FSYNC_DIR,
        _FSX_STEP_MAX,
} fsx_step;
extern int (*fsx_fault_hook)(fsx_step step);

/* For tests: take the fallback paths that other kernels and filesystems
 * need. fsx_disable_openat2 makes fsx_open_beneath() walk components (as on
 * kernels without openat2()); fsx_disable_tmpfile makes fsx_write_atomic()
 * use a named temporary (as on filesystems without O_TMPFILE). */
extern bool fsx_disable_openat2;
extern bool fsx_disable_tmpfile;
