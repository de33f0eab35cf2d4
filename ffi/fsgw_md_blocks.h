/* What MD5 and SHA-256 share (both Merkle-Damgard hashes of 64-byte blocks): gathering the bytes
 * of a partial block across updates, and the padding that ends a digest (0x80, zeros to 56 bytes
 * mod 64, the length in bits: little-endian for MD5, big-endian for SHA-256). Each hash passes its
 * own compression of whole blocks. Internal to the library's .c files. */
#ifndef FSGW_MD_BLOCKS_H
#define FSGW_MD_BLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef void (*fsgw_blocks_fn)(uint32_t *h, const uint8_t *p, size_t blocks);

/* Adds len bytes: a partial block is completed first, whole blocks go straight from data, the rest
 * waits in block (used bytes). */
static inline void fsgw_md_update(uint32_t *h, uint64_t *bytes, uint8_t block[64], uint32_t *used, const void *data, size_t len, fsgw_blocks_fn blocks) {
  const uint8_t *p = data;
  *bytes += len;
  if (*used > 0) {
    size_t take = 64 - *used < len ? 64 - *used : len;
    memcpy(block + *used, p, take);
    *used += (uint32_t)take;
    p += take;
    len -= take;
    if (*used < 64) return;
    blocks(h, block, 1);
    *used = 0;
  }
  if (len >= 64) {
    blocks(h, p, len / 64);
    p += len - len % 64;
    len %= 64;
  }
  memcpy(block, p, len);
  *used = (uint32_t)len;
}

/* Pads the state given (a copy: the caller's context stays as it was) and compresses the last
 * blocks; h then holds the digest's words. */
static inline void fsgw_md_finish(uint32_t *h, uint64_t bytes, uint8_t block[64], uint32_t used, int length_big_endian, fsgw_blocks_fn blocks) {
  uint64_t bits = bytes * 8;
  uint8_t pad[72] = {0x80};
  size_t padlen = (used < 56 ? 56 : 120) - used;
  for (int i = 0; i < 8; i++) pad[padlen + (size_t)i] = (uint8_t)(bits >> (length_big_endian ? 56 - 8 * i : 8 * i));
  fsgw_md_update(h, &bytes, block, &used, pad, padlen + 8, blocks);
}

#endif
