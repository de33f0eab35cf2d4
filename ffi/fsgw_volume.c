/* fsgw_volume: records of append-only volumes (see fsgw_volume.h). */
#define _GNU_SOURCE
#include "fsgw_volume.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t MAGIC[4] = {'F', 'S', 'V', '1'};

/* ---- CRC-32C ---- */

static uint32_t crc_table[8][256];
static int crc_hw = -1; /* -1: not probed yet */

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
    crc_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t n) {
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    v ^= c;
    c = crc_table[7][v & 0xff] ^ crc_table[6][(v >> 8) & 0xff] ^ crc_table[5][(v >> 16) & 0xff] ^ crc_table[4][(v >> 24) & 0xff] ^
        crc_table[3][(v >> 32) & 0xff] ^ crc_table[2][(v >> 40) & 0xff] ^ crc_table[1][(v >> 48) & 0xff] ^ crc_table[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t c, const uint8_t *p, size_t n) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c64 = __builtin_ia32_crc32di(c64, v);
    p += 8;
    n -= 8;
  }
  c = (uint32_t)c64;
  while (n-- > 0) c = __builtin_ia32_crc32qi(c, *p++);
  return c;
}
#endif

uint32_t fsgw_crc32c(uint32_t crc, const uint8_t *p, size_t n) {
  if (__atomic_load_n(&crc_hw, __ATOMIC_ACQUIRE) < 0) {
    /* Racing first calls compute the same tables and the same answer. */
    crc_init();
#if defined(__x86_64__)
    __builtin_cpu_init();
    __atomic_store_n(&crc_hw, __builtin_cpu_supports("sse4.2") ? 1 : 0, __ATOMIC_RELEASE);
#else
    __atomic_store_n(&crc_hw, 0, __ATOMIC_RELEASE);
#endif
  }
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (crc_hw == 1) return ~crc_sse42(c, p, n);
#endif
  return ~crc_soft(c, p, n);
}

/* ---- records ---- */

static void put64(uint8_t *out, int64_t v) {
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)v >> (8 * i));
}

static int64_t get64(const uint8_t *in) {
  uint64_t u = 0;
  for (int i = 7; i >= 0; i--) u = (u << 8) | in[i];
  return (int64_t)u;
}

