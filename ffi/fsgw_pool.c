/* fsgw_pool: see fsgw_pool.h for the contract. */
#define _GNU_SOURCE
#include "fsgw_pool.h"
#include "fsgw_md5.h"
#include "fsgw_sha256.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define THREADS_MAX 256
#define CAPACITY_MAX (1 << 24)
/* A job that takes longer than this probably waited on a disk (page-cache work takes microseconds). */
#define SLOW_JOB_NS 200000L

typedef struct fsgw_crew fsgw_crew;

typedef struct job {
  uint32_t op;
  uint32_t flags;
  int32_t fd;
  int32_t aux;
  int64_t offset;
  size_t len;
  void *buf;
  const char *path;
  const char *path2;
  void *ext;
  int64_t result;
  /* Whose job this is: the pool (front) that took the slot, and the slot's number there. */
  fsgw_pool *front;
  uint32_t slot;
} job;

/* The workers and their queue: one crew may serve several pools (fronts), one per event loop
 * (fsgw_pool_join), so that N loops share ioThreads workers instead of each running its own. */
struct fsgw_crew {
  /* Submission queue: a ring of jobs, guarded by lock; it holds every front's slots at once. */
  pthread_mutex_t lock;
  job **queue;
  uint32_t queue_head;
  uint32_t queue_len;
  uint32_t queue_cap;
  /* Sleeping workers, most recently idle on top: a job wakes the worker that ran last, whose
   * caches are warm and which is likely still on a CPU, instead of an arbitrary one. */
  uint32_t idle_stack[THREADS_MAX];
  uint32_t idle; /* entries in idle_stack */
  int stopping;
  /* Fronts created (freed when it drops to 0) and not yet stopped (threads end when it drops to 0);
   * both under lock. */
  int fronts;
  int fronts_active;

  /* A submission wakes a sleeping worker only while more than this many jobs per awake worker are
   * queued (1: a job per awake worker, as libuv). */
  uint32_t jobs_per_wake;
  /* Spinning: how long an idle worker waits awake for the next job before it sleeps (0: never);
   * `spinning` (under lock) allows one spinner at a time; queued_hint mirrors queue_len for it. */
  long spin_ns;
  int spinning;
  atomic_uint queued_hint;

  pthread_t threads[THREADS_MAX];
  /* Each worker sleeps on its own condition variable (with `lock`) until `woken` is set. */
  pthread_cond_t worker_cond[THREADS_MAX];
  int worker_woken[THREADS_MAX];
  int cond_count;
  int thread_count;
  int stopped;
  atomic_int op_delay_us;

  uint64_t queued_high; /* under lock */
  int prio_failed, affinity_failed; /* written once, before workers run */
  int worker_nice;
  atomic_int nice_failed;
};

/* A pool as one event loop sees it: its own slots, completion ring and doorbell, over a crew of
 * workers it may share with other loops' pools. */
struct fsgw_pool {
  fsgw_crew *crew;
  /* Slots. The free stack is touched only by the submitting thread (submit takes, drain frees). */
  job *jobs;
  uint32_t *free_slots;
  uint32_t free_count;
  uint32_t capacity;

  /* Completion ring: slot numbers in completion order, guarded by done_lock. */
  pthread_mutex_t done_lock;
  uint32_t *done;
  uint32_t done_head;
  uint32_t done_len;

  /* Doorbell: rung when bell_armed goes 1 -> 0; fsgw_doorbell_answer re-arms it. */
  void (*doorbell)(void);
  atomic_int bell_armed;
  atomic_int bells_outstanding;
  /* 1 while the loop has promised to poll the completion ring (fsgw_loop_busy .. fsgw_poll): a
   * completion then needs no doorbell, because the loop is awake and will look. */
  atomic_int loop_awake;
  /* This front's jobs a worker is running now (stop waits for them when other fronts go on). */
  atomic_int running;
  int stopping; /* set by the loop thread: submissions are refused */
  int stopped;

  /* Counters: `submitted` under the crew's lock; `refused`, `drains` and `drained` only by the loop
   * thread (the one submitter and drainer of this front), so they need no lock; the workers'
   * `completed` and `doorbells` are atomic. */
  uint64_t submitted, refused, drains, drained;
  atomic_uint_fast64_t completed, doorbells;
};

int32_t fsgw_abi_version(void) { return FSGW_ABI_VERSION; }

int32_t fsgw_struct_layout(int32_t *out, int32_t n) {
  int32_t v[FSGW_LAYOUT_COUNT];
  v[FSGW_LAYOUT_SUB_SIZE] = (int32_t)sizeof(fsgw_sub);
  v[FSGW_LAYOUT_SUB_OP] = (int32_t)offsetof(fsgw_sub, op);
  v[FSGW_LAYOUT_SUB_FLAGS] = (int32_t)offsetof(fsgw_sub, flags);
  v[FSGW_LAYOUT_SUB_FD] = (int32_t)offsetof(fsgw_sub, fd);
  v[FSGW_LAYOUT_SUB_SLOT] = (int32_t)offsetof(fsgw_sub, slot);
  v[FSGW_LAYOUT_SUB_OFFSET] = (int32_t)offsetof(fsgw_sub, offset);
  v[FSGW_LAYOUT_SUB_LEN] = (int32_t)offsetof(fsgw_sub, len);
  v[FSGW_LAYOUT_SUB_BUF] = (int32_t)offsetof(fsgw_sub, buf);
  v[FSGW_LAYOUT_SUB_PATH] = (int32_t)offsetof(fsgw_sub, path);
  v[FSGW_LAYOUT_SUB_PATH2] = (int32_t)offsetof(fsgw_sub, path2);
  v[FSGW_LAYOUT_COMP_SIZE] = (int32_t)sizeof(fsgw_comp);
  v[FSGW_LAYOUT_COMP_SLOT] = (int32_t)offsetof(fsgw_comp, slot);
  v[FSGW_LAYOUT_COMP_AUX] = (int32_t)offsetof(fsgw_comp, aux);
  v[FSGW_LAYOUT_COMP_RESULT] = (int32_t)offsetof(fsgw_comp, result);
  v[FSGW_LAYOUT_SUB_EXT] = (int32_t)offsetof(fsgw_sub, ext);
  int32_t count = n < FSGW_LAYOUT_COUNT ? n : FSGW_LAYOUT_COUNT;
  memcpy(out, v, (size_t)count * sizeof(int32_t));
  return count;
}

/* Programmer errors that would corrupt data if execution went on: stop loudly instead. */
#define FSGW_ASSERT(cond)                                                                 \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "fsgw_pool: assertion failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      abort();                                                                            \
    }                                                                                     \
  } while (0)

static int64_t neg_errno(void) { return -(int64_t)errno; }

/* ---- confinement (fsgw_confine): paths under a confined directory resolve beneath it, no links ---- */

/* How a path below a confined directory is walked: never above it, never through a link. */
#define CONFINED_RESOLVE (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
/* Mode of files created outside every confined directory (test paths, tools). */
#define UNCONFINED_FILE_MODE 0644

typedef struct confined_dir {
  int fd;             /* O_PATH descriptor of the directory, open for the life of the process */
  mode_t file_mode;   /* of files created beneath it */
  size_t prefix_len;  /* of prefix: the directory's path and '/' */
  char *prefix;
} confined_dir;

/* Entries are written once, under the lock, before confined_count publishes them (release); readers
 * load the count (acquire) and read the entries without a lock. */
static pthread_mutex_t confined_lock = PTHREAD_MUTEX_INITIALIZER;
static confined_dir confined[FSGW_CONFINED_MAX];
static atomic_int confined_count;
/* The entry this thread matched last: each event loop (and each worker, mostly) uses one. */
static __thread int confined_last = -1;

static long openat2_raw(int dir, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = flags;
  how.mode = mode;
  how.resolve = resolve;
  long fd;
  do fd = syscall(SYS_openat2, dir, path, &how, sizeof how);
  while (fd < 0 && errno == EINTR);
  return fd;
}

int32_t fsgw_confine(const char *dir, int32_t file_mode) {
  size_t n = strlen(dir);
  if (n == 0 || dir[0] != '/' || (n > 1 && dir[n - 1] == '/') || n + 2 > 4096) return -EINVAL;
  if (file_mode < 0 || file_mode > 0777) return -EINVAL;
  pthread_mutex_lock(&confined_lock);
  int32_t rc = -ENOSPC;
  int count = atomic_load_explicit(&confined_count, memory_order_relaxed);
  for (int i = 0; i < count; i++) {
    if (confined[i].prefix_len == n + 1 && memcmp(confined[i].prefix, dir, n) == 0) {
      rc = i;
      goto done;
    }
  }
  if (count < FSGW_CONFINED_MAX) {
    int fd;
    do fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
      rc = (int32_t)neg_errno();
      goto done;
    }
    /* The kernel must walk paths with openat2's rules, or nothing here can be promised. */
    long probe = openat2_raw(fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0, CONFINED_RESOLVE);
    if (probe < 0) {
      rc = (int32_t)neg_errno();
      close(fd);
      goto done;
    }
    close((int)probe);
    char *prefix = malloc(n + 2);
    if (prefix == NULL) {
      close(fd);
      rc = -ENOMEM;
      goto done;
    }
    memcpy(prefix, dir, n);
    prefix[n] = '/';
    prefix[n + 1] = '\0';
    confined[count] = (confined_dir){fd, (mode_t)file_mode, n + 1, prefix};
    atomic_store_explicit(&confined_count, count + 1, memory_order_release);
    rc = count;
  }
