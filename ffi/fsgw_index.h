/* fsgw_index: the file store's ordered index of keys, for listing (LIST, docs/PROTOCOL.md).
 *
 * The one-file-per-key layout spreads keys over hashed shard directories, so their order lives
 * here: a set of keys (1..255 bytes each, compared byte by byte, as S3 orders them) in packed sorted
 * leaves of FSGW_INDEX_LEAF_BYTES, under a read-write lock, shared by every thread of the process
 * (every event loop of one server uses the same index). An entry is the key, one length byte, and
 * its file's size, time and recorded digest (read from the files at load; given by the store at
 * each commit), so a listing touches no file; or for a volume's record, its size, time and
 * location (its digests are read from its header: fsgw_index_list).
 *
 * It is built at start from the shard directories (fsgw_index_load: a parallel readdir, no stat)
 * and kept by the store: a key is added once its file is committed under its name, removed once
 * its file is unlinked. A crash loses nothing: the next start builds it again from the files.
 */
#ifndef FSGW_INDEX_H
#define FSGW_INDEX_H

#include <stdint.h>

typedef struct fsgw_index fsgw_index;

/* An index over dir's `shards` shard directories (named by their number in lowercase hex, `width`
 * digits), whose files are keys with '/' stored as 0x1f. NULL when dir or a shard cannot be opened
 * (errno says why). The shard directories are held open (O_PATH, never through a link). */
fsgw_index *fsgw_index_open(const char *dir, int32_t shards, int32_t width);
void fsgw_index_close(fsgw_index *ix);

/* Reads every shard directory (`threads` at a time) and adds each key found with its file's facts
 * (fstatat, getxattrat): regular files only, never a temporary file (its name holds a backslash).
 * Returns the number of keys, or -errno. */
double fsgw_index_load(fsgw_index *ix, int32_t threads);

/* The facts an entry keeps of its file, as a listing shows them (FSGW_INDEX_META_BYTES): size
 * (int64 LE), mtime in ms (int64 LE), flags (1: the file records a digest; 2: and an MD5), the
 * digest (32 bytes), and with flag 2 the MD5 (16 bytes more). */
#define FSGW_INDEX_META_BYTES 49
/* With flag 4 the body is a record of a volume (fsgw_volume.h), and its facts are shorter: size,
 * mtime and flags as above, then (at FSGW_INDEX_RECORD_AT) its location and order: the volume's
 * number (uint32 LE), the record's offset in it (int64 LE) and its sequence number (int64 LE; a
 * key's later write has a larger one). Its digests are not here but in the record's header (flags 1
 * and 2 say which it holds): 32 or 48 bytes of every key would double what the index takes
 * (issue 27: at most 48 bytes per key beyond the key). */
#define FSGW_INDEX_RECORD_AT 17
#define FSGW_INDEX_VOLUME_BYTES 20
#define FSGW_INDEX_RECORD_META_BYTES (FSGW_INDEX_RECORD_AT + FSGW_INDEX_VOLUME_BYTES)
#define FSGW_INDEX_META_BYTES_MAX 65

/* Adds key with its file's facts (meta), or gives an existing key these: 1 when added, 0 when it
 * was there, 3 when it was there as a file and now holds a volume's record (the store removes that
 * file: one call where a lookup before the addition took two, and no write between them), 2 when a
 * volume's record was not applied because the key holds a later record (a larger sequence
 * number); -ENOMEM, or -EINVAL for a key of no 1..255 bytes (a failed addition leaves the index
 * unable to answer absences: fsgw_index_has). */
int32_t fsgw_index_add(fsgw_index *ix, const uint8_t *key, int32_t len, const uint8_t *meta);
/* Whether key is held: 1 or 0, or -1 when the index cannot say that a key is absent (no load
 * ended well yet, or an addition failed: a key may be missing). While the store
 * keeps it (every commit adds before it is acknowledged, every unlink removes), 0 is as good as a
 * lookup in the shard directory, without the directory. */