static void put32(uint8_t *out, uint32_t v) {
  for (int i = 0; i < 4; i++) out[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *in) { return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24; }

static int64_t align8(int64_t n) { return (n + 7) & ~(int64_t)7; }

/* The checksum of a record whose header, key and body are at r. */
static uint32_t record_crc(const uint8_t *r, uint32_t key_len, int64_t body_len) {
  uint32_t c = fsgw_crc32c(0, r, 80);
  return fsgw_crc32c(c, r + FSGW_VOLUME_HEADER_BYTES, key_len + (size_t)body_len);
}

int32_t fsgw_volume_encode(uint8_t *out, const uint8_t *key, const uint8_t *body, const uint8_t *facts, const double *params) {
  int kind = (int)params[0];
  int64_t key_len = (int64_t)params[1], body_len = (int64_t)params[2];
  if (kind < FSGW_VOLUME_KIND_BODY || kind > FSGW_VOLUME_KIND_SEAL) return -EINVAL;
  if (kind == FSGW_VOLUME_KIND_SEAL ? key_len != 0 : key_len < 1 || key_len > 255) return -EINVAL;
  if (kind != FSGW_VOLUME_KIND_BODY) body_len = 0;
  if (body_len < 0 || body_len > FSGW_VOLUME_RECORD_MAX) return -EINVAL;
  memset(out, 0, FSGW_VOLUME_HEADER_BYTES);
  memcpy(out, MAGIC, 4);
  out[4] = (uint8_t)kind;
  out[5] = (uint8_t)key_len;
  out[6] = kind == FSGW_VOLUME_KIND_BODY ? (uint8_t)(facts[0] & 3) : 0;
  put64(out + 8, (int64_t)params[3]);
  put64(out + 16, (int64_t)params[4]);
  put64(out + 24, kind == FSGW_VOLUME_KIND_TOMBSTONE ? (int64_t)params[5] : body_len);
  if (out[6] & 1) memcpy(out + 32, facts + 1, 32);
  if (out[6] & 2) memcpy(out + 64, facts + 33, 16);
  if (key_len > 0) memcpy(out + FSGW_VOLUME_HEADER_BYTES, key, (size_t)key_len);
  if (body_len > 0) memcpy(out + FSGW_VOLUME_HEADER_BYTES + key_len, body, (size_t)body_len);
  int64_t end = FSGW_VOLUME_HEADER_BYTES + key_len + body_len;
  int64_t total = align8(end);
  memset(out + end, 0, (size_t)(total - end));
  put32(out + 80, record_crc(out, (uint32_t)key_len, body_len));
  return (int32_t)total;
}

/* ---- the start-up scan ---- */

/* The record r at `offset` of `volume`, as the scan's collector keeps it. */
static int collect(fsgw_volscan *s, const uint8_t *r, uint32_t volume, int64_t offset) {
  const uint8_t *key = r + FSGW_VOLUME_HEADER_BYTES;
  uint8_t meta[FSGW_INDEX_META_BYTES_MAX];
  if (r[4] == FSGW_VOLUME_KIND_TOMBSTONE) {
    put64(meta, get64(r + 8));
    put64(meta + 8, get64(r + 24));
    return fsgw_volscan_push(s, key, r[5], 2, meta);
  }
  memset(meta, 0, sizeof meta);
  put64(meta, get64(r + 24));
  put64(meta + 8, get64(r + 16));
  meta[16] = (uint8_t)((r[6] & 3) | 4); /* the digests stay in the header: flags say which it has */
  uint32_t at = FSGW_INDEX_RECORD_AT;
  put32(meta + at, volume);
  put64(meta + at + 4, offset);
  put64(meta + at + 12, get64(r + 8));
  return fsgw_volscan_push(s, key, r[5], 1, meta);
}

#define SCAN_BUFFER_BYTES (1 << 20)

double fsgw_volume_scan(fsgw_volscan *records, const char *path, uint32_t volume, double from, double *stats) {
  for (int i = 0; i < 6; i++) stats[i] = 0;
  stats[5] = -1;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int e = S_ISREG(st.st_mode) ? errno : EINVAL;
    close(fd);
    return -e;
  }
  stats[4] = (double)st.st_size;
  size_t cap = SCAN_BUFFER_BYTES;
  uint8_t *buf = malloc(cap);
  if (buf == NULL) {
    close(fd);
    return -ENOMEM;
  }
  int64_t base = (int64_t)from; /* the file offset of buf[0] */
  size_t have = 0;
  int64_t pos = (int64_t)from; /* the next record's offset: a record's start (0, or where a checkpoint's view ended) */
  double rc = 0;
  for (;;) {
    /* Whole header in the buffer? */
    size_t at = (size_t)(pos - base);
    int64_t need = FSGW_VOLUME_HEADER_BYTES;
    for (int pass = 0; pass < 2; pass++) {
      if ((int64_t)(have - at) < need) {
        /* Slide what is left to the start, grow for a large record, read more. */
        memmove(buf, buf + at, have - at);
        have -= at;
        base = pos;
        at = 0;
        if ((size_t)need > cap) {
          uint8_t *grown = realloc(buf, (size_t)need);
          if (grown == NULL) {
            rc = -ENOMEM;
            goto out;
          }
          buf = grown;
          cap = (size_t)need;
        }
        while ((int64_t)have < need) {
          ssize_t n = pread(fd, buf + have, cap - have, base + (int64_t)have);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) {
            rc = -errno;
            goto out;
          }
          if (n == 0) break;
          have += (size_t)n;
        }
      }
      if ((int64_t)have - (int64_t)at < need) break; /* the file ends inside it: a torn tail */
      if (pass == 0) {
        const uint8_t *r = buf + at;
        int64_t size = r[4] == FSGW_VOLUME_KIND_BODY ? get64(r + 24) : 0;
        if (memcmp(r, MAGIC, 4) != 0 || r[4] < 1 || r[4] > 3 || size < 0 || size > FSGW_VOLUME_RECORD_MAX) {
          need = -1;
          break;
        }
        need = align8(FSGW_VOLUME_HEADER_BYTES + r[5] + size);
      }
    }
    if (pos == (int64_t)st.st_size && (int64_t)have - (int64_t)at == 0) break; /* the end */
    const uint8_t *r = buf + at;
    if (need < 0 || (int64_t)have - (int64_t)at < need) {
      stats[5] = (double)pos;
      break;
    }
    int64_t size = r[4] == FSGW_VOLUME_KIND_BODY ? get64(r + 24) : 0;
    int bad = get32(r + 80) != record_crc(r, r[5], size) || (r[4] == FSGW_VOLUME_KIND_SEAL) != (r[5] == 0);
    if (bad) {
      stats[5] = (double)pos;
      break;
    }
    int64_t seq = get64(r + 8);
    if (seq > stats[2]) stats[2] = (double)seq;
    if (r[4] == FSGW_VOLUME_KIND_SEAL) {
      stats[3] = 1;
      pos += need;
      break;
    }
    if (collect(records, r, volume, pos) != 0) {
      rc = -ENOMEM;
      goto out;
    }
    stats[r[4] == FSGW_VOLUME_KIND_BODY ? 0 : 1] += 1;
    pos += need;
  }
  rc = (double)pos;
out:
  free(buf);
  close(fd);
  return rc;
}
