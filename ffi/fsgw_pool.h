/* fsgw_pool: file operations on a small pthread pool, for a JavaScript runtime that must never block.
 *
 * The whole API is in this header. Shape (after libuv's threadpool.c, with a bounded queue):
 *
 *   JS thread                          workers (n pthreads)
 *   ---------                          --------------------
 *   fsgw_submit / fsgw_submit_batch -> bounded queue of slot numbers -> run the system calls
 *                                      completion ring <- (slot, result) under a lock
 *   doorbell() <--------------------- rung once while a drain is pending (coalesced), and not
 *                                      at all while the loop promised to poll (fsgw_loop_busy)
 *   fsgw_drain / fsgw_poll: copy every ready completion out and free the slots
 *
 *   fsgw_stat_cached / fsgw_read_cached: no pool at all; the caller's thread, from the kernel's
 *   caches, or -EAGAIN without waiting (see "Inline operations" below)
 *
 * Every operation lives in one of `capacity` pre-allocated slots from submission until JS drains its
 * completion, so nothing is allocated per operation, and the completion ring (also `capacity` long)
 * can never overflow. A full pool is an answer: -EAGAIN. Workers never run JavaScript and never pass
 * pointers to the doorbell; they only ring it.
 *
 * Conventions: every function returns >= 0 on success or -errno. EINTR is retried here, short
 * writes are continued here. Buffers and paths handed in belong to the pool until their completion
 * is drained: the caller keeps them alive and untouched until then.
 *
 * Confinement (fsgw_confine): a path under a confined directory is never resolved from the root.
 * Every operation, pooled or inline, walks it from a descriptor of that directory with openat2
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, and renames and unlinks happen relative to a descriptor of
 * the file's own directory opened the same way: a symbolic link anywhere below the confined
 * directory (a planted file, or a shard directory replaced by a link) is refused with -ELOOP, and
 * nothing outside it is ever read, written, renamed or deleted. Files created there get the
 * directory's file mode (less the process umask).
 */
#ifndef FSGW_POOL_H
#define FSGW_POOL_H

#include <stdint.h>

#define FSGW_ABI_VERSION 11

typedef struct fsgw_pool fsgw_pool;

/* Operations. `result` is what a completion carries on success. */
enum {
  FSGW_OP_NOP = 0,    /* result = len; no system call (measures the pool itself) */
  FSGW_OP_OPEN = 1,   /* path, flags (FSGW_OPEN_*) -> fd */
  FSGW_OP_PWRITE = 2, /* fd, buf, len, offset -> len (all of it, or an error) */
  FSGW_OP_PREAD = 3,  /* fd, buf, len, offset -> bytes read (0 at end of file) */
  FSGW_OP_FSTAT = 4,  /* fd -> size; aux = st_mode */
  FSGW_OP_STAT = 5,   /* path -> size; aux = st_mode */
  FSGW_OP_CLOSE = 6,  /* fd -> 0 */
  FSGW_OP_FSYNC = 7,  /* fd -> 0 */
  FSGW_OP_RENAME = 8, /* path -> path2 -> 0 */
  FSGW_OP_UNLINK = 9, /* path -> 0 */
  FSGW_OP_COMMIT = 10, /* create path (temporary), write buf/len, fsync if FSGW_COMMIT_FSYNC, close,
                          rename onto path2, and with FSGW_COMMIT_FSYNC fsync path2's directory
                          (so the rename is durable too) -> len; on failure the temporary file is
                          removed */
  FSGW_OP_READ_FILE = 11, /* open path, fstat, and if its size <= len read it whole into buf, close
                             -> the file's size (the bytes are in buf only when size <= len);
                             aux = st_mode; a non-regular file is -EISDIR */
  FSGW_OP_SENDFILE = 12, /* fd = a socket (the caller's own descriptor, kept open until the
                             completion is drained), flags = the file's descriptor, offset, len ->
                             bytes sent: len, or fewer when the socket stayed unwritable for
                             FSGW_SENDFILE_WAIT_MS (submit the rest again); -errno when nothing was
                             sent (-EPIPE, -ECONNRESET: the peer is gone; -ENODATA: the file ended
                             before offset + len, it shrank) */
  FSGW_OP_SPLICE_IN = 13, /* fd = a socket (the caller's own descriptor, kept open until the
                              completion is drained), flags = a file's descriptor, offset, len ->
                              bytes moved from the socket into the file at offset (through a pipe,
                              never into user space): len, or fewer when the socket had nothing for
                              FSGW_SENDFILE_WAIT_MS (submit the rest again); -ECONNRESET when the
                              peer closed before any byte came; -errno. When the file refused bytes
                              (a full disk), aux = its errno and result = the bytes taken from the
                              socket all the same (so the caller knows where the body stands) */
  FSGW_OP_FSETDIGEST = 14, /* fd, ext = the digests to record as the file's user.fsgw.sha256
                              attribute: the 32-byte SHA-256, and with len 48 the MD5 after it
                              -> 0; -ENOTSUP when the file system keeps no user attributes */
  FSGW_OP_COUNT = 15
};

