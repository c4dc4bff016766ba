/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The small, audited code that touches the node's live files. A bundle's
 * files live under ROOT/NAMESPACE/NAME (ROOT defaults to /etc/ballast),
 * laid out like kubelet's atomic writer, with fsync:
 *
 *   ROOT/NS/NAME/..rev-3-a798de8ee75a/    one directory per staged revision
 *   ROOT/NS/NAME/..data -> ..rev-3-a798de8ee75a
 *   ROOT/NS/NAME/app.conf -> ..data/app.conf   one link per top-level entry
 *
 * Readers open ROOT/NS/NAME/app.conf and see one whole revision: the switch
 * is a single rename() of a "..data_tmp" symlink over "..data". Bundle paths
 * never start with "..", so they cannot collide with these names.
 *
 * Everything beneath ROOT is resolved with O_NOFOLLOW / fsx_*_beneath(): a
 * symlink planted anywhere under ROOT (at NS, NAME, "..data", a file, a
 * directory) is never followed. Where the agent owns the name (NS, NAME,
 * "..data", top-level links) a planted entry is removed and replaced; inside
 * a revision directory it makes the operation fail. The sequence and crash
 * recovery are in docs/agent-cache.md.
 *
 * @root is an absolute path chosen by the node's administrator and is
 * trusted (it may itself be a symlink); it is created if missing.
 */

#include <stdint.h>

#include "err.h"
#include "manifest.h"

#define APPLY_DATA_LINK     "..data"
#define APPLY_DATA_TMP      "..data_tmp"
#define APPLY_REV_PREFIX    "..rev-"
#define APPLY_DIGEST_PREFIX 12 /* hex digits of the digest in a revision dir's name */
#define APPLY_REV_NAME_MAX  64

/* Failure injection for tests: called before each step; a negative return
 * makes that step fail with that errno, as a full disk or I/O error would. */
typedef enum apply_step {
        APPLY_STEP_MKDIR_REV,   /* create the revision directory */
        APPLY_STEP_WRITE_FILE,  /* each file: create and write */
        APPLY_STEP_FSYNC,       /* each file and directory of the revision */
        APPLY_STEP_SYMLINK_TMP, /* create "..data_tmp" */
        APPLY_STEP_RENAME_DATA, /* rename it over "..data" */
        APPLY_STEP_FSYNC_DIR,   /* fsync the bundle directory after the swap */
        APPLY_STEP_LINK,        /* each top-level link created or removed */
        APPLY_STEP_GC,          /* each old revision directory removed */
        _APPLY_STEP_MAX,
} apply_step;
extern int (*apply_fault_hook)(apply_step step);

typedef struct apply_live {
        int64_t revision;
        char digest_prefix[APPLY_DIGEST_PREFIX + 1]; /* hex */
        char dir[APPLY_REV_NAME_MAX];                /* "..rev-N-HEX" or "..rev-N-HEX.1" */
} apply_live;

/* Writes manifest @m (verified; borrowed) into a new revision directory
 * ROOT/NS/NAME/..rev-N-HEX (or "..rev-N-HEX.1" when the first name is the
 * live one, so the live directory is never touched): creates NS and NAME as
 * needed (replacing a planted symlink or file there), removes a leftover of
 * an interrupted stage under the same name and a leftover "..data_tmp",
 * writes every file with O_CREAT|O_EXCL|O_NOFOLLOW and its exact mode,
 * fsyncs every file and directory. Nothing live changes. On success
 * *@ret_name is the directory's name (for apply_swap()) and *@ret_path its
 * absolute path (for a check command); both owned by the caller, either may
 * be NULL. Errors: -EINVAL for a manifest with an unsafe namespace, name or
 * path (defence in depth: manifest_parse() rejects them already), -ELOOP if a
 * symlink appears inside the new directory, and disk errors; the message
 * names the bundle, revision and file. A failed stage leaves a partial
 * directory that the next apply_swap() collects. */
int apply_stage(const char *root, const manifest *m, char **ret_name, char **ret_path,
                err_info *ret_err);

/* Makes revision directory @rev_name (from apply_stage()) the live one:
 * symlink "..data_tmp" -> @rev_name, rename() it over "..data" (replacing a
 * planted directory or file there), fsync the bundle directory; then makes
 * the top-level links match the new revision's top-level entries (adding,
 * replacing and removing; anything else not ours is removed), and removes
 * every other "..rev-*" directory except the previously live one, which is
 * kept for rollback. If it fails before the rename nothing live changed;
 * after it, the new revision is live and a repeat of the call completes the
 * links. *@ret_previous (owned, may be NULL) is the previously live
 * directory's name, or NULL if there was none. */
int apply_swap(const char *root, const char *ns, const char *name, const char *rev_name,
               char **ret_previous, err_info *ret_err);

/* Makes manifest @m live again (typically last-known-good after a failed
 * reload): reuses its revision directory if one is still there and matches
 * @m exactly, otherwise stages it afresh, then swaps to it. */
int apply_rollback(const char *root, const manifest *m, err_info *ret_err);

/* Removes ROOT/NS/NAME (the bundle no longer applies to this node): renamed
 * to ROOT/NS/..del-NAME in one step, fsynced, then deleted without following
 * symlinks; NS is removed when empty. Missing is not an error. */
int apply_remove(const char *root, const char *ns, const char *name, err_info *ret_err);

/* Reads which revision is live from "..data". -ENOENT if nothing is live,
 * -EBADMSG if "..data" is not a symlink to a "..rev-*" name. */
int apply_current(const char *root, const char *ns, const char *name, apply_live *ret,
                  err_info *ret_err);

/* Checks that the live revision is exactly @m: "..data" names @m's revision
 * directory, every file has @m's content (sha256), size and mode and is a
 * regular file, there is nothing else in it, and every top-level link is
 * in place. Returns 0; -ENOENT if nothing is live, -ESTALE if another
 * revision is live, -EUCLEAN with the first difference in @ret_err. */
int apply_verify(const char *root, const manifest *m, err_info *ret_err);

/* Removes a staged revision directory that will not be swapped in (its check
 * failed). Refuses the live one (-EBUSY). Missing is not an error. */
int apply_discard(const char *root, const char *ns, const char *name, const char *rev_name,
                  err_info *ret_err);