done:
  pthread_mutex_unlock(&confined_lock);
  return rc;
}

/* The confined directory `path` lies beneath (the longest, should they nest), with *rel the part of
 * the path below it; or NULL, and *rel = path. */
static const confined_dir *confined_of(const char *path, const char **rel) {
  *rel = path;
  int count = atomic_load_explicit(&confined_count, memory_order_acquire);
  int last = confined_last;
  if (last >= 0 && last < count && strncmp(path, confined[last].prefix, confined[last].prefix_len) == 0 && path[confined[last].prefix_len] != '\0') {
    *rel = path + confined[last].prefix_len;
    return &confined[last];
  }
  int best = -1;
  for (int i = 0; i < count; i++) {
    if (strncmp(path, confined[i].prefix, confined[i].prefix_len) == 0 && path[confined[i].prefix_len] != '\0' &&
        (best < 0 || confined[i].prefix_len > confined[best].prefix_len))
      best = i;
  }
  if (best < 0) return NULL;
  confined_last = best;
  *rel = path + confined[best].prefix_len;
  return &confined[best];
}

/* open(2) of path: beneath its confined directory without links (EXDEV, an escape, is ELOOP to
 * callers: both are "a link or a trick in the way"), else as a plain path. `extra` adds resolve
 * flags (RESOLVE_CACHED for the inline calls). A descriptor, or -errno. */
static int open_path(const char *path, int oflags, uint64_t extra) {
  const char *rel;
  const confined_dir *c = confined_of(path, &rel);
  long fd;
  if (c != NULL) {
    fd = openat2_raw(c->fd, rel, (uint64_t)(oflags | O_CLOEXEC), (oflags & O_CREAT) ? c->file_mode : 0, CONFINED_RESOLVE | extra);
    if (fd < 0 && errno == EXDEV) errno = ELOOP;
  } else if (extra != 0) {
    fd = openat2_raw(AT_FDCWD, path, (uint64_t)(oflags | O_CLOEXEC), (oflags & O_CREAT) ? UNCONFINED_FILE_MODE : 0, extra);
  } else {
    do fd = open(path, oflags | O_CLOEXEC, UNCONFINED_FILE_MODE);
    while (fd < 0 && errno == EINTR);
  }
  return fd < 0 ? (int)neg_errno() : (int)fd;
}

/* The directory that holds path, opened with oflags (O_PATH for renames and unlinks, O_RDONLY to
 * fsync it), beneath its confined directory without links; *leaf = the last component, *c = the
 * confined directory (NULL: a plain path). A descriptor, or -errno. */
static int open_parent(const char *path, int oflags, const char **leaf, const confined_dir **c) {
  const char *rel;
  *c = confined_of(path, &rel);
  const char *slash = strrchr(rel, '/');
  *leaf = slash == NULL ? rel : slash + 1;
  char dir[4096];
  size_t n = slash == NULL ? 0 : (size_t)(slash - rel);
  if (n >= sizeof dir) return -ENAMETOOLONG;
  if (slash == NULL) {
    /* The confined directory itself, or a plain path's working directory. */
    dir[0] = '.';
    n = 1;
  } else if (n == 0) {
    dir[0] = '/'; /* a plain path in / */
    n = 1;
  } else {
    memcpy(dir, rel, n);
  }
  dir[n] = '\0';
  long fd;
  if (*c != NULL) {
    fd = openat2_raw((*c)->fd, dir, (uint64_t)(oflags | O_DIRECTORY | O_CLOEXEC), 0, CONFINED_RESOLVE);
    if (fd < 0 && errno == EXDEV) errno = ELOOP;
  } else {
    do fd = open(dir, oflags | O_DIRECTORY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
  }
  return fd < 0 ? (int)neg_errno() : (int)fd;
}

/* ---- the operations (run on workers) ---- */

static int64_t do_open(const char *path, uint32_t flags) {
  int oflags = flags == FSGW_OPEN_CREATE ? (O_RDWR | O_CREAT | O_EXCL) : flags == FSGW_OPEN_WRITE ? O_RDWR : O_RDONLY;
  return open_path(path, oflags, 0);
}

/* rename(2) within one directory's tree: both names resolved beneath their confined directory
 * without links, the move made relative to descriptors of their directories. */
static int64_t do_rename(const char *from, const char *to) {
  const char *from_leaf, *to_leaf;
  const confined_dir *cf, *ct;
  int from_dir = open_parent(from, O_PATH, &from_leaf, &cf);
  if (from_dir < 0) return from_dir;
  int to_dir = open_parent(to, O_PATH, &to_leaf, &ct);
  if (to_dir < 0) {
    close(from_dir);
    return to_dir;
  }
  int64_t rc = cf != ct ? -EXDEV : renameat(from_dir, from_leaf, to_dir, to_leaf) == 0 ? 0 : neg_errno();
  close(from_dir);
  close(to_dir);
  return rc;
}

/* unlink(2), relative to a descriptor of the file's directory: a link named path is removed
 * itself, never what it points to. */
static int64_t do_unlink(const char *path) {
  const char *leaf;
  const confined_dir *c;
  int dir = open_parent(path, O_PATH, &leaf, &c);
  if (dir < 0) return dir;
  int64_t rc = unlinkat(dir, leaf, 0) == 0 ? 0 : neg_errno();
  close(dir);
  return rc;
}

/* Writes all of buf: short writes are continued, EINTR and EAGAIN retried. */
static int64_t do_pwrite_all(int fd, const char *buf, size_t len, int64_t offset) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd, buf + done, len - done, (off_t)(offset + (int64_t)done));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return neg_errno();
    }
    if (n == 0) return -EIO; /* a regular file that takes nothing: do not loop forever */
    done += (size_t)n;
  }
  return (int64_t)len;
}

static int64_t do_pread(int fd, void *buf, size_t len, int64_t offset) {
  ssize_t n;
  do n = pread(fd, buf, len, (off_t)offset);
  while (n < 0 && (errno == EINTR || errno == EAGAIN));
  return n < 0 ? neg_errno() : (int64_t)n;
}

static int64_t stat_result(int rc, const struct stat *st, int32_t *aux) {
  if (rc != 0) return neg_errno();
  *aux = (int32_t)st->st_mode;
  return (int64_t)st->st_size;
}

/* close() is not retried on EINTR: on Linux the descriptor is released either way. */
static int64_t do_close(int fd) { return close(fd) == 0 ? 0 : neg_errno(); }

static atomic_uint_fast64_t fsyncs_done;

/* The library's only fsync: every durable step (FSGW_OP_FSYNC, the commit's file and directory)
 * comes through here, and is counted (fsgw_fsync_count). */
static int64_t do_fsync(int fd) {
  int rc;
  do rc = fsync(fd);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) return neg_errno();
  atomic_fetch_add(&fsyncs_done, 1);
  return 0;
}

double fsgw_fsync_count(void) { return (double)atomic_load(&fsyncs_done); }

/* create + write + (fsync) + close + rename (+ fsync of the directory): a whole small upload in
 * one trip to a worker. The directories of the two paths are opened beneath their confined
 * directory without links (once, when the paths name the same one, as the store's always do): the
 * temporary file is created in its directory by its last component (O_EXCL | O_NOFOLLOW: no link
 * followed), renamed relative to the two descriptors and, when durable, the final name's directory
 * fsynced through its descriptor. */
static int64_t set_digest(int fd, const uint8_t *digest, size_t len);