/* Digests. Every stored file's SHA-256 is its extended attribute FSGW_DIGEST_XATTR, 32 raw bytes,
 * followed by the body's MD5 (16 bytes) when the upload computed one (an S3 client's ETag: the
 * HTTP front door computes it; the TCP protocol does not pay for it). Small enough to live inside
 * an ext4 inode, so reading it never costs a disk block of its own; `getfattr -e hex -n
 * user.fsgw.sha256 FILE` shows it. Operations take their digest memory in `ext`:
 *   FSGW_OP_STAT, FSGW_OP_FSTAT, FSGW_OP_READ_FILE: ext = FSGW_DIGEST_OUT_BYTES, the file's facts:
 *     byte 0 = flags (FSGW_FACT_*), bytes 1..32 the SHA-256, 33..48 the MD5, 49..56 the
 *     modification time in milliseconds (int64, little-endian); a digest the file does not record
 *     leaves its flag clear;
 *   FSGW_OP_COMMIT: ext = the 32-byte digest (48 with the MD5 when flags has FSGW_COMMIT_MD5),
 *     recorded on the temporary file before the rename (a file system without user attributes:
 *     the file is committed without it, aux = ENOTSUP);
 *   FSGW_OP_SPLICE_IN: ext = an fsgw_sha256 context, updated with the bytes moved (read back from
 *     the page cache), so a spliced body is hashed without passing through the caller. */
#define FSGW_DIGEST_XATTR "user.fsgw.sha256"
#define FSGW_DIGEST_OUT_BYTES 57
enum { FSGW_FACT_SHA256 = 1, FSGW_FACT_MD5 = 2, FSGW_FACT_MTIME = 4 };

enum {
  FSGW_OPEN_READ = 0,   /* O_RDONLY */
  FSGW_OPEN_CREATE = 1, /* O_RDWR | O_CREAT | O_EXCL, the confined directory's file mode (else 0644) (read too: a spliced body is hashed by reading it back) */
  FSGW_OPEN_WRITE = 2,  /* O_RDWR of an existing file (a resumed upload's temporary file) */
};

enum { FSGW_COMMIT_FSYNC = 1, FSGW_COMMIT_MD5 = 2 };

/* One submission record, as fsgw_submit_batch reads them from the caller's memory. */
typedef struct fsgw_sub {
  uint32_t op;
  uint32_t flags;
  int32_t fd;
  int32_t slot;   /* out: the slot the operation took */
  double offset;  /* file position (integers up to 2^53 are exact) */
  double len;     /* bytes */
  uint64_t buf;   /* data pointer */
  uint64_t path;  /* NUL-terminated path */
  uint64_t path2; /* NUL-terminated second path (rename, commit) */
  uint64_t ext;   /* the operation's extra memory, or 0 (see "Digests" below) */
} fsgw_sub;

/* One completion record, as fsgw_drain writes them to the caller's memory. */
typedef struct fsgw_comp {
  int32_t slot;
  int32_t aux;   /* st_mode for stat and fstat */
  double result; /* >= 0, or -errno */
} fsgw_comp;

