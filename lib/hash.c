/* SPDX-License-Identifier: Apache-2.0 */

#include <errno.h>
#include <openssl/evp.h>

#include "hash.h"
#include "macro.h"

int hash_sha256(const void *data, size_t len, unsigned char ret[static 32]) {
        unsigned int n = 0;

        if (EVP_Digest(data, len, ret, &n, EVP_sha256(), NULL) != 1 || n != 32)
                return -EIO;
        return 0;
}

void hash_sha256_to_hex(const unsigned char md[static 32],
                        char ret_hex[static HASH_SHA256_HEX_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < 32; i++) {
                ret_hex[2 * i] = hex[md[i] >> 4];
                ret_hex[2 * i + 1] = hex[md[i] & 15];
        }
        ret_hex[HASH_SHA256_HEX_LEN] = '\0';
}

int hash_sha256_hex(const void *data, size_t len, char ret_hex[static HASH_SHA256_HEX_LEN + 1]) {
        unsigned char md[32];
        int r;

        r = hash_sha256(data, len, md);
        if (r < 0)
                return r;
        hash_sha256_to_hex(md, ret_hex);
        return 0;
}

static void md_ctx_freep(EVP_MD_CTX **c) {
        EVP_MD_CTX_free(*c);
}

int hash_read(hash_read_fn read, void *userdata, uint64_t len, unsigned char ret_sha256[static 32],
              unsigned char *ret_md5) {
        _cleanup_(md_ctx_freep) EVP_MD_CTX *sha = EVP_MD_CTX_new();
        _cleanup_(md_ctx_freep) EVP_MD_CTX *md5 = ret_md5 ? EVP_MD_CTX_new() : NULL;
        char chunk[16384];
        uint64_t at = 0;
        unsigned n = 0;

        if (!read || !sha || (ret_md5 && !md5))
                return -ENOMEM;
        if (EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1)
                return -EIO;
        if (md5 && EVP_DigestInit_ex(md5, EVP_md5(), NULL) != 1)
                return -EOPNOTSUPP;
        for (;;) {
                ssize_t k = read(chunk, sizeof(chunk), at, userdata);

                if (k < 0)
                        return (int) k;
                if (k == 0)
                        break;
                if ((size_t) k > sizeof(chunk) || (uint64_t) k > len - at)
                        return -EIO;
                if (EVP_DigestUpdate(sha, chunk, (size_t) k) != 1 ||
                    (md5 && EVP_DigestUpdate(md5, chunk, (size_t) k) != 1))
                        return -EIO;
                at += (uint64_t) k;
        }
        if (at != len)
                return -EIO;
        if (EVP_DigestFinal_ex(sha, ret_sha256, &n) != 1 || n != 32)
                return -EIO;
        if (md5 && (EVP_DigestFinal_ex(md5, ret_md5, &n) != 1 || n != 16))
                return -EIO;
        return 0;
}

bool hash_is_sha256_hex(const char *s) {
        size_t i;

        if (!s)
                return false;
        for (i = 0; s[i]; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return i == HASH_SHA256_HEX_LEN;
}