int32_t fsgw_index_has(fsgw_index *ix, const uint8_t *key, int32_t len);
/* 1 when removed, 0 when it was not there. */
int32_t fsgw_index_remove(fsgw_index *ix, const uint8_t *key, int32_t len);
/* The facts held for key, copied to out (FSGW_INDEX_META_BYTES_MAX): their length; 0 when the key
 * is not held, -1 when it is not held and the index cannot say that it is absent (as has). */
int32_t fsgw_index_get(fsgw_index *ix, const uint8_t *key, int32_t len, uint8_t *out);
/* Removes key only while it holds the volume record of sequence number seq: 1 when removed. */
int32_t fsgw_index_remove_record(fsgw_index *ix, const uint8_t *key, int32_t len, double seq);
/* Moves key's record to a new place (a compaction copied it) only while it holds the record of
 * sequence number seq: 1 when moved, 0 when the key has changed since (the copy is then dead). */
int32_t fsgw_index_move_record(fsgw_index *ix, const uint8_t *key, int32_t len, double seq, uint32_t volume, double offset);
/* Dead bodies: the index notes, per volume, the keys whose body records there are dead (an
 * overwrite or a delete, in any of the calls above; a compaction's copy that lost its race; the
 * scan's records that lost), so that a compaction can tell when a tombstone has nothing left to
 * delete (docs/VOLUMES.md, "Tombstones"). Volumes are numbered from 1.
 * Another volume than `volume` that holds a dead body of key (its number, > 0), 0 when none does,
 * or -1 when the index cannot say (its set of dead bodies was full and missed some). A key that
 * shares its 32-bit hash with one of another volume's may be named too: it only keeps a tombstone. */
int32_t fsgw_index_dead_elsewhere(fsgw_index *ix, const uint8_t *key, int32_t len, uint32_t volume);
/* The body of key in volume is dead (a write that failed, whose record may be in it whole). */
void fsgw_index_dead_add(fsgw_index *ix, const uint8_t *key, int32_t len, uint32_t volume);
/* The volume is gone: its dead bodies with it. Their number. */
double fsgw_index_dead_forget(fsgw_index *ix, uint32_t volume);
/* Dead bodies noted at most (8 bytes each, in a set at most 3/4 full: up to 16 bytes each); past
 * it the set is full and every tombstone is kept, until a start builds it again from the volumes
 * (default 4,194,304). */
void fsgw_index_dead_limit(fsgw_index *ix, double max);
/* out[0]: dead bodies noted; out[1]: the bytes their set takes; out[2]: 1 when it is full. */
void fsgw_index_dead_stats(fsgw_index *ix, double *out);
/* The bytes of live records in each of the n volumes ids (sorted ascending), into live. Walks the
 * index a bounded number of leaves per hold of its lock, so an estimate while writes go on. */
int32_t fsgw_index_volume_usage(fsgw_index *ix, const uint32_t *ids, int32_t n, double *live);
/* An empty index of no directory (its keys come from fsgw_index_add). */
fsgw_index *fsgw_index_new(void);
/* A start-up scan's records of volumes (fsgw_volume_scan adds to it), merged into an index once
 * every volume is read. */
typedef struct fsgw_volscan fsgw_volscan;
fsgw_volscan *fsgw_volscan_new(void);
void fsgw_volscan_free(fsgw_volscan *s);
/* Adds one record: kind 1 a body (meta: its facts with flag 4), 2 a tombstone (meta: its sequence
 * number, then the one it deletes, int64 LE). 0, or -ENOMEM. */
int fsgw_volscan_push(fsgw_volscan *s, const uint8_t *key, uint32_t len, int kind, const uint8_t *meta);
/* Adds each key's live record to ix: its body record with the largest sequence number, unless a
 * tombstone deletes that number or a larger one; every other body is noted dead where it lies.
 * Where ix holds a file of the key, the later of the two stays, by time (a tie: the record), and
 * the key is reported in `conflicts` as
 * [what][len][key][the record's sequence number, int64 LE]: 1, the file lost (remove it); 2, the
 * record lost (delete it with a tombstone). *used: the bytes written there. Returns the number
 * reported, or -errno (-E2BIG: more than cap bytes of them). */
