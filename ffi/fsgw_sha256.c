/* SHA-256: a portable compression function, and one using x86-64's SHA extensions (SHA-NI), chosen
 * once at load by CPUID. Both are checked against FIPS 180-4's test vectors and against each other
 * (ffi/test_pool.c, test/ffi/sha256.test.ts). */
#include "fsgw_sha256.h"
#include "fsgw_md_blocks.h"

#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void blocks_portable(uint32_t h[8], const uint8_t *p, size_t blocks) {
  while (blocks--) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
      uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
      uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
      uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
    p += 64;
  }
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/* The SHA-NI rounds keep the state as two vectors, ABEF and CDGH; each sha256rnds2 does two rounds,
 * and the message schedule runs four words at a time: W[t] = msg2(msg1(W[t-4], W[t-3]) +
 * W[t-7..t-4], W[t-1]), which is sigma1(W[j-2]) + W[j-7] + sigma0(W[j-15]) + W[j-16]. */
__attribute__((target("sha,sse4.1,ssse3"))) static void blocks_shani(uint32_t h[8], const uint8_t *p, size_t blocks) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i dcba = _mm_loadu_si128((const __m128i *)&h[0]);
  __m128i hgfe = _mm_loadu_si128((const __m128i *)&h[4]);
  __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
  __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
  __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
  __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
  while (blocks--) {
    const __m128i abef0 = abef, cdgh0 = cdgh;
    __m128i w[4];
    /* Unrolled, the ring w[] lives in registers instead of memory. */
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++) {
      if (t < 4) {
        w[t] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * t)), bswap);
      } else {
        __m128i s = _mm_sha256msg1_epu32(w[t & 3], w[(t + 1) & 3]);
        s = _mm_add_epi32(s, _mm_alignr_epi8(w[(t + 3) & 3], w[(t + 2) & 3], 4));
        w[t & 3] = _mm_sha256msg2_epu32(s, w[(t + 3) & 3]);
      }
      __m128i m = _mm_add_epi32(w[t & 3], _mm_loadu_si128((const __m128i *)&K[4 * t]));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(m, 0x0E));
    }
    abef = _mm_add_epi32(abef, abef0);
    cdgh = _mm_add_epi32(cdgh, cdgh0);
    p += 64;
  }
  __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
  __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(dchg, feba, 8));
}

static int cpu_has_sha(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  unsigned sha = (b >> 29) & 1;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  unsigned sse41 = (c >> 19) & 1, ssse3 = (c >> 9) & 1;
  return (int)(sha & sse41 & ssse3);
}
#endif

typedef void (*blocks_fn)(uint32_t h[8], const uint8_t *p, size_t blocks);
static blocks_fn blocks = blocks_portable;
static int accelerated;

__attribute__((constructor)) static void choose(void) {
#if defined(__x86_64__)
  if (cpu_has_sha()) {
    blocks = blocks_shani;
    accelerated = 1;
  }
#endif
}

int fsgw_sha256_accelerated(void) { return accelerated; }

void fsgw_debug_sha256_portable(int32_t on) {
#if defined(__x86_64__)
  blocks = on || !cpu_has_sha() ? blocks_portable : blocks_shani;
  accelerated = blocks != blocks_portable;
#else
  (void)on;
#endif
}

void fsgw_sha256_init(fsgw_sha256 *c) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memset(c, 0, sizeof *c);
  memcpy(c->h, iv, sizeof iv);
}

void fsgw_sha256_update(fsgw_sha256 *c, const void *data, size_t len) { fsgw_md_update(c->h, &c->bytes, c->block, &c->used, data, len, blocks); }

void fsgw_sha256_digest(const fsgw_sha256 *c, uint8_t out[32]) {
  fsgw_sha256 t = *c;
  fsgw_md_finish(t.h, t.bytes, t.block, t.used, 1, blocks);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(t.h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(t.h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(t.h[i] >> 8);
    out[4 * i + 3] = (uint8_t)t.h[i];
  }
}

void fsgw_sha256_of(const void *data, size_t len, uint8_t out[32]) {
  fsgw_sha256 c;
  fsgw_sha256_init(&c);
  fsgw_sha256_update(&c, data, len);
  fsgw_sha256_digest(&c, out);
}
