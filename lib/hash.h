/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Content hashes (OpenSSL EVP). Digests of bundles, files and S3 payloads. */

#include <stdbool.h>
#include <stddef.h>

#define HASH_SHA256_HEX_LEN 64

/* Writes the lowercase hex sha256 of @len bytes of @data and a NUL into
 * @ret_hex (HASH_SHA256_HEX_LEN + 1 bytes). Returns 0 or -EIO. */
int hash_sha256_hex(const void *data, size_t len, char ret_hex[static HASH_SHA256_HEX_LEN + 1]);

/* Writes the raw 32-byte sha256 of @data into @ret. Returns 0 or -EIO. */
int hash_sha256(const void *data, size_t len, unsigned char ret[static 32]);

/* True if @s is exactly 64 lowercase hex digits. */
bool hash_is_sha256_hex(const char *s);
