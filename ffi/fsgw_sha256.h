/* SHA-256 (FIPS 180-4) for fsgw: the digest every stored file carries. One context per body, in
 * memory its owner holds (JavaScript, through bun:ffi, or a pool operation): a plain struct with no
 * pointers, so it can be copied, kept across a broken connection, or saved beside a partial file.
 * Uses the CPU's SHA extensions (x86-64 SHA-NI) when present, portable C otherwise. */
#ifndef FSGW_SHA256_H
#define FSGW_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct fsgw_sha256 {
  uint32_t h[8];
  uint64_t bytes;     /* bytes hashed so far */
  uint8_t block[64];  /* a partial block */
  uint32_t used;      /* bytes in block */
  uint32_t pad;
} fsgw_sha256;        /* 112 bytes */

void fsgw_sha256_init(fsgw_sha256 *c);
void fsgw_sha256_update(fsgw_sha256 *c, const void *data, size_t len);
/* Writes the 32-byte digest of everything hashed so far; the context is left as it was (more may
 * be added and another digest taken). */
void fsgw_sha256_digest(const fsgw_sha256 *c, uint8_t out[32]);
/* The digest of len bytes in one call: a whole small body, with no context for the caller to keep. */
void fsgw_sha256_of(const void *data, size_t len, uint8_t out[32]);
/* 1 when the SHA-NI path is in use. */
int fsgw_sha256_accelerated(void);
/* Tests: 1 forces the portable path, 0 goes back to the best one (process-wide). */
void fsgw_debug_sha256_portable(int32_t on);

#endif
