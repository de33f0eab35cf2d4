/* MD5 (RFC 1321) for fsgw: what S3 clients check a body against (its ETag, Content-MD5), not a
 * guard against anyone (the SHA-256 is). Computed beside the SHA-256 where the body passes, so that
 * an upload through the HTTP door can also move by splice: a pool worker hashes each pipe-full
 * into both (fsgw_hash_update). Plain structs with no pointers, like fsgw_sha256. */
#ifndef FSGW_MD5_H
#define FSGW_MD5_H

#include <stddef.h>
#include <stdint.h>

#include "fsgw_sha256.h"

typedef struct fsgw_md5 {
  uint32_t h[4];
  uint64_t bytes;     /* bytes hashed so far */
  uint8_t block[64];  /* a partial block */
  uint32_t used;      /* bytes in block */
  uint32_t pad;
} fsgw_md5;           /* 96 bytes */

void fsgw_md5_init(fsgw_md5 *c);
void fsgw_md5_update(fsgw_md5 *c, const void *data, size_t len);
/* The 16-byte digest of everything hashed so far; the context is left as it was. */
void fsgw_md5_digest(const fsgw_md5 *c, uint8_t out[16]);

/* A SHA-256 with an MD5 beside it, in one buffer: what fsgw_hash_update feeds both of. Its
 * sha256.pad holds FSGW_DIGESTS_MARK, so that code given the SHA-256 context alone (the splice of
 * an upload, which knows nothing of HTTP) tells the pair from a lone SHA-256 (pad 0). */
typedef struct fsgw_digests {
  fsgw_sha256 sha256;
  fsgw_md5 md5;
} fsgw_digests;       /* 208 bytes */

#define FSGW_DIGESTS_MARK 0x3544444du /* "MDD5" */

void fsgw_digests_init(fsgw_digests *d);
/* Adds data to c, and to its MD5 when c is the SHA-256 of an fsgw_digests. */
void fsgw_hash_update(fsgw_sha256 *c, const void *data, size_t len);
/* The pair's MD5 digest. */
void fsgw_digests_md5(const fsgw_digests *d, uint8_t out[16]);

#endif
