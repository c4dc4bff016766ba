/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A main() for libFuzzer harnesses built without libFuzzer: feeds every file
 * named on the command line (or found in a named directory) to
 * LLVMFuzzerTestOneInput() once. `make check` uses it to replay the seed
 * corpora under tests/fuzz/corpus/ with the sanitizers of the build; with
 * clang, `make fuzz` links the same harnesses against libFuzzer instead.
 */

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fsx.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(int dir_fd, const char *name, unsigned *count) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r;

        r = fsx_read_file(dir_fd, name, 64 * 1024 * 1024, &buf, &len);
        if (r < 0) {
                fprintf(stderr, "replay: cannot read %s: %s\n", name, strerror(-r));
                return r;
        }
        /* Hand the harness an exact-size heap copy so ASan sees overreads. */
        _cleanup_free_ uint8_t *exact = malloc(len ? len : 1);
        if (!exact)
                return -ENOMEM;
        memcpy(exact, buf, len);
        LLVMFuzzerTestOneInput(exact, len);
        (*count)++;
        return 0;
}

int main(int argc, char *argv[]) {
        unsigned count = 0;
        int rc = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "replay: %s: %m\n", argv[i]);
                        return 1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (replay_file(AT_FDCWD, argv[i], &count) < 0)
                                rc = 1;
                        continue;
                }
                DIR *d = opendir(argv[i]);
                if (!d) {
                        fprintf(stderr, "replay: %s: %m\n", argv[i]);
                        return 1;
                }
                for (struct dirent *de; (de = readdir(d));) {
                        if (de->d_name[0] == '.')
                                continue;
                        if (replay_file(dirfd(d), de->d_name, &count) < 0)
                                rc = 1;
                }
                closedir(d);
        }
        printf("replay: %u inputs, no crash\n", count);
        return rc;
}