/* Counters for observability (fsgw_pool_stats fills them in this order). */
enum {
  FSGW_STAT_SUBMITTED = 0,
  FSGW_STAT_COMPLETED,
  FSGW_STAT_REFUSED,       /* submissions answered -EAGAIN */
  FSGW_STAT_QUEUED,        /* waiting for a worker now */
  FSGW_STAT_QUEUED_HIGH,   /* high-water mark of the above */
  FSGW_STAT_IN_FLIGHT,     /* slots taken now: queued + running + completed but not drained */
  FSGW_STAT_DOORBELLS,     /* doorbell rings */
  FSGW_STAT_DRAINS,        /* fsgw_drain calls that found at least one record */
  FSGW_STAT_DRAINED,       /* records drained */
  FSGW_STAT_THREADS,       /* workers running */
  FSGW_STAT_PRIO_FAILED,   /* workers whose SCHED_RR request was refused */
  FSGW_STAT_AFFINITY_FAILED, /* workers whose CPU pinning was refused */
  FSGW_STAT_NICE_FAILED,   /* workers whose nice value was refused */
  FSGW_STAT_COUNT
};

int32_t fsgw_abi_version(void);
/* The layout of fsgw_sub and fsgw_comp as this library was compiled: fills out[0..n) with
 * FSGW_LAYOUT_* entries (sizes and field offsets, in bytes) and returns how many were written. The
 * binding compares every entry with its own table, so a reordered or resized field is caught at
 * load, not as corrupted records. */
enum {
  FSGW_LAYOUT_SUB_SIZE = 0,
  FSGW_LAYOUT_SUB_OP,
  FSGW_LAYOUT_SUB_FLAGS,
  FSGW_LAYOUT_SUB_FD,
  FSGW_LAYOUT_SUB_SLOT,
  FSGW_LAYOUT_SUB_OFFSET,
  FSGW_LAYOUT_SUB_LEN,
  FSGW_LAYOUT_SUB_BUF,
  FSGW_LAYOUT_SUB_PATH,
  FSGW_LAYOUT_SUB_PATH2,
  FSGW_LAYOUT_COMP_SIZE,
  FSGW_LAYOUT_COMP_SLOT,
  FSGW_LAYOUT_COMP_AUX,
  FSGW_LAYOUT_COMP_RESULT,
  FSGW_LAYOUT_SUB_EXT,
  FSGW_LAYOUT_COUNT
};
int32_t fsgw_struct_layout(int32_t *out, int32_t n);
/* fsync(2) calls that succeeded, process-wide (every fsync of the library goes through one
 * function): lets tests prove that a durable commit really syncs the file and its directory. */
double fsgw_fsync_count(void);

/* Creates a pool and starts its workers; writes the pool's address to *out.
 * threads 1..256; capacity 1..1<<24 slots; the first prior_threads workers ask for SCHED_RR;
 * cpu_affinity != 0 pins worker i to CPU i mod ncpu; worker_nice 0..19 lowers the other workers'
 * priority. Refused priority, pinning or nice is counted in the stats (FSGW_STAT_*_FAILED), not an
 * error. doorbell is called from a worker thread, at most once until fsgw_doorbell_answer. */
int32_t fsgw_pool_create(int32_t threads, int32_t capacity, int32_t prior_threads, int32_t cpu_affinity,
                         int32_t worker_nice, void (*doorbell)(void), uint64_t *out);

/* Another pool over the same workers (for another event loop): its own `capacity` slots,
 * completion ring and doorbell, so that a completion wakes only the loop that submitted it; the
 * workers (and their settings: jobs per wake, spinning) are shared. The workers end when every
 * pool over them is stopped; each pool is freed on its own. -ESHUTDOWN once they are stopping. */
int32_t fsgw_pool_join(fsgw_pool *pool, int32_t capacity, void (*doorbell)(void), uint64_t *out);

/* Submits one operation. Returns the slot (>= 0), -EAGAIN when every slot is taken, -EINVAL for
 * a bad op, -ESHUTDOWN after fsgw_pool_stop. Call from one thread only (the JS thread). */
int32_t fsgw_submit(fsgw_pool *pool, uint32_t op, uint32_t flags, int32_t fd, void *buf, double len, double offset,
                    const char *path, const char *path2, void *ext);

/* Submits subs[0..n) in order under one lock; stops at the first refused record. Returns how many
 * were accepted (their `slot` fields are set), or -errno if none was (-EAGAIN when full). */
int32_t fsgw_submit_batch(fsgw_pool *pool, fsgw_sub *subs, int32_t n);

/* Answers one doorbell ring: call it first thing in the doorbell callback, then fsgw_drain until
 * it returns 0. It re-arms the doorbell before anything is read, so a completion appended after this
 * call either is read by those drains or rings again: no completion is ever left without a ring,
 * and at most one ring is pending at a time. */
void fsgw_doorbell_answer(fsgw_pool *pool);