static int64_t do_commit(const char *tmp, const char *final_path, const char *buf, size_t len, uint32_t flags, const uint8_t *digest,
                         int32_t *aux) {
  const char *tmp_leaf, *final_leaf;
  const confined_dir *c, *c2;
  int durable = (flags & FSGW_COMMIT_FSYNC) != 0;
  const char *tmp_slash = strrchr(tmp, '/'), *final_slash = strrchr(final_path, '/');
  size_t tmp_dir_len = tmp_slash == NULL ? 0 : (size_t)(tmp_slash - tmp);
  int same_dir = (final_slash == NULL ? 0 : (size_t)(final_slash - final_path)) == tmp_dir_len && strncmp(tmp, final_path, tmp_dir_len) == 0;
  int dir = open_parent(tmp, same_dir && durable ? O_RDONLY : O_PATH, &tmp_leaf, &c);
  if (dir < 0) return dir;
  int final_dir = dir;
  if (!same_dir) {
    final_dir = open_parent(final_path, durable ? O_RDONLY : O_PATH, &final_leaf, &c2);
    if (final_dir < 0) {
      close(dir);
      return final_dir;
    }
  } else {
    final_leaf = final_slash == NULL ? final_path : final_slash + 1;
    c2 = c;
  }
  int64_t rc = 0;
  int64_t fd = -1;
  if (c != c2) rc = -EXDEV; /* a rename never leaves its confined directory */
  if (rc >= 0) {
    do fd = openat(dir, tmp_leaf, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, c != NULL ? c->file_mode : UNCONFINED_FILE_MODE);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) rc = neg_errno();
  }
  if (rc >= 0) {
    rc = do_pwrite_all((int)fd, buf, len, 0);
    if (rc >= 0 && digest != NULL) {
      /* Recorded before the rename: the file and its digest appear under the key together. */
      int64_t d = set_digest((int)fd, digest, (flags & FSGW_COMMIT_MD5) ? 48 : 32);
      if (d == -ENOTSUP) *aux = ENOTSUP; /* a file system without user attributes: committed without it */
      else if (d < 0) rc = d;
    }
    if (rc >= 0 && durable) rc = do_fsync((int)fd);
    int64_t closed = do_close((int)fd);
    if (rc >= 0) rc = closed;
    if (rc >= 0 && renameat(dir, tmp_leaf, final_dir, final_leaf) != 0) rc = neg_errno();
    if (rc < 0) unlinkat(dir, tmp_leaf, 0);
  }
  /* The file's bytes are on disk; the rename is only once its directory is too. */
  if (rc >= 0 && durable) rc = do_fsync(final_dir);
  if (final_dir != dir) close(final_dir);
  close(dir);
  return rc < 0 ? rc : (int64_t)len;
}

/* open + fstat + read it all + close: a whole small download in one trip to a worker. */
static void digest_of_fd(int fd, uint8_t *out);
static void mtime_fact(const struct stat *st, uint8_t *out);

static int64_t do_read_file(const char *path, char *buf, size_t cap, int32_t *aux, uint8_t *digest_out) {
  int64_t fd = do_open(path, FSGW_OPEN_READ);
  if (fd < 0) return fd;
  struct stat st;
  int64_t rc = stat_result(fstat((int)fd, &st), &st, aux);
  if (rc >= 0 && digest_out != NULL) {
    digest_of_fd((int)fd, digest_out);
    mtime_fact(&st, digest_out);
  }
  if (rc >= 0 && !S_ISREG(st.st_mode)) rc = -EISDIR;
  if (rc >= 0 && (uint64_t)st.st_size <= cap) {
    size_t size = (size_t)st.st_size, done = 0;
    while (done < size) {
      int64_t n = do_pread((int)fd, buf + done, size - done, (int64_t)done);
      if (n < 0) {
        rc = n;
        break;
      }
      if (n == 0) {
        rc = -EIO; /* the file shrank under us: its size no longer describes its bytes */
        break;
      }
      done += (size_t)n;
    }
  }
  do_close((int)fd);
  return rc;
}

/* Sends file[offset, offset + len) to sock. While the socket is full it waits (poll) up to wait_ms
 * at a time, and returns what went when the wait passes with no room (wait_ms 0: at once, never
 * waiting). A stalled client so gets its worker back to the queue. */
static int64_t send_file_range(int sock, int file, int64_t offset, size_t len, int wait_ms) {
  size_t done = 0;
  while (done < len) {
    off_t at = (off_t)(offset + (int64_t)done);
    ssize_t n = sendfile(sock, file, &at, len - done);
    if (n > 0) {
      done += (size_t)n;
      continue;
    }
    if (n == 0) return done > 0 ? (int64_t)done : -ENODATA; /* the file ended early (it shrank) */
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return done > 0 ? (int64_t)done : neg_errno();
    if (wait_ms == 0) break;
    struct pollfd p = {.fd = sock, .events = POLLOUT};
    int ready;
    do ready = poll(&p, 1, wait_ms);
    while (ready < 0 && errno == EINTR);
    if (ready <= 0) break; /* still full: complete with what went, the caller submits the rest */
  }
  return (int64_t)done;
}

/* Each worker's pipe for splice (a socket cannot be spliced to a file directly), created on first
 * use and closed when the worker exits; a pipe left holding bytes after an error is discarded. */
static __thread int splice_pipe[2] = {-1, -1};

static void drop_splice_pipe(void) {
  if (splice_pipe[0] >= 0) close(splice_pipe[0]);
  if (splice_pipe[1] >= 0) close(splice_pipe[1]);
  splice_pipe[0] = splice_pipe[1] = -1;
}

/* Moves up to len bytes from sock into file at offset: socket -> pipe -> file, no copy to user
 * space. Waits for the socket (poll) at most FSGW_SENDFILE_WAIT_MS at a time. */
static int64_t hash_file_range(fsgw_sha256 *ctx, int file, int64_t offset, size_t len);

/* With ctx, each pipe-full is hashed as soon as it is in the file (read back from the page cache,
 * still warm), while the socket goes on filling: hashing overlaps the transfer instead of
 * following it. */
