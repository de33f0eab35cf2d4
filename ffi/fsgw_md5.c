/* MD5, RFC 1321: four rounds of sixteen steps over each 64-byte block, little-endian words. */
#include "fsgw_md5.h"
#include "fsgw_md_blocks.h"

#include <string.h>

static inline uint32_t rotl(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

/* RFC 1321, section 3.4: four rounds of sixteen steps, written out (a loop that picks the function
 * and the word per step costs about twice as much). The constants are floor(abs(sin(i)) * 2^32). */
#define F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define G(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define H(x, y, z) ((x) ^ (y) ^ (z))
#define I(x, y, z) ((y) ^ ((x) | ~(z)))
#define STEP(f, a, b, c, d, m, k, s) (a) = (b) + rotl((a) + f((b), (c), (d)) + (m) + (k), (s))

static void block(uint32_t h[4], const uint8_t *p) {
  uint32_t m[16];
  for (int i = 0; i < 16; i++) m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
  STEP(F, a, b, c, d, m[0], 0xd76aa478, 7);
  STEP(F, d, a, b, c, m[1], 0xe8c7b756, 12);
  STEP(F, c, d, a, b, m[2], 0x242070db, 17);
  STEP(F, b, c, d, a, m[3], 0xc1bdceee, 22);
  STEP(F, a, b, c, d, m[4], 0xf57c0faf, 7);
  STEP(F, d, a, b, c, m[5], 0x4787c62a, 12);
  STEP(F, c, d, a, b, m[6], 0xa8304613, 17);
  STEP(F, b, c, d, a, m[7], 0xfd469501, 22);
  STEP(F, a, b, c, d, m[8], 0x698098d8, 7);
  STEP(F, d, a, b, c, m[9], 0x8b44f7af, 12);
  STEP(F, c, d, a, b, m[10], 0xffff5bb1, 17);
  STEP(F, b, c, d, a, m[11], 0x895cd7be, 22);
  STEP(F, a, b, c, d, m[12], 0x6b901122, 7);
  STEP(F, d, a, b, c, m[13], 0xfd987193, 12);
  STEP(F, c, d, a, b, m[14], 0xa679438e, 17);
  STEP(F, b, c, d, a, m[15], 0x49b40821, 22);
  STEP(G, a, b, c, d, m[1], 0xf61e2562, 5);
  STEP(G, d, a, b, c, m[6], 0xc040b340, 9);
  STEP(G, c, d, a, b, m[11], 0x265e5a51, 14);
  STEP(G, b, c, d, a, m[0], 0xe9b6c7aa, 20);
  STEP(G, a, b, c, d, m[5], 0xd62f105d, 5);
  STEP(G, d, a, b, c, m[10], 0x02441453, 9);
  STEP(G, c, d, a, b, m[15], 0xd8a1e681, 14);
  STEP(G, b, c, d, a, m[4], 0xe7d3fbc8, 20);
  STEP(G, a, b, c, d, m[9], 0x21e1cde6, 5);
  STEP(G, d, a, b, c, m[14], 0xc33707d6, 9);
  STEP(G, c, d, a, b, m[3], 0xf4d50d87, 14);
  STEP(G, b, c, d, a, m[8], 0x455a14ed, 20);
  STEP(G, a, b, c, d, m[13], 0xa9e3e905, 5);
  STEP(G, d, a, b, c, m[2], 0xfcefa3f8, 9);
  STEP(G, c, d, a, b, m[7], 0x676f02d9, 14);
  STEP(G, b, c, d, a, m[12], 0x8d2a4c8a, 20);
  STEP(H, a, b, c, d, m[5], 0xfffa3942, 4);
  STEP(H, d, a, b, c, m[8], 0x8771f681, 11);
  STEP(H, c, d, a, b, m[11], 0x6d9d6122, 16);
  STEP(H, b, c, d, a, m[14], 0xfde5380c, 23);
  STEP(H, a, b, c, d, m[1], 0xa4beea44, 4);
  STEP(H, d, a, b, c, m[4], 0x4bdecfa9, 11);
  STEP(H, c, d, a, b, m[7], 0xf6bb4b60, 16);
  STEP(H, b, c, d, a, m[10], 0xbebfbc70, 23);
  STEP(H, a, b, c, d, m[13], 0x289b7ec6, 4);
  STEP(H, d, a, b, c, m[0], 0xeaa127fa, 11);
  STEP(H, c, d, a, b, m[3], 0xd4ef3085, 16);
  STEP(H, b, c, d, a, m[6], 0x04881d05, 23);
  STEP(H, a, b, c, d, m[9], 0xd9d4d039, 4);
  STEP(H, d, a, b, c, m[12], 0xe6db99e5, 11);
  STEP(H, c, d, a, b, m[15], 0x1fa27cf8, 16);
  STEP(H, b, c, d, a, m[2], 0xc4ac5665, 23);
  STEP(I, a, b, c, d, m[0], 0xf4292244, 6);
  STEP(I, d, a, b, c, m[7], 0x432aff97, 10);
  STEP(I, c, d, a, b, m[14], 0xab9423a7, 15);
  STEP(I, b, c, d, a, m[5], 0xfc93a039, 21);
  STEP(I, a, b, c, d, m[12], 0x655b59c3, 6);
  STEP(I, d, a, b, c, m[3], 0x8f0ccc92, 10);
  STEP(I, c, d, a, b, m[10], 0xffeff47d, 15);
  STEP(I, b, c, d, a, m[1], 0x85845dd1, 21);
  STEP(I, a, b, c, d, m[8], 0x6fa87e4f, 6);
  STEP(I, d, a, b, c, m[15], 0xfe2ce6e0, 10);
  STEP(I, c, d, a, b, m[6], 0xa3014314, 15);
  STEP(I, b, c, d, a, m[13], 0x4e0811a1, 21);
  STEP(I, a, b, c, d, m[4], 0xf7537e82, 6);
  STEP(I, d, a, b, c, m[11], 0xbd3af235, 10);
  STEP(I, c, d, a, b, m[2], 0x2ad7d2bb, 15);
  STEP(I, b, c, d, a, m[9], 0xeb86d391, 21);
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
}

void fsgw_md5_init(fsgw_md5 *c) {
  memset(c, 0, sizeof *c);
  c->h[0] = 0x67452301;
  c->h[1] = 0xefcdab89;
  c->h[2] = 0x98badcfe;
  c->h[3] = 0x10325476;
}

/* block() over n blocks: the shape fsgw_md_update takes. */
static void md5_blocks(uint32_t *h, const uint8_t *p, size_t n) {
  for (; n > 0; n--, p += 64) block(h, p);
}

void fsgw_md5_update(fsgw_md5 *c, const void *data, size_t len) { fsgw_md_update(c->h, &c->bytes, c->block, &c->used, data, len, md5_blocks); }

void fsgw_md5_digest(const fsgw_md5 *c, uint8_t out[16]) {
  fsgw_md5 t = *c;
  fsgw_md_finish(t.h, t.bytes, t.block, t.used, 0, md5_blocks);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(t.h[i] >> (8 * j));
}

void fsgw_digests_init(fsgw_digests *d) {
  fsgw_sha256_init(&d->sha256);
  d->sha256.pad = FSGW_DIGESTS_MARK;
  fsgw_md5_init(&d->md5);
}

void fsgw_hash_update(fsgw_sha256 *c, const void *data, size_t len) {
  fsgw_sha256_update(c, data, len);
  /* The SHA-256 is the first member of the pair: the MD5 follows it. */
  if (c->pad == FSGW_DIGESTS_MARK) fsgw_md5_update(&((fsgw_digests *)c)->md5, data, len);
}

void fsgw_digests_md5(const fsgw_digests *d, uint8_t out[16]) { fsgw_md5_digest(&d->md5, out); }