/* The loop promises to call fsgw_poll soon (before it next sleeps): until then, completions are
 * appended without ringing the doorbell. */
void fsgw_loop_busy(fsgw_pool *pool);

/* Ends the promise of fsgw_loop_busy and drains, like fsgw_drain: a completion appended after the
 * promise ended rings the doorbell again, so none is ever left unseen. */
int32_t fsgw_poll(fsgw_pool *pool, fsgw_comp *out, int32_t max);

/* A batch submission wakes a sleeping worker only while the queue holds more than n jobs per awake
 * worker (default 1); a single submission (fsgw_submit) wakes one whenever one sleeps. Larger n: fewer wake-ups, longer queues. A worker whose job ran long (it
 * probably waited on the disk) wakes another for what queued behind it. Call from the JS thread. */
void fsgw_pool_set_jobs_per_wake(fsgw_pool *pool, int32_t n);

/* An idle worker waits awake up to us microseconds for the next job before it sleeps, one worker
 * at a time, once per idle spell (default 0: it sleeps at once). A spinning worker spares the
 * submitter a futex wake and itself a sleep, at the price of the CPU it spins. */
void fsgw_pool_set_spin_us(fsgw_pool *pool, int32_t us);

/* Copies up to max ready completions into out and frees their slots; returns how many. */
int32_t fsgw_drain(fsgw_pool *pool, fsgw_comp *out, int32_t max);

/* Rings not yet answered: while > 0, a callback invocation may still be on its way to the JS
 * thread, so the callback must stay alive. */
int32_t fsgw_doorbells_outstanding(fsgw_pool *pool);

/* Fills out[0..n) with the FSGW_STAT_* counters; returns how many were written. */
int32_t fsgw_pool_stats(fsgw_pool *pool, double *out, int32_t n);

/* Completes this pool's queued operations with -ECANCELED and waits for those a worker is running;
 * later submissions get -ESHUTDOWN. The last pool over its workers to stop also stops them (each
 * finishes its current operation). Idempotent. Blocks until then. */
int32_t fsgw_pool_stop(fsgw_pool *pool);

/* Frees the pool (stopping it first if needed). The pointer is invalid afterwards. */
void fsgw_pool_free(fsgw_pool *pool);

/* Raises the soft RLIMIT_NOFILE to want, capped by the hard limit. Returns the soft limit now in
 * effect, or -errno. */
double fsgw_raise_nofile(double want);

/* Takes an exclusive advisory lock (flock) on path, creating the file (0600) if needed, and keeps
 * the descriptor open for the life of the process. A symbolic link at path is refused (-ELOOP):
 * the lock file is written (the caller writes its pid through the descriptor). Returns the
 * descriptor, -EWOULDBLOCK when another process holds the lock, or -errno. */
int32_t fsgw_lock_file(const char *path);

/* How long one FSGW_OP_SENDFILE waits for a full socket to take more before it completes with what
 * it sent: a client that stops reading holds a worker at most this long at a time. */
#define FSGW_SENDFILE_WAIT_MS 200

/* ---- Inline operations: on the caller's (the event loop's) thread, never waiting on a disk ----
 *
 * Each answers from what the kernel already holds in memory, or refuses with -EAGAIN without
 * having waited: the path is resolved with openat2(RESOLVE_CACHED) (a lookup that would read a
 * directory block is refused), and file data is read with preadv2(RWF_NOWAIT) (a page that is not
 * in the page cache is refused). The caller sends a refused operation to the pool. There is no
 * inline create, write, rename or unlink: Linux has no non-blocking form of them (buffered
 * pwritev2(RWF_NOWAIT) is EOPNOTSUPP on ext4), so those always go to the pool. */

/* How many recorded digests each thread's inline calls remember by inode (72 bytes each; 0: none,
 * every call reads the attribute). Takes effect for threads that have not used the inline calls
 * yet: call it before the first. */
void fsgw_digest_cache_entries(int32_t n);

/* The most directories one process confines (a data directory, and a read cache's per loop). */
#define FSGW_CONFINED_MAX 80