static int64_t splice_in_raw(int sock, int file, int64_t offset, size_t len, int32_t *aux, fsgw_sha256 *ctx) {
  if (splice_pipe[0] < 0) {
    if (pipe2(splice_pipe, O_CLOEXEC) != 0) return neg_errno();
    fcntl(splice_pipe[1], F_SETPIPE_SZ, 1 << 20); /* fewer round trips; the default 64 KiB also works */
  }
  size_t done = 0;
  while (done < len) {
    ssize_t in = splice(sock, NULL, splice_pipe[1], NULL, len - done, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (in == 0) return done > 0 ? (int64_t)done : -ECONNRESET; /* the peer closed */
    if (in < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return done > 0 ? (int64_t)done : neg_errno();
      struct pollfd p = {.fd = sock, .events = POLLIN};
      int ready;
      do ready = poll(&p, 1, FSGW_SENDFILE_WAIT_MS);
      while (ready < 0 && errno == EINTR);
      if (ready <= 0) break;
      continue;
    }
    /* Everything that entered the pipe goes to the file before more is read. */
    size_t left = (size_t)in;
    while (left > 0) {
      loff_t at = (loff_t)(offset + (int64_t)(done + (size_t)in - left));
      ssize_t out = splice(splice_pipe[0], NULL, file, &at, left, SPLICE_F_MOVE);
      if (out < 0 && errno == EINTR) continue;
      if (out <= 0) {
        /* The file refused (a full disk): the bytes taken from the socket are counted all the
         * same, so the caller knows where the body stands, and the file's errno goes in aux. */
        *aux = out < 0 ? errno : EIO;
        drop_splice_pipe(); /* it still holds bytes that belong nowhere now */
        return (int64_t)(done + (size_t)in);
      }
      left -= (size_t)out;
    }
    if (ctx != NULL) {
      int64_t rc = hash_file_range(ctx, file, offset + (int64_t)done, (size_t)in);
      if (rc < 0) {
        *aux = (int32_t)-rc; /* taken from the socket, not hashed: the upload fails */
        return (int64_t)(done + (size_t)in);
      }
    }
    done += (size_t)in;
  }
  return (int64_t)done;
}

/* Adds file[offset, offset + len) to a digest, reading it back (from the page cache: it was just
 * written). 0, or -errno. */
static int64_t hash_file_range(fsgw_sha256 *ctx, int file, int64_t offset, size_t len) {
  uint8_t buf[64 * 1024];
  size_t done = 0;
  while (done < len) {
    size_t want = len - done < sizeof buf ? len - done : sizeof buf;
    int64_t n = do_pread(file, buf, want, offset + (int64_t)done);
    if (n < 0) return n;
    if (n == 0) return -EIO; /* the file is shorter than what was just written into it */
    fsgw_hash_update(ctx, buf, (size_t)n); /* and its MD5, when ctx is a pair (fsgw_md5.h) */
    done += (size_t)n;
  }
  return 0;
}

/* SPLICE_IN, and with a digest context the bytes that reached the file added to it: the context
 * then always describes exactly the bytes on disk, a broken connection included. */
static int64_t do_splice_in(int sock, int file, int64_t offset, size_t len, int32_t *aux, fsgw_sha256 *ctx) {
  return splice_in_raw(sock, file, offset, len, aux, ctx);
}

/* The flags of an attribute value of n bytes read into out + 1 (32: SHA-256; 48: and MD5). */
static uint8_t digest_flags(ssize_t n) {
  return n == 32 ? FSGW_FACT_SHA256 : n == 48 ? FSGW_FACT_SHA256 | FSGW_FACT_MD5 : 0;
}

/* The modification time (ms) into a facts buffer, flagged. */
static void mtime_fact(const struct stat *st, uint8_t *out) {
  int64_t ms = (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
  memcpy(out + 49, &ms, 8); /* little-endian on every platform fsgw builds for */
  out[0] |= FSGW_FACT_MTIME;
}

/* The file's recorded digests into out (FSGW_DIGEST_OUT_BYTES), flags reset: none when it has
 * none, or its file system keeps no user attributes. Every caller then adds the mtime (mtime_fact),
 * also when the digests come from the cache, which keeps digests only. */
static void digest_of_fd(int fd, uint8_t *out) {
  out[0] = digest_flags(fgetxattr(fd, FSGW_DIGEST_XATTR, out + 1, 48));
}

static int digest_by_path(const char *path, int opath_fd, uint8_t *out);

/* STAT: the entry under path, never through a link beneath a confined directory (an O_PATH open
 * touches no file data, and fstat on it reads the inode). */
static int64_t do_stat(const char *path, int32_t *aux, uint8_t *digest_out) {
  int fd = open_path(path, O_PATH, 0);
  if (fd < 0) return fd;
  struct stat st;
  int64_t rc = stat_result(fstat(fd, &st), &st, aux);
  if (rc >= 0 && digest_out != NULL) {
    if (S_ISREG(st.st_mode)) digest_by_path(path, fd, digest_out);
    else digest_out[0] = 0;
    mtime_fact(&st, digest_out);
  }
  close(fd);
  return rc;
}

static int64_t set_digest(int fd, const uint8_t *digest, size_t len) {
  if (len != 32 && len != 48) return -EINVAL;
  return fsetxattr(fd, FSGW_DIGEST_XATTR, digest, len, 0) == 0 ? 0 : neg_errno();
}

static void run_job(job *j) {
  struct stat st;
  j->aux = 0;
  switch (j->op) {
    case FSGW_OP_NOP: j->result = (int64_t)j->len; break;
    case FSGW_OP_OPEN: j->result = do_open(j->path, j->flags); break;
    case FSGW_OP_PWRITE: j->result = do_pwrite_all(j->fd, j->buf, j->len, j->offset); break;
    case FSGW_OP_PREAD: j->result = do_pread(j->fd, j->buf, j->len, j->offset); break;
    case FSGW_OP_FSTAT:
      j->result = stat_result(fstat(j->fd, &st), &st, &j->aux);
      if (j->result >= 0 && j->ext != NULL) {
        digest_of_fd(j->fd, j->ext);
        mtime_fact(&st, j->ext);
      }
      break;
    case FSGW_OP_STAT: j->result = do_stat(j->path, &j->aux, j->ext); break;
    case FSGW_OP_CLOSE: j->result = do_close(j->fd); break;
    case FSGW_OP_FSYNC: j->result = do_fsync(j->fd); break;
    case FSGW_OP_RENAME: j->result = do_rename(j->path, j->path2); break;
    case FSGW_OP_UNLINK: j->result = do_unlink(j->path); break;
    case FSGW_OP_COMMIT: j->result = do_commit(j->path, j->path2, j->buf, j->len, j->flags, j->ext, &j->aux); break;
    case FSGW_OP_READ_FILE: j->result = do_read_file(j->path, j->buf, j->len, &j->aux, j->ext); break;
    case FSGW_OP_FSETDIGEST: j->result = set_digest(j->fd, j->ext, j->len == 48 ? 48 : 32); break;
    case FSGW_OP_SENDFILE: j->result = send_file_range(j->fd, (int)j->flags, j->offset, j->len, FSGW_SENDFILE_WAIT_MS); break;
    case FSGW_OP_SPLICE_IN: j->result = do_splice_in(j->fd, (int)j->flags, j->offset, j->len, &j->aux, j->ext); break;
    default: j->result = -EINVAL; break;
  }
}

/* ---- completion and doorbell ---- */

static void ring(fsgw_pool *pool) {
  int armed = 1;
  if (atomic_compare_exchange_strong(&pool->bell_armed, &armed, 0)) {
    atomic_fetch_add(&pool->bells_outstanding, 1);
    atomic_fetch_add(&pool->doorbells, 1);
    pool->doorbell();
  }
}

/* Appends a finished slot to its pool's completion ring. The ring holds `capacity` entries and a
 * slot appears in it at most once until drained, so it cannot overflow. */
static void complete(fsgw_pool *pool, uint32_t slot) {
  pthread_mutex_lock(&pool->done_lock);
  pool->done[(pool->done_head + pool->done_len) % pool->capacity] = slot;
  pool->done_len++;
  pthread_mutex_unlock(&pool->done_lock);
  atomic_fetch_add(&pool->completed, 1);
}

/* Wakes a sleeping worker when jobs wait in the queue. */
static void wake_one_if_queued(fsgw_crew *crew) {
  int w = -1;
  pthread_mutex_lock(&crew->lock);
  if (crew->queue_len > 0 && crew->idle > 0 && !crew->stopping) {
    w = (int)crew->idle_stack[--crew->idle];
    crew->worker_woken[w] = 1;
  }
  pthread_mutex_unlock(&crew->lock);
  if (w >= 0) pthread_cond_signal(&crew->worker_cond[w]);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ volatile("pause");
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

/* Waits awake, without the lock, until a job is queued or spin_ns have passed. */
static void spin_for_work(fsgw_crew *crew) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (uint32_t i = 1;; i++) {
    if (atomic_load_explicit(&crew->queued_hint, memory_order_relaxed) > 0) return;
    cpu_relax();
    if ((i & 63) == 0) {
      clock_gettime(CLOCK_MONOTONIC, &t);
      if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) > crew->spin_ns) return;
    }
  }
}

typedef struct worker_arg {
  fsgw_crew *crew;
  uint32_t index;
} worker_arg;

static void *worker(void *arg) {
  fsgw_crew *crew = ((worker_arg *)arg)->crew;
  uint32_t self = ((worker_arg *)arg)->index;
  free(arg);
  /* A peer that hangs up mid-sendfile must be an -EPIPE, not a signal that kills the process (Bun
   * ignores SIGPIPE process-wide today; this holds for the workers whatever a runtime does). */
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
  /* A positive nice value lets the JS thread, the one serial stage of the server, win the CPU
   * over workers when cores are scarce. Lowering priority needs no privilege; failure is counted. */
  if (crew->worker_nice != 0 && setpriority(PRIO_PROCESS, (id_t)gettid(), crew->worker_nice) != 0) {
    atomic_fetch_add(&crew->nice_failed, 1);
  }
  for (;;) {
    pthread_mutex_lock(&crew->lock);
    int spun = 0;
    while (crew->queue_len == 0 && !crew->stopping) {
      /* Work that streams in arrives within microseconds of the last job: one worker at a time
       * waits for it awake, for at most spin_ns once per idle spell, so the submitter need not pay
       * a futex wake and this worker a sleep and a wake-up. An idle pool never spins. */
      if (crew->spin_ns > 0 && !crew->spinning && !spun) {
        crew->spinning = 1;
        spun = 1;
        pthread_mutex_unlock(&crew->lock);
        spin_for_work(crew);
        pthread_mutex_lock(&crew->lock);
        crew->spinning = 0;
        continue;
      }
      /* Go to sleep on top of the idle stack; a submitter pops this worker and sets its flag. */
      crew->worker_woken[self] = 0;
      crew->idle_stack[crew->idle++] = self;
      while (!crew->worker_woken[self] && !crew->stopping) pthread_cond_wait(&crew->worker_cond[self], &crew->lock);
    }
    if (crew->stopping) {
      pthread_mutex_unlock(&crew->lock);
      drop_splice_pipe();
      return NULL;
    }
    job *j = crew->queue[crew->queue_head];
    crew->queue_head = (crew->queue_head + 1) % crew->queue_cap;
    crew->queue_len--;
    atomic_store_explicit(&crew->queued_hint, crew->queue_len, memory_order_relaxed);
    fsgw_pool *front = j->front;
    atomic_fetch_add(&front->running, 1); /* under the lock: a stopping front sees it */
    pthread_mutex_unlock(&crew->lock);

    int delay = atomic_load_explicit(&crew->op_delay_us, memory_order_relaxed);
    if (delay > 0) {
      struct timespec ts = {delay / 1000000, (long)(delay % 1000000) * 1000};
      nanosleep(&ts, NULL);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_job(j);
    complete(front, j->slot);
    if (!atomic_load(&front->loop_awake)) ring(front);
    atomic_fetch_sub(&front->running, 1); /* the last touch of the front */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* A slow job may have blocked on the disk while jobs queued behind it: hand them to a sleeping
     * worker rather than leave them to this one (submissions wake few workers, see jobs_per_wake). */
    if ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) > SLOW_JOB_NS) wake_one_if_queued(crew);
  }
}

/* ---- life cycle ---- */

