/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Content hashes (OpenSSL EVP). Digests of bundles, files and S3 payloads. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HASH_SHA256_HEX_LEN 64

/* Writes the lowercase hex sha256 of @len bytes of @data and a NUL into
 * @ret_hex (HASH_SHA256_HEX_LEN + 1 bytes). Returns 0 or -EIO. */
int hash_sha256_hex(const void *data, size_t len, char ret_hex[static HASH_SHA256_HEX_LEN + 1]);

/* Writes the raw 32-byte sha256 of @data into @ret. Returns 0 or -EIO. */
int hash_sha256(const void *data, size_t len, unsigned char ret[static 32]);

/* Writes the lowercase hex of @md (32 bytes) and a NUL into @ret_hex. */
void hash_sha256_to_hex(const unsigned char md[static 32],
                        char ret_hex[static HASH_SHA256_HEX_LEN + 1]);

/* A body read piece by piece, in the shape of http_body_fn (lib/http.h):
 * up to @len bytes from @offset into @buf; how many, 0 at the end, or < 0. */
typedef ssize_t (*hash_read_fn)(void *buf, size_t len, uint64_t offset, void *userdata);

/* The sha256 (and the MD5 too, when @ret_md5 is not NULL; -EOPNOTSUPP where
 * MD5 is unavailable, as in FIPS mode) of the @len bytes @read produces,
 * read once from offset 0. A reader's error is returned; -EIO if it gives
 * other than @len bytes. */
int hash_read(hash_read_fn read, void *userdata, uint64_t len, unsigned char ret_sha256[static 32],
              unsigned char *ret_md5);

/* True if @s is exactly 64 lowercase hex digits. */
bool hash_is_sha256_hex(const char *s);