/* Confines dir (an absolute path without a trailing '/'): from now on every path that starts with
 * dir + '/', in every operation, pooled or inline, resolves beneath a descriptor of dir and never
 * through a symbolic link (see "Confinement" above); files created there get file_mode (0..0777,
 * less the umask). Process-wide and permanent. Returns the directory's index (the same index for
 * the same dir again, its first file mode kept), -ENOSYS when the kernel has no openat2 (Linux
 * 5.6+), -ENOSPC past FSGW_CONFINED_MAX, or -errno when dir cannot be opened. Paths elsewhere
 * resolve as plain paths. */
int32_t fsgw_confine(const char *dir, int32_t file_mode);

/* Stats path (under a confined directory: -ELOOP for a link; elsewhere following links, like
 * stat): returns its size, or -errno (-EAGAIN: not cached);
 * *mode_out = st_mode. With digest_out (FSGW_DIGEST_OUT_BYTES, or NULL), the cached, fsgw_open_cached
 * and fsgw_read_cached calls also read the file's recorded digest, as the operations above do. */
double fsgw_stat_cached(const char *path, int32_t *mode_out, uint8_t *digest_out);

/* Opens path, and if it is a regular file of at most cap bytes reads it whole into buf, all from
 * the caches; returns the file's size (its bytes are in buf only when size <= cap), -EISDIR for a
 * non-regular file, or -errno (-EAGAIN: some of it is not cached). */
double fsgw_read_cached(const char *path, void *buf, double cap, uint8_t *digest_out);

/* Reads len bytes of fd at offset from the page cache only (RWF_NOWAIT): the bytes read (fewer at
 * the end of the file), or -errno (-EAGAIN: not all of it is cached, or the file system cannot
 * say: read it on the pool). A volume record's header, for its digests. */
double fsgw_pread_now(int32_t fd, void *buf, double len, double offset);

/* Returns 1 when path lies on a local file system whose cached lookups and attributes are
 * authoritative (ext2/3/4, xfs, btrfs, tmpfs, f2fs, overlayfs), 0 otherwise (e.g. NFS: attributes must be
 * revalidated over the network), -errno when path cannot be examined. */
int32_t fsgw_fs_is_local(const char *path);

/* ---- Test hooks: bound only by the tests (test/helpers/native-hooks.ts), never by src/ ---- */

/* While on, every inline operation refuses with -EAGAIN, as if nothing were cached, so tests drive
 * the fallback to the pool. Process-wide. */
void fsgw_debug_set_inline_refused(int32_t on);

/* Makes every worker sleep this many microseconds before each operation (0: off), so tests can
 * hold operations in flight deterministically. */
void fsgw_debug_set_op_delay_us(fsgw_pool *pool, int32_t us);

/* Opens path for reading, resolved from the dentry cache only (RESOLVE_CACHED), and fstats it:
 * the descriptor (>= 0) with the file's size in *size_out; -EISDIR for anything but a regular
 * file (nothing left open); -EAGAIN when not cached; or -errno. The caller closes it
 * (fsgw_close). */
int32_t fsgw_open_cached(const char *path, double *size_out, uint8_t *digest_out);

/* Sends head[0, head_len), then file[offset, offset + len), then tail[0, tail_len) to a
 * non-blocking socket (a download's frames around its body: one call, no byte through the caller),
 * only when every page of the file's range is in the page cache (cachestat(2), so sendfile cannot
 * wait on the disk). Returns the bytes sent of the three together, which may be fewer than all when
 * the socket is full (0 included: the caller sends the rest another way); -EAGAIN when the range
 * is not cached or cachestat is unavailable (nothing sent: use FSGW_OP_SENDFILE); or -errno when
 * nothing could be sent. head and tail may be NULL with length 0. */
double fsgw_sendfile_now(int32_t sock, int32_t file, double offset, double len, const void *head, int32_t head_len, const void *tail, int32_t tail_len);

/* 0 when fd is a TCP socket whose local port and peer port are these (an independent check that
 * a runtime-reported descriptor is this connection's); -ESTALE for another socket; -errno. */
int32_t fsgw_socket_check(int32_t fd, int32_t local_port, int32_t peer_port);

/* 0 when splice(2) can write into a regular file created in dir (an unnamed O_TMPFILE, gone when
 * closed), -errno otherwise (-EINVAL: the file system has no splice write). Start-up only. */
int32_t fsgw_splice_probe(const char *dir);

/* dup(2) with close-on-exec, and close(2): the caller owns descriptors it hands to the pool. */
int32_t fsgw_dup(int32_t fd);
int32_t fsgw_close(int32_t fd);

#endif
