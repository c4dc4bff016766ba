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

int hash_sha256_hex(const void *data, size_t len, char ret_hex[static HASH_SHA256_HEX_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";
        unsigned char md[32];
        int r;

        r = hash_sha256(data, len, md);
        if (r < 0)
                return r;
        for (size_t i = 0; i < sizeof(md); i++) {
                ret_hex[2 * i] = hex[md[i] >> 4];
                ret_hex[2 * i + 1] = hex[md[i] & 15];
        }
        ret_hex[HASH_SHA256_HEX_LEN] = '\0';
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