/* A front over `crew` with `capacity` slots, or NULL (out of memory). */
static fsgw_pool *front_new(fsgw_crew *crew, uint32_t capacity, void (*doorbell)(void)) {
  fsgw_pool *pool = calloc(1, sizeof *pool);
  if (pool == NULL) return NULL;
  pool->crew = crew;
  pool->capacity = capacity;
  pool->jobs = calloc((size_t)capacity, sizeof(job));
  pool->free_slots = calloc((size_t)capacity, sizeof(uint32_t));
  pool->done = calloc((size_t)capacity, sizeof(uint32_t));
  if (!pool->jobs || !pool->free_slots || !pool->done) {
    free(pool->jobs); free(pool->free_slots); free(pool->done); free(pool);
    return NULL;
  }
  /* Lowest slot numbers are handed out first (the stack is popped from the end). */
  for (uint32_t i = 0; i < capacity; i++) {
    pool->free_slots[i] = capacity - 1 - i;
    pool->jobs[i].front = pool;
    pool->jobs[i].slot = i;
  }
  pool->free_count = capacity;
  pthread_mutex_init(&pool->done_lock, NULL);
  pool->doorbell = doorbell;
  atomic_init(&pool->bell_armed, 1);
  atomic_init(&pool->bells_outstanding, 0);
  atomic_init(&pool->loop_awake, 0);
  atomic_init(&pool->running, 0);
  return pool;
}

/* Makes room in the crew's queue for `more` slots (under lock, before any of them is queued). */
static int crew_grow_locked(fsgw_crew *crew, uint32_t more) {
  uint64_t cap = (uint64_t)crew->queue_cap + more;
  if (cap > (uint64_t)CAPACITY_MAX * THREADS_MAX) return -EINVAL;
  job **q = malloc((size_t)cap * sizeof(job *));
  if (q == NULL) return -ENOMEM;
  for (uint32_t k = 0; k < crew->queue_len; k++) q[k] = crew->queue[(crew->queue_head + k) % crew->queue_cap];
  free(crew->queue);
  crew->queue = q;
  crew->queue_head = 0;
  crew->queue_cap = (uint32_t)cap;
  return 0;
}

static void crew_free(fsgw_crew *crew) {
  pthread_mutex_destroy(&crew->lock);
  for (int i = 0; i < crew->cond_count; i++) pthread_cond_destroy(&crew->worker_cond[i]);
  free(crew->queue);
  free(crew);
}

int32_t fsgw_pool_create(int32_t threads, int32_t capacity, int32_t prior_threads, int32_t cpu_affinity,
                         int32_t worker_nice, void (*doorbell)(void), uint64_t *out) {
  if (threads < 1 || threads > THREADS_MAX || capacity < 1 || capacity > CAPACITY_MAX || worker_nice < 0 ||
      worker_nice > 19 || doorbell == NULL || out == NULL) {
    return -EINVAL;
  }
  fsgw_crew *crew = calloc(1, sizeof *crew);
  if (crew == NULL) return -ENOMEM;
  pthread_mutex_init(&crew->lock, NULL);
  for (int i = 0; i < threads; i++) pthread_cond_init(&crew->worker_cond[i], NULL);
  crew->cond_count = threads;
  if (crew_grow_locked(crew, (uint32_t)capacity) != 0) {
    crew_free(crew);
    return -ENOMEM;
  }
  fsgw_pool *pool = front_new(crew, (uint32_t)capacity, doorbell);
  if (pool == NULL) {
    crew_free(crew);
    return -ENOMEM;
  }
  crew->fronts = 1;
  crew->fronts_active = 1;
  crew->worker_nice = worker_nice;
  atomic_init(&crew->nice_failed, 0);
  atomic_init(&crew->queued_hint, 0);
  crew->jobs_per_wake = 1;
  atomic_init(&crew->op_delay_us, 0);

  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 1) ncpu = 1;
  for (int i = 0; i < threads; i++) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* File operations need little stack; 256 KiB instead of the 8 MiB default keeps 256 workers cheap. */
    pthread_attr_setstacksize(&attr, 256 * 1024);
    worker_arg *warg = malloc(sizeof *warg); /* freed by the worker: creation only, not per operation */
    int rc = warg == NULL ? ENOMEM : 0;
    if (rc == 0) {
      warg->crew = crew;
      warg->index = (uint32_t)i;
      rc = pthread_create(&crew->threads[i], &attr, worker, warg);
      if (rc != 0) free(warg);
    }
    pthread_attr_destroy(&attr);
    if (rc != 0) {
      fsgw_pool_free(pool);
      return -rc;
    }
    crew->thread_count++;
    char name[24];
    snprintf(name, sizeof name, "fsgw-io-%d", i);
    name[15] = '\0'; /* thread names are 15 bytes at most */
    pthread_setname_np(crew->threads[i], name); /* shows in top -H, ps -L, /proc/<pid>/task */
    if (i < prior_threads) {
      struct sched_param sp = {.sched_priority = sched_get_priority_min(SCHED_RR)};
      if (pthread_setschedparam(crew->threads[i], SCHED_RR, &sp) != 0) crew->prio_failed++;
    }
    if (cpu_affinity) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET((int)(i % ncpu), &set);
      if (pthread_setaffinity_np(crew->threads[i], sizeof set, &set) != 0) crew->affinity_failed++;
    }
  }
  *out = (uint64_t)(uintptr_t)pool;
  return 0;
}

int32_t fsgw_pool_join(fsgw_pool *other, int32_t capacity, void (*doorbell)(void), uint64_t *out) {
  if (other == NULL || capacity < 1 || capacity > CAPACITY_MAX || doorbell == NULL || out == NULL) return -EINVAL;
  fsgw_crew *crew = other->crew;
  fsgw_pool *pool = front_new(crew, (uint32_t)capacity, doorbell);
  if (pool == NULL) return -ENOMEM;
  pthread_mutex_lock(&crew->lock);
  int rc = crew->stopping ? -ESHUTDOWN : crew_grow_locked(crew, (uint32_t)capacity);
  if (rc == 0) {
    crew->fronts++;
    crew->fronts_active++;
  }
  pthread_mutex_unlock(&crew->lock);
  if (rc != 0) {
    pthread_mutex_destroy(&pool->done_lock);
    free(pool->jobs); free(pool->free_slots); free(pool->done); free(pool);
    return rc;
  }
  *out = (uint64_t)(uintptr_t)pool;
  return 0;
}

