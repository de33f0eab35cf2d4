/* fsgw_volume: append-only volume files that hold small bodies as records (issue 27, after
 * Haystack's needles): one append to store a body, one positioned read or sendfile to serve it, no
 * file per key. The file store decides what goes where; here are the record's bytes and the scan
 * that rebuilds the index from a volume at start.
 *
 * A record starts at a multiple of 8 bytes; numbers are little-endian:
 *    0  magic "FSV1"
 *    4  kind: 1 a body, 2 a tombstone, 3 the seal (the volume is full and synced: nothing follows)
 *    5  the key's length in bytes (1..255; 0 for a seal)
 *    6  facts: 1 the SHA-256 below is the body's, 2 the MD5 too
 *    7  0
 *    8  sequence number (int64): a key's later write has a larger one, over every volume and loop
 *   16  time in ms since the epoch (int64): the body's modification time
 *   24  a body's size (int64); a tombstone's: the sequence number of the record it deletes
 *   32  SHA-256 (32 bytes)
 *   64  MD5 (16 bytes)
 *   80  CRC-32C of bytes 0..79, the key and the body
 *   84  0
 *   88  the key, the body, then zeros to the next multiple of 8
 * A body therefore starts at its record's offset + 88 + the key's length, where sendfile and pread
 * take it. The checksum finds a torn tail (a crash while a record was written) and rot. */
#ifndef FSGW_VOLUME_H
#define FSGW_VOLUME_H

#include <stddef.h>
#include <stdint.h>

#include "fsgw_index.h"

#define FSGW_VOLUME_HEADER_BYTES 88
#define FSGW_VOLUME_KIND_BODY 1
#define FSGW_VOLUME_KIND_TOMBSTONE 2
#define FSGW_VOLUME_KIND_SEAL 3
/* The largest record a scan reads: a body of 16 MiB (the store's volumeBytesMax is far below). */
#define FSGW_VOLUME_RECORD_MAX ((int64_t)16 << 20)

/* CRC-32C (Castagnoli), continuing from crc (0 to start): SSE 4.2's instruction where the CPU has
 * it, else a table. */
uint32_t fsgw_crc32c(uint32_t crc, const uint8_t *p, size_t n);

/* Writes one record to out (room for 88 + key + body + 7 bytes): params (float64) are kind, the
 * key's length, the body's length, the sequence number, the time in ms, and for a tombstone the
 * sequence number it deletes; facts (49 bytes): the facts byte, the SHA-256, the MD5. Returns the
 * record's length (a multiple of 8), or -EINVAL. */
int32_t fsgw_volume_encode(uint8_t *out, const uint8_t *key, const uint8_t *body, const uint8_t *facts, const double *params);

/* Reads the volume file at path (never through a link) from `from` (a record's start: 0, or the end
 * a checkpoint recorded) and adds its records to
 * `records` (fsgw_volscan_merge then decides which are live). Stops at the seal, at the end of
 * the file, or at the first record that is not whole and intact. stats (float64 x 6): records of
 * bodies, tombstones, the largest sequence number, 1 when sealed, the file's size, and the offset
 * of the first record that failed its check (-1: none). Returns where the intact records end (the
 * seal's end when sealed), or -errno. */
double fsgw_volume_scan(fsgw_volscan *records, const char *path, uint32_t volume, double from, double *stats);

#endif