int32_t fsgw_volscan_merge(fsgw_volscan *s, fsgw_index *ix, const uint32_t *ids, int32_t nids, uint8_t *conflicts, int32_t cap, int32_t *used);
/* Where ix holds a record of the key already (a checkpoint's), the later stays (the same number:
 * the one whose volume is among ids, sorted ascending, i.e. a compaction's copy), and a tombstone
 * of a number at least the held one's removes it. */
/* Removes every record of a volume not among ids (sorted ascending): what a checkpoint said of
 * a volume removed since, and no scan found a copy of; and the dead bodies of such volumes. The
 * number of records removed, or -errno. */
int32_t fsgw_index_drop_missing(fsgw_index *ix, const uint32_t *ids, int32_t n);
/* A checkpoint of the records: writes `head` (head_len bytes, the caller's), every volume record
 * ix holds in key order as it keeps them ([len][key][facts]), its dead bodies (uint64 LE each: the
 * key's hash << 32 | the volume), then the number of records (int64 LE), of dead bodies (int64 LE),
 * 1 when the set of dead bodies was full (uint32 LE) and the CRC-32C of everything before (uint32
 * LE), to path (created or replaced, fsynced). The records written, or -errno. */
double fsgw_index_save_records(fsgw_index *ix, const char *path, const uint8_t *head, int32_t head_len);
/* Adds the records and dead bodies of a checkpoint (its head is head_len bytes) to ix (leaf by
 * leaf when ix is empty), once its CRC-32C holds: -EBADMSG, and nothing added, when it does not. The records, or
 * -errno. */
double fsgw_index_load_records(fsgw_index *ix, const char *path, int32_t head_len);
/* Keys held, and the bytes the index takes (leaves and their table). */
double fsgw_index_count(fsgw_index *ix);
double fsgw_index_bytes(fsgw_index *ix);

/* One page of a listing, written to out (cap bytes, at least FSGW_INDEX_PAGE_BYTES_MIN) as the
 * lines of a LIST page (docs/PROTOCOL.md): first each entry,
 *   {"key":"a/b","size":5,"mtime":"2026-12-04T20:58:43.573Z","sha256":"<64 hex>","md5":"<32 hex>"}
 * (sha256 when the file records one, md5 when it records that too), from the facts the index
 * keeps, then each common prefix,
 * {"prefix":"a/c/"}. Keys start with prefix;
 * with a delimiter (dlen > 0) every key that holds it after the prefix is rolled into its common
 * prefix (reported once). The page starts after `after` (alen bytes; 0: at the first key): after
 * every key <= after, and when after_prefix is 1, also after every key that starts with it. At most
 * max entries and prefixes, as many as fit in cap. When keys remain, next (256 bytes) receives
 * where the next page starts, "K" + the last key or "P" + the last prefix taken, and *next_len its
 * length (0 when the listing is complete). Returns the bytes written, or -errno.
 * The request comes in two arrays (bun:ffi calls of a dozen arguments are not safe): `texts` holds
 * prefix, delimiter and after back to back; `params` their lengths (plen, dlen, alen), then
 * after_prefix, max, cap and wait.
 * A record's digests are read from its header in its volume (fsgw_index_set_volumes; none set: not
 * shown), after the index is let go. Unless wait is 1, only from the page cache (RWF_NOWAIT): when
 * a header is not cached, returns -EAGAIN and lists in misses (float64: their number, then each
 * one's volume and offset; room for 1 + 2 * max) what to read first (on the pool) before asking
 * again: a listing never waits for the disk on the caller's thread. */
int32_t fsgw_index_list(fsgw_index *ix, const uint8_t *texts, const int32_t *params, uint8_t *out, uint8_t *next, int32_t *next_len, double *misses);
/* The directory of the volumes (never through a link), where a listing reads records' digests:
 * 0, or -errno. */
int32_t fsgw_index_set_volumes(fsgw_index *ix, const char *path);

#define FSGW_INDEX_LEAF_BYTES 4096
/* The smallest cap fsgw_index_list takes: one line of the longest key, every byte escaped. */
#define FSGW_INDEX_PAGE_BYTES_MIN (216 + 2 * 255)

#endif