int32_t fsgw_pool_stop(fsgw_pool *pool) {
  if (pool->stopped) return 0;
  fsgw_crew *crew = pool->crew;
  pool->stopping = 1;
  /* Take this front's queued operations out: they will not run (answered -ECANCELED; done_lock is
   * only ever taken inside the crew's lock, never the other way round). */
  pthread_mutex_lock(&crew->lock);
  uint32_t kept = 0;
  for (uint32_t k = 0; k < crew->queue_len; k++) {
    job *j = crew->queue[(crew->queue_head + k) % crew->queue_cap];
    if (j->front == pool) {
      j->result = -ECANCELED;
      j->aux = 0;
      complete(pool, j->slot);
    } else {
      crew->queue[(crew->queue_head + kept++) % crew->queue_cap] = j;
    }
  }
  crew->queue_len = kept;
  atomic_store_explicit(&crew->queued_hint, kept, memory_order_relaxed);
  int last = --crew->fronts_active == 0;
  if (last) {
    crew->stopping = 1;
    for (int i = 0; i < crew->thread_count; i++) pthread_cond_signal(&crew->worker_cond[i]);
  }
  pthread_mutex_unlock(&crew->lock);
  if (last && !crew->stopped) {
    for (int i = 0; i < crew->thread_count; i++) pthread_join(crew->threads[i], NULL);
    crew->stopped = 1;
  }
  /* Other fronts go on: wait for this front's jobs that workers are running (shutdown only). */
  while (atomic_load(&pool->running) > 0) {
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  pool->stopped = 1;
  return 0;
}

void fsgw_pool_free(fsgw_pool *pool) {
  if (pool == NULL) return;
  fsgw_pool_stop(pool);
  fsgw_crew *crew = pool->crew;
  pthread_mutex_destroy(&pool->done_lock);
  free(pool->jobs);
  free(pool->free_slots);
  free(pool->done);
  free(pool);
  pthread_mutex_lock(&crew->lock);
  int none = --crew->fronts == 0;
  pthread_mutex_unlock(&crew->lock);
  if (none) crew_free(crew);
}

/* ---- submission (the loop's thread) ---- */

/* Takes a slot and fills it; the caller queues it. Returns the slot or -errno. */
static int32_t take_slot(fsgw_pool *pool, uint32_t op, uint32_t flags, int32_t fd, void *buf, double len, double offset,
                         const char *path, const char *path2, void *ext) {
  if (op >= FSGW_OP_COUNT || len < 0 || offset < 0) return -EINVAL;
  if (pool->free_count == 0) return -EAGAIN;
  uint32_t slot = pool->free_slots[--pool->free_count];
  job *j = &pool->jobs[slot];
  j->op = op;
  j->flags = flags;
  j->fd = fd;
  j->buf = buf;
  j->len = (size_t)len;
  j->offset = (int64_t)offset;
  j->path = path;
  j->path2 = path2;
  j->ext = ext;
  j->result = 0;
  j->aux = 0;
  return (int32_t)slot;
}

/* Workers chosen to wake by one submission, signalled after the lock is released. */
typedef struct wake_list {
  uint32_t count;
  uint32_t workers[THREADS_MAX];
} wake_list;

/* Queues a job, and takes the most recently idle worker off the idle stack for it: at once when
 * `eager` (a lone submission: a streamed body's next write waits for it), else only while the queue
 * holds more than jobs_per_wake jobs per awake worker (a batch: a worker between jobs takes the next
 * queued job without sleeping, so a busy pool is not signalled at all). */
static void enqueue_locked(fsgw_crew *crew, job *j, wake_list *wakes, int eager) {
  crew->queue[(crew->queue_head + crew->queue_len) % crew->queue_cap] = j;
  crew->queue_len++;
  atomic_store_explicit(&crew->queued_hint, crew->queue_len, memory_order_relaxed);
  if (crew->queue_len > crew->queued_high) crew->queued_high = crew->queue_len;
  uint32_t awake = (uint32_t)crew->thread_count - crew->idle;
  if (crew->idle > 0 && (eager || crew->queue_len > awake * crew->jobs_per_wake)) {
    uint32_t w = crew->idle_stack[--crew->idle];
    crew->worker_woken[w] = 1;
    wakes->workers[wakes->count++] = w;
  }
}

/* Wakes the chosen workers after the lock is released, so a woken worker does not block at once on
 * the lock the submitter still holds. No wake-up is lost: the flag was set under the lock, and a
 * worker checks it under the lock before it waits. */
static void wake_workers(fsgw_crew *crew, const wake_list *wakes) {
  for (uint32_t i = 0; i < wakes->count; i++) pthread_cond_signal(&crew->worker_cond[wakes->workers[i]]);
}

int32_t fsgw_submit(fsgw_pool *pool, uint32_t op, uint32_t flags, int32_t fd, void *buf, double len, double offset,
                    const char *path, const char *path2, void *ext) {
  if (pool->stopped || pool->stopping) return -ESHUTDOWN;
  int32_t slot = take_slot(pool, op, flags, fd, buf, len, offset, path, path2, ext);
  if (slot < 0) {
    if (slot == -EAGAIN) pool->refused++;
    return slot;
  }
  fsgw_crew *crew = pool->crew;
  wake_list wakes;
  wakes.count = 0;
  pthread_mutex_lock(&crew->lock);
  enqueue_locked(crew, &pool->jobs[slot], &wakes, 1);
  pool->submitted++;
  pthread_mutex_unlock(&crew->lock);
  wake_workers(crew, &wakes);
  return slot;
}

int32_t fsgw_submit_batch(fsgw_pool *pool, fsgw_sub *subs, int32_t n) {
  if (pool->stopped || pool->stopping) return -ESHUTDOWN;
  int32_t accepted = 0, first_error = 0;
  for (; accepted < n; accepted++) {
    fsgw_sub *s = &subs[accepted];
    int32_t slot = take_slot(pool, s->op, s->flags, s->fd, (void *)(uintptr_t)s->buf, s->len, s->offset,
                             (const char *)(uintptr_t)s->path, (const char *)(uintptr_t)s->path2, (void *)(uintptr_t)s->ext);
    if (slot < 0) {
      first_error = slot;
      if (slot == -EAGAIN) pool->refused++;
      break;
    }
    s->slot = slot;
  }
  if (accepted == 0) return first_error;
  fsgw_crew *crew = pool->crew;
  wake_list wakes;
  wakes.count = 0;
  pthread_mutex_lock(&crew->lock);
  for (int32_t i = 0; i < accepted; i++) enqueue_locked(crew, &pool->jobs[subs[i].slot], &wakes, 0);
  pool->submitted += (uint64_t)accepted;
  pthread_mutex_unlock(&crew->lock);
  wake_workers(crew, &wakes);
  return accepted;
}

/* ---- draining (the loop's thread) ---- */

void fsgw_doorbell_answer(fsgw_pool *pool) {
  atomic_fetch_sub(&pool->bells_outstanding, 1);
  atomic_store(&pool->bell_armed, 1);
}

void fsgw_loop_busy(fsgw_pool *pool) { atomic_store_explicit(&pool->loop_awake, 1, memory_order_relaxed); }

int32_t fsgw_poll(fsgw_pool *pool, fsgw_comp *out, int32_t max) {
  /* Cleared before the ring is read (both sequentially consistent): a worker that completes after
   * this reads 0 and rings; one that read 1 appended its record before, and the drain finds it. */
  atomic_store(&pool->loop_awake, 0);
  return fsgw_drain(pool, out, max);
}

void fsgw_pool_set_jobs_per_wake(fsgw_pool *pool, int32_t n) { pool->crew->jobs_per_wake = n < 1 ? 1 : (uint32_t)n; }

void fsgw_pool_set_spin_us(fsgw_pool *pool, int32_t us) {
  fsgw_crew *crew = pool->crew;
  pthread_mutex_lock(&crew->lock);
  crew->spin_ns = us < 0 ? 0 : (long)us * 1000L;
  pthread_mutex_unlock(&crew->lock);
}

int32_t fsgw_drain(fsgw_pool *pool, fsgw_comp *out, int32_t max) {
  int32_t n = 0;
  pthread_mutex_lock(&pool->done_lock);
  while (n < max && pool->done_len > 0) {
    uint32_t slot = pool->done[pool->done_head];
    /* A slot out of range, or a free list already full, means the ring or the free list is corrupt:
     * handing such a slot back would let two operations share one job's buffers. */
    FSGW_ASSERT(slot < pool->capacity);
    FSGW_ASSERT(pool->free_count < pool->capacity);
    pool->done_head = (pool->done_head + 1) % pool->capacity;
    pool->done_len--;
    job *j = &pool->jobs[slot];
    out[n].slot = (int32_t)slot;
    out[n].aux = j->aux;
    out[n].result = (double)j->result;
    pool->free_slots[pool->free_count++] = slot;
    n++;
  }
  pthread_mutex_unlock(&pool->done_lock);
  if (n > 0) {
    pool->drains++;
    pool->drained += (uint64_t)n;
  }
  return n;
}

int32_t fsgw_doorbells_outstanding(fsgw_pool *pool) { return atomic_load(&pool->bells_outstanding); }

int32_t fsgw_pool_stats(fsgw_pool *pool, double *out, int32_t n) {
  fsgw_crew *crew = pool->crew;
  double v[FSGW_STAT_COUNT];
  pthread_mutex_lock(&crew->lock);
  v[FSGW_STAT_SUBMITTED] = (double)pool->submitted;
  v[FSGW_STAT_QUEUED] = (double)crew->queue_len;
  v[FSGW_STAT_QUEUED_HIGH] = (double)crew->queued_high;
  v[FSGW_STAT_THREADS] = crew->stopped ? 0 : (double)crew->thread_count;
  pthread_mutex_unlock(&crew->lock);
  v[FSGW_STAT_COMPLETED] = (double)atomic_load(&pool->completed);
  v[FSGW_STAT_REFUSED] = (double)pool->refused;
  v[FSGW_STAT_IN_FLIGHT] = (double)(pool->capacity - pool->free_count);
  v[FSGW_STAT_DOORBELLS] = (double)atomic_load(&pool->doorbells);
  v[FSGW_STAT_DRAINS] = (double)pool->drains;
  v[FSGW_STAT_DRAINED] = (double)pool->drained;
  v[FSGW_STAT_PRIO_FAILED] = (double)crew->prio_failed;
  v[FSGW_STAT_AFFINITY_FAILED] = (double)crew->affinity_failed;
  v[FSGW_STAT_NICE_FAILED] = (double)atomic_load(&crew->nice_failed);
  int32_t count = n < FSGW_STAT_COUNT ? n : FSGW_STAT_COUNT;
  memcpy(out, v, (size_t)count * sizeof(double));
  return count;
}

void fsgw_debug_set_op_delay_us(fsgw_pool *pool, int32_t us) { atomic_store(&pool->crew->op_delay_us, us < 0 ? 0 : us); }

/* ---- inline operations (caller's thread) ---- */

static atomic_int inline_refused;

void fsgw_debug_set_inline_refused(int32_t on) { atomic_store(&inline_refused, on != 0); }

/* openat2 with RESOLVE_CACHED: a descriptor, or -EAGAIN when resolving path would need I/O. glibc
 * has no wrapper, hence the raw system call. Beneath a confined directory, without links (-ELOOP:
 * an answer, not a reason to ask the pool, which refuses the same). */
static int open_cached(const char *path, int flags) {
  if (atomic_load_explicit(&inline_refused, memory_order_relaxed)) return -EAGAIN;
  return open_path(path, flags, RESOLVE_CACHED);
}

/* Recorded digests the inline calls have read, per thread (the event loop's), by inode: a file's
 * digest is read from its attribute once, not on every exist and download. An entry holds only
 * while the inode's ctime and size are unchanged: recording a digest, writing or truncating the
 * file all change its ctime, and an upload replaces the key's inode. Direct-mapped, of
 * fsgw_digest_cache_entries entries (96 bytes each), allocated on a thread's first use. */
static atomic_int digest_cache_entries = 65536;
typedef struct digest_entry {
  uint64_t dev, ino;
  int64_t ctime_sec, ctime_nsec, size;
  uint8_t out[FSGW_DIGEST_OUT_BYTES]; /* as an operation reports it: flag, then the digest */
} digest_entry;
static __thread digest_entry *digest_cache;
static __thread uint32_t digest_cache_size;

void fsgw_digest_cache_entries(int32_t n) { atomic_store(&digest_cache_entries, n < 0 ? 0 : n); }

static digest_entry *digest_slot(const struct stat *st) {
  if (digest_cache == NULL) {
    uint32_t n = (uint32_t)atomic_load(&digest_cache_entries);
    if (n == 0) return NULL;
    digest_cache = calloc(n, sizeof(digest_entry));
    if (digest_cache == NULL) return NULL;
    digest_cache_size = n;
  }
  uint64_t h = ((uint64_t)st->st_ino * 0x9E3779B97F4A7C15ull) ^ (uint64_t)st->st_dev;
  return &digest_cache[(h >> 32) % digest_cache_size];
}

/* 1 and the digest in out when the cache knows this inode as it is now; else 0. */
static int digest_from_cache(const struct stat *st, uint8_t *out) {
  digest_entry *e = digest_slot(st);
  if (e == NULL || e->ino != (uint64_t)st->st_ino || e->dev != (uint64_t)st->st_dev || e->ctime_sec != st->st_ctim.tv_sec ||
      e->ctime_nsec != st->st_ctim.tv_nsec || e->size != st->st_size || e->ino == 0)
    return 0;
  memcpy(out, e->out, FSGW_DIGEST_OUT_BYTES);
  return 1;
}

static void digest_to_cache(const struct stat *st, const uint8_t *out) {
  digest_entry *e = digest_slot(st);
  if (e == NULL) return;
  e->dev = (uint64_t)st->st_dev;
  e->ino = (uint64_t)st->st_ino;
  e->ctime_sec = st->st_ctim.tv_sec;
  e->ctime_nsec = st->st_ctim.tv_nsec;
  e->size = st->st_size;
  memcpy(e->out, out, FSGW_DIGEST_OUT_BYTES);
}

/* getxattrat(2) (Linux 6.13): an attribute by a path relative to a directory descriptor, so the
 * digest of a file under the inline base costs a two-component lookup, not an open. Not in every
 * libc's headers yet; its number is the same on every architecture. */
#ifndef __NR_getxattrat
#define __NR_getxattrat 464
#endif
struct fsgw_xattr_args {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};
static atomic_int getxattrat_missing;

/* The recorded digest of the regular file open at opath_fd (an O_PATH descriptor, through which
 * attributes cannot be read), found at path a moment ago: 0 with out filled, or -errno. Beneath a
 * confined directory by getxattrat from that directory's descriptor with AT_SYMLINK_NOFOLLOW (one
 * system call, no open); elsewhere, or on a kernel without getxattrat (before 6.13), through the
 * descriptor's /proc/self/fd link, which names exactly that file. (The by-path read walks the
 * shard directory again: a link swapped into its place between the two calls could make it read
 * another file's 32-byte attribute. Nothing else of any file is read by path.) */
static int digest_by_path(const char *path, int opath_fd, uint8_t *out) {
  const char *rel;
  const confined_dir *c = confined_of(path, &rel);
  if (c != NULL && !atomic_load_explicit(&getxattrat_missing, memory_order_relaxed)) {
    struct fsgw_xattr_args args = {(uint64_t)(uintptr_t)(out + 1), 48, 0};
    long n = syscall(__NR_getxattrat, c->fd, rel, AT_SYMLINK_NOFOLLOW, FSGW_DIGEST_XATTR, &args, sizeof args);
    if (n >= 0 || errno != ENOSYS) {
      out[0] = digest_flags(n);
      return 0;
    }
    atomic_store(&getxattrat_missing, 1);
  }
  char link[32];
  snprintf(link, sizeof link, "/proc/self/fd/%d", opath_fd);
  ssize_t n = getxattr(link, FSGW_DIGEST_XATTR, out + 1, 48);
  out[0] = digest_flags(n);
  return n >= 0 || errno == ENODATA || errno == ENOTSUP ? 0 : (int)neg_errno();
}

double fsgw_stat_cached(const char *path, int32_t *mode_out, uint8_t *digest_out) {
  /* An O_PATH descriptor touches no file data, and fstat on it reads the in-memory inode. A digest
   * the cache does not know is read by digest_by_path. */
  int fd = open_cached(path, O_PATH);
  if (fd < 0) return (double)fd;
  struct stat st;
  int64_t rc = stat_result(fstat(fd, &st), &st, mode_out);
  if (rc >= 0 && digest_out != NULL) {
    if (!S_ISREG(st.st_mode)) digest_out[0] = 0;
    else if (!digest_from_cache(&st, digest_out)) {
      if (digest_by_path(path, fd, digest_out) == 0) digest_to_cache(&st, digest_out);
      else rc = -EAGAIN; /* unreadable here: the pool asks again */
    }
    mtime_fact(&st, digest_out);
  }
  close(fd);
  return (double)rc;
}

double fsgw_read_cached(const char *path, void *buf, double cap, uint8_t *digest_out) {
  /* O_NOATIME: reading must not dirty the inode (an atime update may wait on the file system);
   * the kernel allows it only to the file's owner, so others fall back to the pool. */
  int fd = open_cached(path, O_RDONLY | O_NOATIME);
  if (fd == -EPERM) return -EAGAIN;
  if (fd < 0) return (double)fd;
  struct stat st;
  int32_t mode = 0;
  int64_t rc = stat_result(fstat(fd, &st), &st, &mode);
  if (rc >= 0 && !S_ISREG(st.st_mode)) rc = -EISDIR;
  if (rc >= 0 && digest_out != NULL && !digest_from_cache(&st, digest_out)) {
    digest_of_fd(fd, digest_out);
    digest_to_cache(&st, digest_out);
  }
  if (rc >= 0 && digest_out != NULL) mtime_fact(&st, digest_out);
  if (rc >= 0 && (double)st.st_size <= cap) {
    size_t size = (size_t)st.st_size, done = 0;
    while (done < size) {
      struct iovec iov = {(char *)buf + done, size - done};
      ssize_t n = preadv2(fd, &iov, 1, (off_t)done, RWF_NOWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        rc = errno == EOPNOTSUPP ? -EAGAIN : -errno; /* a file system without RWF_NOWAIT: the pool reads it */
        break;
      }
      if (n == 0) {
        rc = -EAGAIN; /* shrank under us: let the pool's read decide what to answer */
        break;
      }
      done += (size_t)n;
    }
  }
  close(fd);
  return (double)rc;
}

double fsgw_pread_now(int32_t fd, void *buf, double len, double offset) {
  if (atomic_load_explicit(&inline_refused, memory_order_relaxed)) return -EAGAIN;
  struct iovec iov = {buf, (size_t)len};
  ssize_t n;
  do n = preadv2(fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS ? -EAGAIN : (double)neg_errno();
  /* Short of the end of the file: part of the range is not cached (the pool reads it whole). */
  if ((size_t)n < (size_t)len) {
    struct stat st;
    if (fstat(fd, &st) != 0 || (off_t)offset + n < st.st_size) return -EAGAIN;
  }
  return (double)n;
}

int32_t fsgw_fs_is_local(const char *path) {
  struct statfs fs;
  if (statfs(path, &fs) != 0) return (int32_t)neg_errno();
  switch ((unsigned long)fs.f_type) {
    case EXT4_SUPER_MAGIC: /* also ext2 and ext3 */
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case TMPFS_MAGIC:
    case F2FS_SUPER_MAGIC:
    case OVERLAYFS_SUPER_MAGIC: /* containers: layers of local file systems */
      return 1;
    default:
      return 0;
  }
}

double fsgw_raise_nofile(double want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return (double)neg_errno();
  rlim_t target = want < 0 ? 0 : (rlim_t)want;
  if (rl.rlim_max != RLIM_INFINITY && target > rl.rlim_max) target = rl.rlim_max;
  if (target > rl.rlim_cur) {
    rl.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return (double)neg_errno();
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return (double)neg_errno();
  return (double)rl.rlim_cur;
}

int32_t fsgw_lock_file(const char *path) {
  int fd;
  do fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return (int32_t)neg_errno();
  int rc;
  do rc = flock(fd, LOCK_EX | LOCK_NB);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int32_t err = (int32_t)neg_errno();
    close(fd);
    return err;
  }
  return fd;
}

/* ---- zero-copy sends ---- */

int32_t fsgw_open_cached(const char *path, double *size_out, uint8_t *digest_out) {
  int fd = open_cached(path, O_RDONLY | O_NOATIME);
  if (fd == -EPERM) return -EAGAIN; /* O_NOATIME refused (not the owner): the pool opens it */
  if (fd < 0) return fd;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int32_t err = (int32_t)neg_errno();
    close(fd);
    return err;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return -EISDIR;
  }
  *size_out = (double)st.st_size;
  if (digest_out != NULL && !digest_from_cache(&st, digest_out)) {
    digest_of_fd(fd, digest_out);
    digest_to_cache(&st, digest_out);
  }
  if (digest_out != NULL) mtime_fact(&st, digest_out);
  return fd;
}

/* cachestat(2) (Linux 6.5): not in every libc's headers yet. Its number is the same on every
 * architecture (the unified syscall table). */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct fsgw_cachestat_range {
  uint64_t off;
  uint64_t len;
};
struct fsgw_cachestat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};
static atomic_int cachestat_missing;

/* 1 when every page of file[offset, offset + len) is in the page cache, 0 when not or unknown. */
static int range_cached(int file, uint64_t offset, uint64_t len) {
  if (len == 0) return 1;
  if (atomic_load_explicit(&cachestat_missing, memory_order_relaxed)) return 0;
  struct fsgw_cachestat_range range = {offset, len};
  struct fsgw_cachestat cs;
  if (syscall(__NR_cachestat, file, &range, &cs, 0) != 0) {
    if (errno == ENOSYS) atomic_store(&cachestat_missing, 1);
    return 0;
  }
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  uint64_t pages = (offset + len + page - 1) / page - offset / page;
  return cs.nr_cache >= pages;
}

/* Sends buf[0, len) to a non-blocking socket, never waiting: the bytes sent (fewer when the socket
 * is full), or -errno when none went. MSG_MORE when more follows, so the kernel packs the frame
 * with what comes next instead of sending it in a packet of its own. */
static int64_t send_bytes_now(int sock, const uint8_t *buf, size_t len, int more) {
  size_t done = 0;
  int flags = MSG_DONTWAIT | MSG_NOSIGNAL | (more ? MSG_MORE : 0);
  while (done < len) {
    ssize_t n = send(sock, buf + done, len - done, flags);
    if (n > 0) {
      done += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return done > 0 ? (int64_t)done : neg_errno();
  }
  return (int64_t)done;
}

/* A body this small goes file -> pipe -> socket with SPLICE_F_MORE instead of by sendfile, so the
 * END frame after it leaves in the same packet (sendfile pushes its last bytes out alone). The
 * default pipe holds 16 pages: a body of at most 60 KiB fits whatever its first page's offset. */
#define FRAMED_SPLICE_MAX (60u << 10)

/* Sends file[offset, offset + len), len <= FRAMED_SPLICE_MAX, to a non-blocking socket through
 * this thread's pipe, never waiting, with MSG_MORE (what follows joins it): the bytes the socket
 * took, or -errno when none went. Bytes left in the pipe (a full socket) are dropped with it. */
static int64_t splice_file_now(int sock, int file, int64_t offset, size_t len) {
  if (splice_pipe[0] < 0 && pipe2(splice_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return neg_errno();
  loff_t at = offset;
  ssize_t in;
  do in = splice(file, &at, splice_pipe[1], NULL, len, SPLICE_F_NONBLOCK);
  while (in < 0 && errno == EINTR);
  if (in == 0) return -ENODATA; /* the file ended early (it shrank) */
  if (in < 0) return neg_errno();
  size_t out = 0;
  int err = 0;
  while (out < (size_t)in) {
    ssize_t n = splice(splice_pipe[0], NULL, sock, NULL, (size_t)in - out, SPLICE_F_NONBLOCK | SPLICE_F_MORE);
    if (n > 0) {
      out += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) err = errno;
    break;
  }
  if (out < (size_t)in) drop_splice_pipe(); /* it holds bytes the socket did not take */
  if (out == 0 && err != 0) return -err;
  return (int64_t)out;
}

/* A body this small, framed, is copied instead: read from the page cache (RWF_NOWAIT: never from
 * the disk) into this thread's buffer and sent with its frames in one sendmsg. Two calls instead
 * of cachestat, a send, two splices and a send (BENCHMARKS.md, "Volumes"). */
#define FRAMED_COPY_MAX (16u << 10)
static __thread uint8_t framed_copy[FRAMED_COPY_MAX];
static atomic_int nowait_missing;

/* fsgw_sendfile_now of a small framed body by copy: the bytes sent (0: the socket is full), -EAGAIN
 * when a page is not cached, the file is shorter than the range, or the kernel has no RWF_NOWAIT
 * (then never again): the splice path below decides those. */
static double send_copy_now(int sock, int file, int64_t offset, size_t len, const void *head, size_t head_len, const void *tail, size_t tail_len) {
  if (atomic_load_explicit(&nowait_missing, memory_order_relaxed)) return -EAGAIN;
  struct iovec in = {framed_copy, len};
  ssize_t r;
  do r = preadv2(file, &in, 1, offset, RWF_NOWAIT);
  while (r < 0 && errno == EINTR);
  if (r < 0 && (errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS)) atomic_store(&nowait_missing, 1);
  if (r < 0) return errno == EAGAIN ? -EAGAIN : (errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS) ? -EAGAIN : (double)neg_errno();
  /* Short: only part of the range is cached (or the file shrank): the pool's path decides. */
  if ((size_t)r < len) return -EAGAIN;
  struct iovec out[3] = {{(void *)head, head_len}, {framed_copy, len}, {(void *)tail, tail_len}};
  struct msghdr msg = {.msg_iov = out, .msg_iovlen = 3};
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : (double)neg_errno();
  return (double)n;
}

double fsgw_sendfile_now(int32_t sock, int32_t file, double offset, double len, const void *head, int32_t head_len, const void *tail, int32_t tail_len) {
  if (atomic_load_explicit(&inline_refused, memory_order_relaxed)) return -EAGAIN;
  if (head_len > 0 && tail_len > 0 && len > 0 && len <= FRAMED_COPY_MAX) {
    double n = send_copy_now(sock, file, (int64_t)offset, (size_t)len, head, (size_t)head_len, tail, (size_t)tail_len);
    if (n != -EAGAIN) return n;
  }
  if (!range_cached(file, (uint64_t)offset, (uint64_t)len)) return -EAGAIN;
  /* head, body, tail in order; each stops the rest when the socket takes less than all of it. An
   * error after some bytes went reports the bytes: the next call meets the error again. */
  int64_t sent = 0, n;
  if (head_len > 0) {
    n = send_bytes_now(sock, head, (size_t)head_len, len > 0 || tail_len > 0);
    if (n < 0) return (double)n;
    sent = n;
    if (n < head_len) return (double)sent;
  }
  if (len > 0) {
    n = tail_len > 0 && len <= FRAMED_SPLICE_MAX ? splice_file_now(sock, file, (int64_t)offset, (size_t)len)
                                                 : send_file_range(sock, file, (int64_t)offset, (size_t)len, 0);
    if (n < 0) return (double)(sent > 0 ? sent : n);
    sent += n;
    if ((double)n < len) return (double)sent;
  }
  if (tail_len > 0) {
    n = send_bytes_now(sock, tail, (size_t)tail_len, 0);
    if (n < 0) return (double)(sent > 0 ? sent : n);
    sent += n;
  }
  return (double)sent;
}

int32_t fsgw_socket_check(int32_t fd, int32_t local_port, int32_t peer_port) {
  struct sockaddr_storage local, peer;
  socklen_t local_len = sizeof local, peer_len = sizeof peer;
  if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0) return (int32_t)neg_errno();
  if (getpeername(fd, (struct sockaddr *)&peer, &peer_len) != 0) return (int32_t)neg_errno();
  int type = 0;
  socklen_t type_len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) != 0) return (int32_t)neg_errno();
  if (type != SOCK_STREAM) return -ESTALE;
  int lp, pp;
  if (local.ss_family == AF_INET) {
    lp = ntohs(((struct sockaddr_in *)&local)->sin_port);
    pp = ntohs(((struct sockaddr_in *)&peer)->sin_port);
  } else if (local.ss_family == AF_INET6) {
    lp = ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
    pp = ntohs(((struct sockaddr_in6 *)&peer)->sin6_port);
  } else {
    return -ESTALE;
  }
  return lp == local_port && pp == peer_port ? 0 : -ESTALE;
}

int32_t fsgw_dup(int32_t fd) {
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return d < 0 ? (int32_t)neg_errno() : d;
}

int32_t fsgw_close(int32_t fd) { return close(fd) == 0 ? 0 : (int32_t)neg_errno(); }

int32_t fsgw_splice_probe(const char *dir) {
  int file = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (file < 0) return (int32_t)neg_errno();
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    int32_t err = (int32_t)neg_errno();
    close(file);
    return err;
  }
  int32_t rc = 0;
  if (write(p[1], "x", 1) != 1) rc = (int32_t)neg_errno();
  loff_t at = 0;
  if (rc == 0 && splice(p[0], NULL, file, &at, 1, 0) != 1) rc = errno != 0 ? (int32_t)neg_errno() : -EIO;
  close(p[0]);
  close(p[1]);
  close(file);
  return rc;
}
