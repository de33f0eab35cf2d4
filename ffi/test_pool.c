/* C-level tests of fsgw_pool, run by test/ffi/pool-c.test.ts (built with -fsanitize=address,undefined
 * when the compiler has them). Each check prints "ok - name" or "not ok - name: why"; exit 0 only
 * when every check passed.
 *
 * The doorbell here is a condition variable: the test thread waits on it as the JS thread would
 * wait for its callback, so coalescing and "drain every record" are exercised as in production. */
#define _GNU_SOURCE
#include "fsgw_pool.h"
#include "fsgw_md5.h"
#include "fsgw_sha256.h"
#include <sys/xattr.h>

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond, name, ...)                                  \
  do {                                                          \
    checks++;                                                   \
    if (cond) {                                                 \
      printf("ok - %s\n", name);                                \
    } else {                                                    \
      failures++;                                               \
      printf("not ok - %s: ", name);                            \
      printf(__VA_ARGS__);                                      \
      printf("\n");                                             \
    }                                                           \
  } while (0)

/* ---- a doorbell the test thread can wait on ---- */
static pthread_mutex_t bell_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bell_cond = PTHREAD_COND_INITIALIZER;
static int bell_rung = 0;
static atomic_int bell_calls = 0;

static void doorbell(void) {
  atomic_fetch_add(&bell_calls, 1);
  pthread_mutex_lock(&bell_lock);
  bell_rung = 1;
  pthread_cond_signal(&bell_cond);
  pthread_mutex_unlock(&bell_lock);
}

/* Waits for a ring (up to 5 s), answers it, and drains everything into out. Returns the count. */
static int wait_and_drain(fsgw_pool *pool, fsgw_comp *out, int max) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 5;
  pthread_mutex_lock(&bell_lock);
  while (!bell_rung) {
    if (pthread_cond_timedwait(&bell_cond, &bell_lock, &deadline) == ETIMEDOUT) break;
  }
  int rung = bell_rung;
  bell_rung = 0;
  pthread_mutex_unlock(&bell_lock);
  if (!rung) return -1;
  fsgw_doorbell_answer(pool);
  int total = 0, n;
  while (total < max && (n = fsgw_drain(pool, out + total, max - total)) > 0) total += n;
  return total;
}

static fsgw_pool *make_pool(int threads, int capacity) {
  uint64_t handle = 0;
  int rc = fsgw_pool_create(threads, capacity, 0, 0, 0, doorbell, &handle);
  if (rc != 0) {
    printf("not ok - create pool: %d\n", rc);
    exit(1);
  }
  return (fsgw_pool *)(uintptr_t)handle;
}

/* Runs one operation to completion and returns its record. */
/* Submits one operation with its extra memory (fsgw_sub.ext) and waits for its completion. */
static fsgw_comp run1x(fsgw_pool *pool, uint32_t op, uint32_t flags, int fd, void *buf, double len, double off,
                       const char *path, const char *path2, void *ext) {
  fsgw_comp c = {.slot = -1, .aux = 0, .result = -99999};
  int slot = fsgw_submit(pool, op, flags, fd, buf, len, off, path, path2, ext);
  if (slot < 0) {
    c.result = slot;
    return c;
  }
  fsgw_comp out[4];
  int got = 0;
  while (got == 0) {
    int n = wait_and_drain(pool, out, 4);
    if (n < 0) return c;
    got = n;
  }
  return out[0];
}

static fsgw_comp run1(fsgw_pool *pool, uint32_t op, uint32_t flags, int fd, void *buf, double len, double off,
                      const char *path, const char *path2) {
  return run1x(pool, op, flags, fd, buf, len, off, path, path2, NULL);
}

static char dir[256];

static void path_in(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static void test_abi(void) {
  CHECK(fsgw_abi_version() == FSGW_ABI_VERSION, "abi version", "%d", fsgw_abi_version());
  int32_t layout[FSGW_LAYOUT_COUNT];
  CHECK(fsgw_struct_layout(layout, FSGW_LAYOUT_COUNT) == FSGW_LAYOUT_COUNT && layout[FSGW_LAYOUT_SUB_SIZE] == (int32_t)sizeof(fsgw_sub) &&
            layout[FSGW_LAYOUT_SUB_PATH2] == (int32_t)offsetof(fsgw_sub, path2) && layout[FSGW_LAYOUT_COMP_RESULT] == (int32_t)offsetof(fsgw_comp, result),
        "struct layout reports sizes and offsets", "%d", layout[FSGW_LAYOUT_SUB_SIZE]);
  CHECK(sizeof(fsgw_sub) == 64 && sizeof(fsgw_comp) == 16, "struct sizes", "sub %zu comp %zu", sizeof(fsgw_sub), sizeof(fsgw_comp));
  uint64_t h;
  CHECK(fsgw_pool_create(0, 8, 0, 0, 0, doorbell, &h) == -EINVAL, "create rejects 0 threads", "%s", "failed");
  CHECK(fsgw_pool_create(1, 0, 0, 0, 0, doorbell, &h) == -EINVAL, "create rejects 0 capacity", "%s", "failed");
  CHECK(fsgw_pool_create(1, 8, 0, 0, 0, NULL, &h) == -EINVAL, "create rejects a null doorbell", "%s", "failed");
  CHECK(fsgw_pool_create(1, 8, 0, 0, 20, doorbell, &h) == -EINVAL, "create rejects nice 20", "%s", "failed");
}

static void test_every_op(void) {
  fsgw_pool *pool = make_pool(2, 16);
  char tmp[512], fin[512], missing[512], sub[512];
  path_in(tmp, sizeof tmp, "t.tmp");
  path_in(fin, sizeof fin, "t.final");
  path_in(missing, sizeof missing, "no/such/dir/x");
  path_in(sub, sizeof sub, "sub");

  fsgw_comp c = run1(pool, FSGW_OP_OPEN, FSGW_OPEN_CREATE, -1, NULL, 0, 0, tmp, NULL);
  CHECK(c.result >= 0, "open create", "%g", c.result);
  int fd = (int)c.result;
  c = run1(pool, FSGW_OP_OPEN, FSGW_OPEN_CREATE, -1, NULL, 0, 0, tmp, NULL);
  CHECK(c.result == -EEXIST, "open create of an existing file: -EEXIST", "%g", c.result);
  c = run1(pool, FSGW_OP_OPEN, FSGW_OPEN_READ, -1, NULL, 0, 0, missing, NULL);
  CHECK(c.result == -ENOENT, "open read of a missing file: -ENOENT", "%g", c.result);

  static char data[300000];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (char)(i * 7);
  c = run1(pool, FSGW_OP_PWRITE, 0, fd, data, sizeof data, 0, NULL, NULL);
  CHECK(c.result == sizeof data, "pwrite all", "%g", c.result);
  c = run1(pool, FSGW_OP_PWRITE, 0, 987654, data, 10, 0, NULL, NULL);
  CHECK(c.result == -EBADF, "pwrite bad fd: -EBADF", "%g", c.result);
  double fsyncs_before = fsgw_fsync_count();
  c = run1(pool, FSGW_OP_FSYNC, 0, fd, NULL, 0, 0, NULL, NULL);
  CHECK(c.result == 0 && fsgw_fsync_count() == fsyncs_before + 1, "fsync, counted once", "%g", c.result);
  c = run1(pool, FSGW_OP_FSYNC, 0, 987654, NULL, 0, 0, NULL, NULL);
  CHECK(c.result == -EBADF, "fsync bad fd: -EBADF", "%g", c.result);
  c = run1(pool, FSGW_OP_FSTAT, 0, fd, NULL, 0, 0, NULL, NULL);
  CHECK(c.result == sizeof data && S_ISREG((mode_t)c.aux), "fstat size and mode", "%g %o", c.result, c.aux);
  c = run1(pool, FSGW_OP_FSTAT, 0, 987654, NULL, 0, 0, NULL, NULL);
  CHECK(c.result == -EBADF, "fstat bad fd: -EBADF", "%g", c.result);
  c = run1(pool, FSGW_OP_CLOSE, 0, fd, NULL, 0, 0, NULL, NULL);
  CHECK(c.result == 0, "close", "%g", c.result);
  c = run1(pool, FSGW_OP_CLOSE, 0, fd, NULL, 0, 0, NULL, NULL);
  CHECK(c.result == -EBADF, "close twice: -EBADF", "%g", c.result);

  c = run1(pool, FSGW_OP_RENAME, 0, -1, NULL, 0, 0, tmp, fin);
  CHECK(c.result == 0, "rename", "%g", c.result);
  c = run1(pool, FSGW_OP_RENAME, 0, -1, NULL, 0, 0, tmp, fin);
  CHECK(c.result == -ENOENT, "rename of a missing file: -ENOENT", "%g", c.result);
  c = run1(pool, FSGW_OP_STAT, 0, -1, NULL, 0, 0, fin, NULL);
  CHECK(c.result == sizeof data, "stat size", "%g", c.result);
  c = run1(pool, FSGW_OP_STAT, 0, -1, NULL, 0, 0, missing, NULL);
  CHECK(c.result == -ENOENT, "stat missing: -ENOENT", "%g", c.result);

  c = run1(pool, FSGW_OP_OPEN, FSGW_OPEN_READ, -1, NULL, 0, 0, fin, NULL);
  fd = (int)c.result;
  static char back[300000];
  c = run1(pool, FSGW_OP_PREAD, 0, fd, back, sizeof back, 0, NULL, NULL);
  CHECK(c.result == sizeof back && memcmp(back, data, sizeof back) == 0, "pread returns the bytes written", "%g", c.result);
  c = run1(pool, FSGW_OP_PREAD, 0, fd, back, 100, sizeof data, NULL, NULL);
  CHECK(c.result == 0, "pread at end of file: 0", "%g", c.result);
  c = run1(pool, FSGW_OP_PREAD, 0, 987654, back, 100, 0, NULL, NULL);
  CHECK(c.result == -EBADF, "pread bad fd: -EBADF", "%g", c.result);
  run1(pool, FSGW_OP_CLOSE, 0, fd, NULL, 0, 0, NULL, NULL);

  mkdir(sub, 0755);
  c = run1(pool, FSGW_OP_STAT, 0, -1, NULL, 0, 0, sub, NULL);
  CHECK(c.result >= 0 && S_ISDIR((mode_t)c.aux), "stat of a directory says so", "%o", c.aux);

  c = run1(pool, FSGW_OP_UNLINK, 0, -1, NULL, 0, 0, fin, NULL);
  CHECK(c.result == 0, "unlink", "%g", c.result);
  c = run1(pool, FSGW_OP_UNLINK, 0, -1, NULL, 0, 0, fin, NULL);
  CHECK(c.result == -ENOENT, "unlink missing: -ENOENT", "%g", c.result);

  /* commit: the compound upload */
  fsyncs_before = fsgw_fsync_count();
  c = run1(pool, FSGW_OP_COMMIT, FSGW_COMMIT_FSYNC, -1, data, 5000, 0, tmp, fin);
  CHECK(c.result == 5000, "commit writes and renames", "%g", c.result);
  CHECK(fsgw_fsync_count() == fsyncs_before + 2, "a durable commit fsyncs the file and its directory", "%g", fsgw_fsync_count() - fsyncs_before);
  struct stat st;
  CHECK(stat(fin, &st) == 0 && st.st_size == 5000 && access(tmp, F_OK) != 0, "commit leaves the final file only", "%s", "failed");
  fsyncs_before = fsgw_fsync_count();
  c = run1(pool, FSGW_OP_COMMIT, 0, -1, data, 10, 0, tmp, missing);
  CHECK(fsgw_fsync_count() == fsyncs_before, "a commit without FSGW_COMMIT_FSYNC fsyncs nothing", "%g", fsgw_fsync_count() - fsyncs_before);
  CHECK(c.result == -ENOENT && access(tmp, F_OK) != 0, "commit whose rename fails removes its temporary file", "%g", c.result);
  c = run1(pool, FSGW_OP_COMMIT, 0, -1, data, 10, 0, missing, fin);
  CHECK(c.result == -ENOENT, "commit whose create fails: -ENOENT", "%g", c.result);

  /* read_file: the whole small download */
  static char whole[6000];
  c = run1(pool, FSGW_OP_READ_FILE, 0, -1, whole, sizeof whole, 0, fin, NULL);
  CHECK(c.result == 5000 && memcmp(whole, data, 5000) == 0 && S_ISREG((mode_t)c.aux), "read_file reads a file that fits", "%g", c.result);
  c = run1(pool, FSGW_OP_READ_FILE, 0, -1, whole, 100, 0, fin, NULL);
  CHECK(c.result == 5000, "read_file of a file too big for the buffer reports its size", "%g", c.result);
  c = run1(pool, FSGW_OP_READ_FILE, 0, -1, whole, sizeof whole, 0, missing, NULL);
  CHECK(c.result == -ENOENT, "read_file of a missing file: -ENOENT", "%g", c.result);
  c = run1(pool, FSGW_OP_READ_FILE, 0, -1, whole, sizeof whole, 0, sub, NULL);
  CHECK(c.result == -EISDIR, "read_file of a directory: -EISDIR", "%g", c.result);

  CHECK(fsgw_submit(pool, 99, 0, -1, NULL, 0, 0, NULL, NULL, NULL) == -EINVAL, "unknown op: -EINVAL", "%s", "failed");
  CHECK(fsgw_submit(pool, FSGW_OP_PREAD, 0, 0, back, -1, 0, NULL, NULL, NULL) == -EINVAL, "negative length: -EINVAL", "%s", "failed");
  fsgw_pool_free(pool);
}

static void test_full_queue_and_cancel(void) {
  fsgw_pool *pool = make_pool(1, 4);
  fsgw_debug_set_op_delay_us(pool, 200000); /* the one worker holds each op 200 ms */
  int slots[4];
  for (int i = 0; i < 4; i++) slots[i] = fsgw_submit(pool, FSGW_OP_NOP, 0, -1, NULL, i + 1, 0, NULL, NULL, NULL);
  CHECK(slots[0] >= 0 && slots[1] >= 0 && slots[2] >= 0 && slots[3] >= 0, "capacity slots accepted", "%s", "failed");
  CHECK(fsgw_submit(pool, FSGW_OP_NOP, 0, -1, NULL, 1, 0, NULL, NULL, NULL) == -EAGAIN, "a full pool answers -EAGAIN", "%s", "failed");
  fsgw_sub batch[2];
  memset(batch, 0, sizeof batch);
  CHECK(fsgw_submit_batch(pool, batch, 2) == -EAGAIN, "a full pool refuses a batch with -EAGAIN", "%s", "failed");
  double stats[FSGW_STAT_COUNT];
  fsgw_pool_stats(pool, stats, FSGW_STAT_COUNT);
  CHECK(stats[FSGW_STAT_REFUSED] == 2 && stats[FSGW_STAT_IN_FLIGHT] == 4, "refusals and in-flight counted", "%g %g",
        stats[FSGW_STAT_REFUSED], stats[FSGW_STAT_IN_FLIGHT]);
  usleep(50000); /* the worker has taken the first op; three are queued */
  fsgw_pool_stop(pool);
  fsgw_pool_stop(pool); /* idempotent */
  fsgw_comp out[8];
  int n = fsgw_drain(pool, out, 8);
  int cancelled = 0, done = 0;
  for (int i = 0; i < n; i++) {
    if (out[i].result == -ECANCELED) cancelled++;
    else if (out[i].result > 0) done++;
  }
  CHECK(n == 4 && cancelled == 3 && done == 1, "stop completes the running op and cancels the queued ones", "n %d cancelled %d done %d", n, cancelled, done);
  CHECK(fsgw_submit(pool, FSGW_OP_NOP, 0, -1, NULL, 1, 0, NULL, NULL, NULL) == -ESHUTDOWN, "submit after stop: -ESHUTDOWN", "%s", "failed");
  fsgw_pool_stats(pool, stats, FSGW_STAT_COUNT);
  CHECK(stats[FSGW_STAT_THREADS] == 0 && stats[FSGW_STAT_IN_FLIGHT] == 0, "no threads and no slots held after stop", "%s", "failed");
  fsgw_pool_free(pool);
}

/* Many operations through a small pool, resubmitting as slots free up: each completes once. */
static void test_many_through_small(void) {
  enum { N = 20000, CAP = 64 };
  fsgw_pool *pool = make_pool(4, CAP);
  static unsigned char seen[N];
  memset(seen, 0, sizeof seen);
  int next = 0, completed = 0, twice = 0, wrong = 0;
  int slot_owner[CAP];
  fsgw_comp out[CAP];
  fsgw_sub batch[16];
  atomic_store(&bell_calls, 0);
  while (completed < N) {
    /* alternate the two submission paths */
    while (next < N) {
      if (next % 2 == 0) {
        int slot = fsgw_submit(pool, FSGW_OP_NOP, 0, -1, NULL, next, 0, NULL, NULL, NULL);
        if (slot < 0) break;
        slot_owner[slot] = next++;
      } else {
        int k = 0;
        for (; k < 16 && next + k < N; k++) {
          memset(&batch[k], 0, sizeof batch[k]);
          batch[k].op = FSGW_OP_NOP;
          batch[k].len = next + k;
        }
        int acc = fsgw_submit_batch(pool, batch, k);
        if (acc <= 0) break;
        for (int i = 0; i < acc; i++) slot_owner[batch[i].slot] = next + i;
        next += acc;
        if (acc < k) break;
      }
    }
    int n = wait_and_drain(pool, out, CAP);
    if (n < 0) break;
    for (int i = 0; i < n; i++) {
      int id = slot_owner[out[i].slot];
      if ((int)out[i].result != id) wrong++;
      if (seen[id]++) twice++;
      completed++;
    }
  }
  double stats[FSGW_STAT_COUNT];
  fsgw_pool_stats(pool, stats, FSGW_STAT_COUNT);
  CHECK(completed == N && twice == 0 && wrong == 0, "20000 ops through 64 slots complete exactly once", "completed %d twice %d wrong %d", completed, twice, wrong);
  CHECK(stats[FSGW_STAT_QUEUED_HIGH] <= CAP, "queue never deeper than its capacity", "%g", stats[FSGW_STAT_QUEUED_HIGH]);
  CHECK(atomic_load(&bell_calls) < N, "doorbells coalesce (fewer rings than completions)", "%d rings", atomic_load(&bell_calls));
  /* A ring for a record the last drain already took may still be on its way: at most one. */
  CHECK(fsgw_doorbells_outstanding(pool) <= 1, "at most one ring outstanding", "%d", fsgw_doorbells_outstanding(pool));
  fsgw_pool_free(pool);
}

static void test_lock_file(void) {
  char path[512];
  path_in(path, sizeof path, "x.lock");
  int fd = fsgw_lock_file(path);
  CHECK(fd >= 0, "lock_file takes the lock", "%d", fd);
  CHECK(fsgw_lock_file(path) == -EWOULDBLOCK, "a second lock_file on the same file: -EWOULDBLOCK", "%s", "failed");
  close(fd);
  fd = fsgw_lock_file(path);
  CHECK(fd >= 0, "the lock is free once its holder closes", "%d", fd);
  close(fd);
  path_in(path, sizeof path, "no/such/dir/x.lock");
  CHECK(fsgw_lock_file(path) == -ENOENT, "lock_file in a missing directory: -ENOENT", "%s", "failed");
}

static void test_rlimit(void) {
  double got = fsgw_raise_nofile(1e12);
  CHECK(got >= 64, "raise_nofile caps at the hard limit and reports it", "%g", got);
}

/* A connected loopback TCP pair: *server is the accepted end (non-blocking, as a runtime's). */
/* A connected loopback pair; `buf` > 0 fixes both ends' socket buffers (no autotuning), so that a
 * peer that does not read stalls a sender after about that many bytes. */
static void tcp_pair_buf(int *server, int *client, int *server_port, int *client_port, int buf);
static void tcp_pair(int *server, int *client, int *server_port, int *client_port) { tcp_pair_buf(server, client, server_port, client_port, 0); }
static void tcp_pair_buf(int *server, int *client, int *server_port, int *client_port, int buf) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (buf > 0) setsockopt(l, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  bind(l, (struct sockaddr *)&a, sizeof a);
  listen(l, 1);
  getsockname(l, (struct sockaddr *)&a, &alen);
  *client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (buf > 0) setsockopt(*client, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  connect(*client, (struct sockaddr *)&a, sizeof a);
  *server = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  close(l);
  struct sockaddr_in s, p;
  socklen_t slen = sizeof s, plen = sizeof p;
  getsockname(*server, (struct sockaddr *)&s, &slen);
  getpeername(*server, (struct sockaddr *)&p, &plen);
  *server_port = ntohs(s.sin_port);
  *client_port = ntohs(p.sin_port);
}

/* Reads exactly n bytes (blocking) into buf; returns how many arrived before EOF or an error. */
static size_t read_all(int fd, char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  return got;
}

typedef struct reader_arg {
  int fd;
  char *buf;
  size_t n;
  int delay_ms;
  size_t got;
} reader_arg;

static void *slow_reader(void *arg) {
  reader_arg *r = arg;
  usleep((useconds_t)r->delay_ms * 1000);
  r->got = read_all(r->fd, r->buf, r->n);
  return NULL;
}

typedef struct writer_arg {
  int fd;
  const char *buf;
  size_t n;
  int delay_ms;
} writer_arg;

static void *slow_writer(void *arg) {
  writer_arg *w = arg;
  usleep((useconds_t)w->delay_ms * 1000);
  size_t put = 0;
  while (put < w->n) {
    ssize_t r = write(w->fd, w->buf + put, w->n - put < 65536 ? w->n - put : 65536);
    if (r <= 0) break;
    put += (size_t)r;
  }
  return NULL;
}

static void test_splice_in(void) {
  char file_path[600];
  snprintf(file_path, sizeof file_path, "%s/spliced", dir);
  size_t size = 3u << 20;
  char *data = malloc(size), *back = malloc(size + 10);
  for (size_t i = 0; i < size; i++) data[i] = (char)(i * 31 + 3);
  int file = open(file_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  int server, client, sport, cport;
  tcp_pair(&server, &client, &sport, &cport);
  fsgw_pool *pool = make_pool(2, 8);
  /* 100 bytes already "read" by the runtime: the splice fills the file from offset 100. */
  memcpy(back, data, 100);
  CHECK(pwrite(file, data, 100, 0) == 100, "splice: head written", "%s", strerror(errno));
  writer_arg w = {.fd = client, .buf = data + 100, .n = size - 100, .delay_ms = 30};
  pthread_t writer;
  pthread_create(&writer, NULL, slow_writer, &w);
  size_t moved = 0;
  fsgw_comp c = {.result = 0};
  /* A digest context rides along: it must end up as the digest of the whole file (head included);
   * a pair (fsgw_md5.h), so the MD5 beside it too. */
  fsgw_digests pair;
  fsgw_sha256 *ctx = &pair.sha256, ref;
  fsgw_digests_init(&pair);
  fsgw_hash_update(ctx, data, 100);
  for (int round = 0; round < 50 && moved < size - 100; round++) {
    c = run1x(pool, FSGW_OP_SPLICE_IN, (uint32_t)file, server, NULL, (double)(size - 100 - moved), (double)(100 + moved), NULL, NULL, ctx);
    if (c.result < 0) break;
    moved += (size_t)c.result;
  }
  pthread_join(writer, NULL);
  CHECK(moved == size - 100, "SPLICE_IN op: the body moved socket -> file, across partial rounds", "%zu of %zu (last %g)", moved, size - 100, c.result);
  uint8_t got[32], want[32];
  fsgw_sha256_init(&ref);
  fsgw_sha256_update(&ref, data, size);
  fsgw_sha256_digest(&ref, want);
  fsgw_sha256_digest(ctx, got);
  CHECK(memcmp(got, want, 32) == 0, "SPLICE_IN op with a digest context: it hashed exactly the bytes spliced, in order", "%02x", got[0]);
  fsgw_md5 md5ref;
  uint8_t md5got[16], md5want[16];
  fsgw_md5_init(&md5ref);
  fsgw_md5_update(&md5ref, data, size);
  fsgw_md5_digest(&md5ref, md5want);
  fsgw_digests_md5(&pair, md5got);
  CHECK(memcmp(md5got, md5want, 16) == 0, "SPLICE_IN op with a digest pair: the MD5 beside the SHA-256 too", "%02x", md5got[0]);
  CHECK(pread(file, back, size + 10, 0) == (ssize_t)size && memcmp(back, data, size) == 0, "SPLICE_IN op: the file holds every byte at its offset", "%s", "differs");
  /* Bytes past the body stay in the socket for whoever reads next. */
  CHECK(write(client, "NEXT", 4) == 4, "splice: next request sent", "%s", strerror(errno));
  c = run1(pool, FSGW_OP_SPLICE_IN, (uint32_t)file, server, NULL, 2, (double)size, NULL, NULL);
  char rest[8] = {0};
  usleep(10000);
  CHECK(c.result == 2 && read(server, rest, sizeof rest) == 2 && memcmp(rest, "XT", 2) == 0, "SPLICE_IN op: takes exactly len bytes, the rest stays in the socket", "%g %s", c.result, rest);
  /* Nothing arrives: a partial (0) result after the wait; then the peer closes: -ECONNRESET. */
  c = run1(pool, FSGW_OP_SPLICE_IN, (uint32_t)file, server, NULL, 10, 0, NULL, NULL);
  CHECK(c.result == 0, "SPLICE_IN op: a silent peer gives the worker back with 0 after the wait", "%g", c.result);
  close(client);
  c = run1(pool, FSGW_OP_SPLICE_IN, (uint32_t)file, server, NULL, 10, 0, NULL, NULL);
  CHECK(c.result == -ECONNRESET, "SPLICE_IN op: a closed peer is -ECONNRESET", "%g", c.result);
  fsgw_pool_free(pool);
  close(server);
  close(file);
  free(data);
  free(back);
  CHECK(fsgw_splice_probe(dir) == 0, "splice_probe: this file system takes splice writes", "%d", fsgw_splice_probe(dir));
  CHECK(fsgw_splice_probe("/proc") < 0, "splice_probe: procfs does not", "%d", fsgw_splice_probe("/proc"));
}

static void test_zero_copy(void) {
  char file_path[600];
  snprintf(file_path, sizeof file_path, "%s/zc", dir);
  size_t size = 4u << 20;
  char *data = malloc(size), *back = malloc(size);
  for (size_t i = 0; i < size; i++) data[i] = (char)(i * 13 + 7);
  int w = open(file_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(write(w, data, size) == (ssize_t)size, "zero-copy: test file written", "%s", strerror(errno));
  close(w);

  double fsize = -1;
  int file = fsgw_open_cached(file_path, &fsize, NULL);
  CHECK(file >= 0 && fsize == (double)size, "open_cached: a cached file's descriptor and size", "%d %g", file, fsize);
  double dsize = -1;
  CHECK(fsgw_open_cached(dir, &dsize, NULL) == -EISDIR, "open_cached: a directory is -EISDIR", "%g", dsize);

  int server, client, sport, cport;
  tcp_pair(&server, &client, &sport, &cport);
  CHECK(fsgw_socket_check(server, sport, cport) == 0, "socket_check: the connection's own ports", "%d", fsgw_socket_check(server, sport, cport));
  CHECK(fsgw_socket_check(server, sport, cport + 1) == -ESTALE, "socket_check: another peer port is -ESTALE", "%d", fsgw_socket_check(server, sport, cport + 1));
  CHECK(fsgw_socket_check(file, sport, cport) == -ENOTSOCK, "socket_check: a file is -ENOTSOCK", "%d", fsgw_socket_check(file, sport, cport));

  /* Inline: sends what the socket takes at once (no reader yet), never blocking. */
  double sent = fsgw_sendfile_now(server, file, 0, (double)size, NULL, 0, NULL, 0);
  CHECK(sent > 0 && sent < (double)size, "sendfile_now: a full socket takes part, without blocking", "%g", sent);
  /* The pool sends the rest while a reader that starts late drains the socket. */
  reader_arg r = {.fd = client, .buf = back, .n = size, .delay_ms = 50};
  pthread_t reader;
  pthread_create(&reader, NULL, slow_reader, &r);
  fsgw_pool *pool = make_pool(2, 8);
  fsgw_comp c = run1(pool, FSGW_OP_SENDFILE, (uint32_t)file, server, NULL, (double)size - sent, sent, NULL, NULL);
  pthread_join(reader, NULL);
  CHECK(c.result == (double)size - sent, "SENDFILE op: the rest, waiting for the socket", "%g of %g", c.result, (double)size - sent);
  CHECK(r.got == size && memcmp(back, data, size) == 0, "zero-copy: the peer received every byte, in order", "%zu", r.got);

  /* Past the end of the file: -ENODATA, not 0 forever (a file that shrank must end the stream). */
  c = run1(pool, FSGW_OP_SENDFILE, (uint32_t)file, server, NULL, 10, (double)size, NULL, NULL);
  CHECK(c.result == -ENODATA, "SENDFILE op: past the end of the file is -ENODATA", "%g", c.result);
  double empty = fsgw_sendfile_now(server, file, (double)size, 0, NULL, 0, NULL, 0);
  CHECK(empty == 0, "sendfile_now: an empty range sends nothing", "%g", empty);
  /* A reader that never reads: the op gives its worker back after FSGW_SENDFILE_WAIT_MS. A pair
   * of its own with small fixed buffers: the first one's grew while it carried 4 MiB, and may now
   * take the whole file without a reader. */
  int stall_server, stall_client, stall_sport, stall_cport;
  tcp_pair_buf(&stall_server, &stall_client, &stall_sport, &stall_cport, 64 * 1024);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  c = run1(pool, FSGW_OP_SENDFILE, (uint32_t)file, stall_server, NULL, (double)size, 0, NULL, NULL);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double waited_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  CHECK(c.result >= 0 && c.result < (double)size && waited_ms >= FSGW_SENDFILE_WAIT_MS * 0.9 && waited_ms < FSGW_SENDFILE_WAIT_MS * 5,
        "SENDFILE op: a stalled peer returns a partial count after the wait", "%g bytes, %.0f ms", c.result, waited_ms);
  close(stall_client);
  close(stall_server);

  /* A peer that hung up: -EPIPE or -ECONNRESET, and no signal kills the process. */
  close(client);
  usleep(20000);
  c = run1(pool, FSGW_OP_SENDFILE, (uint32_t)file, server, NULL, (double)size, 0, NULL, NULL);
  CHECK(c.result == -EPIPE || c.result == -ECONNRESET || c.result >= 0, "SENDFILE op: a closed peer is an error, not a signal", "%g", c.result);
  c = run1(pool, FSGW_OP_SENDFILE, (uint32_t)file, server, NULL, (double)size, 0, NULL, NULL);
  CHECK(c.result == -EPIPE || c.result == -ECONNRESET, "SENDFILE op: then -EPIPE or -ECONNRESET", "%g", c.result);
  fsgw_pool_free(pool);
  int d = fsgw_dup(server);
  CHECK(d >= 0 && d != server && fsgw_close(d) == 0 && fsgw_close(d) == -EBADF, "dup and close", "%d", d);
  close(server);

  /* Framed: head, a small body and tail in one call, received in that order and nothing else. */
  tcp_pair(&server, &client, &sport, &cport);
  const char head[] = "HEAD-FRAME", tail[] = "TAIL";
  size_t small = 50 * 1024, total = (sizeof head - 1) + small + (sizeof tail - 1);
  sent = fsgw_sendfile_now(server, file, 1000, (double)small, head, (int32_t)(sizeof head - 1), tail, (int32_t)(sizeof tail - 1));
  CHECK(sent == (double)total, "sendfile_now framed: head, body and tail all sent", "%g of %zu", sent, total);
  size_t got = read_all(client, back, total);
  CHECK(got == total && memcmp(back, head, sizeof head - 1) == 0 && memcmp(back + sizeof head - 1, data + 1000, small) == 0 &&
            memcmp(back + sizeof head - 1 + small, tail, sizeof tail - 1) == 0,
        "sendfile_now framed: the peer gets head, the file's range, tail, in order", "%zu bytes", got);
  /* A body larger than the socket takes: the count stops inside the body and the tail is not sent. */
  sent = fsgw_sendfile_now(server, file, 0, (double)size, head, (int32_t)(sizeof head - 1), tail, (int32_t)(sizeof tail - 1));
  CHECK(sent > (double)(sizeof head - 1) && sent < (double)(sizeof head - 1 + size), "sendfile_now framed: a full socket stops inside the body", "%g", sent);
  close(client);
  usleep(20000);
  double gone = fsgw_sendfile_now(server, file, 0, 10, head, (int32_t)(sizeof head - 1), NULL, 0);
  gone = gone >= 0 ? fsgw_sendfile_now(server, file, 0, 10, head, (int32_t)(sizeof head - 1), NULL, 0) : gone;
  CHECK(gone == -EPIPE || gone == -ECONNRESET, "sendfile_now framed: a closed peer is -EPIPE or -ECONNRESET", "%g", gone);
  close(server);
  close(file);
  free(data);
  free(back);
}

/* Digests recorded as the user.fsgw.sha256 attribute: by COMMIT before its rename and by
 * FSETDIGEST; read back by STAT, FSTAT, READ_FILE and the inline calls; absent is a 0 flag. */
static void test_digests(void) {
  char tmp[600], final_path[600], plain[600];
  path_in(tmp, sizeof tmp, "digest.tmp");
  path_in(final_path, sizeof final_path, "digested");
  path_in(plain, sizeof plain, "undigested");
  const char body[] = "a body with a digest";
  uint8_t digest[32];
  for (int i = 0; i < 32; i++) digest[i] = (uint8_t)(i * 7 + 1);
  fsgw_pool *pool = make_pool(2, 8);
  fsgw_comp c = run1x(pool, FSGW_OP_COMMIT, 0, -1, (void *)body, sizeof body - 1, 0, tmp, final_path, digest);
  if (c.aux == ENOTSUP) {
    printf("# digests: this file system keeps no user attributes; the checks below are skipped\n");
    fsgw_pool_free(pool);
    return;
  }
  CHECK(c.result == (double)(sizeof body - 1), "COMMIT with a digest: committed", "%g", c.result);
  uint8_t raw[64];
  CHECK(getxattr(final_path, "user.fsgw.sha256", raw, sizeof raw) == 32 && memcmp(raw, digest, 32) == 0, "COMMIT with a digest: the file carries it as user.fsgw.sha256", "%s", strerror(errno));
  uint8_t out[FSGW_DIGEST_OUT_BYTES];
  memset(out, 0xee, sizeof out);
  c = run1x(pool, FSGW_OP_STAT, 0, -1, NULL, 0, 0, final_path, NULL, out);
  CHECK(c.result == (double)(sizeof body - 1) && (out[0] & FSGW_FACT_SHA256) && memcmp(out + 1, digest, 32) == 0, "STAT reads the digest", "%g %d", c.result, out[0]);
  char buf[64];
  memset(out, 0xee, sizeof out);
  c = run1x(pool, FSGW_OP_READ_FILE, 0, -1, buf, sizeof buf, 0, final_path, NULL, out);
  CHECK(c.result == (double)(sizeof body - 1) && (out[0] & FSGW_FACT_SHA256) && memcmp(out + 1, digest, 32) == 0, "READ_FILE reads the digest", "%g %d", c.result, out[0]);
  int32_t mode = 0;
  memset(out, 0xee, sizeof out);
  CHECK(fsgw_stat_cached(final_path, &mode, out) == (double)(sizeof body - 1) && (out[0] & FSGW_FACT_SHA256) && memcmp(out + 1, digest, 32) == 0, "stat_cached reads the digest", "%d", out[0]);
  memset(out, 0xee, sizeof out);
  CHECK(fsgw_read_cached(final_path, buf, sizeof buf, out) == (double)(sizeof body - 1) && (out[0] & FSGW_FACT_SHA256), "read_cached reads the digest", "%d", out[0]);
  double size = 0;
  memset(out, 0xee, sizeof out);
  int fd = fsgw_open_cached(final_path, &size, out);
  CHECK(fd >= 0 && (out[0] & FSGW_FACT_SHA256) && memcmp(out + 1, digest, 32) == 0, "open_cached reads the digest", "%d %d", fd, out[0]);
  if (fd >= 0) close(fd);
  /* The inline calls remember digests by inode; a new digest (which changes the inode's ctime) is
   * read again, not answered from memory. */
  uint8_t other[32];
  for (int i = 0; i < 32; i++) other[i] = (uint8_t)(i * 3 + 9);
  usleep(2000);
  CHECK(setxattr(final_path, "user.fsgw.sha256", other, 32, 0) == 0, "digests: the attribute rewritten", "%s", strerror(errno));
  memset(out, 0xee, sizeof out);
  CHECK(fsgw_stat_cached(final_path, &mode, out) >= 0 && (out[0] & FSGW_FACT_SHA256) && memcmp(out + 1, other, 32) == 0, "stat_cached: a changed digest is read again, not remembered", "%d", out[0]);
  memset(out, 0xee, sizeof out);
  fd = fsgw_open_cached(final_path, &size, out);
  CHECK(fd >= 0 && (out[0] & FSGW_FACT_SHA256) && memcmp(out + 1, other, 32) == 0, "open_cached: a changed digest is read again, not remembered", "%d", out[0]);
  if (fd >= 0) close(fd);
  /* A file without one: flag 0, no error; FSETDIGEST gives it one. */
  int w = open(plain, O_RDWR | O_CREAT | O_TRUNC, 0644);
  CHECK(write(w, "x", 1) == 1, "digests: plain file written", "%s", strerror(errno));
  memset(out, 0xee, sizeof out);
  c = run1x(pool, FSGW_OP_FSTAT, 0, w, NULL, 0, 0, NULL, NULL, out);
  CHECK(c.result == 1 && !(out[0] & FSGW_FACT_SHA256), "FSTAT of a file without a digest: flag 0", "%g %d", c.result, out[0]);
  c = run1x(pool, FSGW_OP_FSETDIGEST, 0, w, NULL, 0, 0, NULL, NULL, digest);
  memset(out, 0xee, sizeof out);
  fsgw_comp c2 = run1x(pool, FSGW_OP_FSTAT, 0, w, NULL, 0, 0, NULL, NULL, out);
  CHECK(c.result == 0 && c2.result == 1 && (out[0] & FSGW_FACT_SHA256) && memcmp(out + 1, digest, 32) == 0, "FSETDIGEST records it; FSTAT reads it", "%g %d", c.result, out[0]);
  CHECK(!(out[0] & FSGW_FACT_MD5), "FSETDIGEST of 32 bytes: no MD5", "%d", out[0]);
  /* The facts carry the modification time, as fstat reports it, in milliseconds. */
  struct stat st;
  int64_t ms = 0;
  memcpy(&ms, out + 49, 8);
  CHECK(fstat(w, &st) == 0 && (out[0] & FSGW_FACT_MTIME) && ms == (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000, "FSTAT reports the mtime in ms", "%lld", (long long)ms);
  /* With len 48 the MD5 follows the SHA-256, and every reader reports both. */
  uint8_t both[48];
  memcpy(both, other, 32);
  for (int i = 0; i < 16; i++) both[32 + i] = (uint8_t)(0xa0 + i);
  c = run1x(pool, FSGW_OP_FSETDIGEST, 0, w, NULL, 48, 0, NULL, NULL, both);
  memset(out, 0xee, sizeof out);
  c2 = run1x(pool, FSGW_OP_FSTAT, 0, w, NULL, 0, 0, NULL, NULL, out);
  CHECK(c.result == 0 && (out[0] & FSGW_FACT_MD5) && memcmp(out + 1, both, 48) == 0, "FSETDIGEST of 48 bytes: FSTAT reads SHA-256 and MD5", "%g %d", c.result, out[0]);
  close(w);
  memset(out, 0xee, sizeof out);
  CHECK(fsgw_stat_cached(plain, &mode, out) == 1 && (out[0] & FSGW_FACT_MD5) && memcmp(out + 1, both, 48) == 0, "stat_cached reads SHA-256 and MD5", "%d", out[0]);
  /* The digest cache filled by stat_cached: open_cached and read_cached still report the mtime. */
  memset(out, 0, sizeof out);
  fd = fsgw_open_cached(plain, &size, out);
  CHECK(fd >= 0 && (out[0] & FSGW_FACT_MTIME) && (out[0] & FSGW_FACT_MD5), "open_cached after stat_cached: mtime and digests", "%d", out[0]);
  if (fd >= 0) close(fd);
  memset(out, 0, sizeof out);
  CHECK(fsgw_read_cached(plain, buf, sizeof buf, out) == 1 && (out[0] & FSGW_FACT_MTIME), "read_cached after stat_cached: mtime", "%d", out[0]);
  /* COMMIT with FSGW_COMMIT_MD5 records both before the rename. */
  char md5_final[600];
  path_in(md5_final, sizeof md5_final, "digested-md5");
  c = run1x(pool, FSGW_OP_COMMIT, FSGW_COMMIT_MD5, -1, (void *)body, sizeof body - 1, 0, tmp, md5_final, both);
  CHECK(c.result == (double)(sizeof body - 1) && getxattr(md5_final, "user.fsgw.sha256", raw, sizeof raw) == 48 && memcmp(raw, both, 48) == 0, "COMMIT with FSGW_COMMIT_MD5: the attribute holds both", "%g", c.result);
  memset(out, 0xee, sizeof out);
  fd = fsgw_open_cached(md5_final, &size, out);
  CHECK(fd >= 0 && (out[0] & FSGW_FACT_MD5) && (out[0] & FSGW_FACT_MTIME) && memcmp(out + 33, both + 32, 16) == 0, "open_cached reads the MD5 and mtime", "%d %d", fd, out[0]);
  if (fd >= 0) close(fd);
  fsgw_pool_free(pool);
}

/* Confinement: beneath a confined directory every operation, pooled and inline, refuses a link
 * anywhere on the way (-ELOOP) and touches nothing outside; files created there get its mode;
 * paths elsewhere work as before. */
static void test_confine(void) {
  char base[600], shard[700], file_path[700], outside[600], out_file[700], link_file[700], swapped[700], via_swapped[800], tmp[700];
  snprintf(base, sizeof base, "%s/confined", dir);
  snprintf(shard, sizeof shard, "%s/ab", base);
  snprintf(file_path, sizeof file_path, "%s/ab/f", base);
  snprintf(outside, sizeof outside, "%s/outside", dir);
  snprintf(out_file, sizeof out_file, "%s/outside/victim", dir);
  snprintf(link_file, sizeof link_file, "%s/ab/planted", base);
  snprintf(swapped, sizeof swapped, "%s/cd", base);
  snprintf(via_swapped, sizeof via_swapped, "%s/cd/victim", base);
  mkdir(base, 0755);
  mkdir(shard, 0755);
  mkdir(outside, 0755);
  int w = open(file_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(write(w, "12345", 5) == 5, "confine: file written", "%s", strerror(errno));
  close(w);
  w = open(out_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(write(w, "secret", 6) == 6, "confine: outside file written", "%s", strerror(errno));
  close(w);
  /* A link planted as a file, and a shard directory replaced by a link to another directory. */
  CHECK(symlink(out_file, link_file) == 0 && symlink(outside, swapped) == 0, "confine: links planted", "%s", strerror(errno));

  CHECK(fsgw_confine("relative/dir", 0600) == -EINVAL, "confine: a relative directory is refused", "%s", "failed");
  int index = fsgw_confine(base, 0600);
  CHECK(index >= 0, "confine: a directory", "%d", index);
  CHECK(fsgw_confine(base, 0644) == index, "confine: the same directory again: the same index", "%s", "failed");

  fsgw_pool *pool = make_pool(2, 16);
  int32_t mode = 0;
  uint8_t out[FSGW_DIGEST_OUT_BYTES];
  /* Inline calls. */
  CHECK(fsgw_stat_cached(file_path, &mode, NULL) == 5, "confine: inline stat of a file beneath it", "%g", fsgw_stat_cached(file_path, &mode, NULL));
  CHECK(fsgw_stat_cached(link_file, &mode, out) == -ELOOP, "confine: inline stat of a planted link: -ELOOP", "%g", fsgw_stat_cached(link_file, &mode, out));
  CHECK(fsgw_stat_cached(via_swapped, &mode, out) == -ELOOP, "confine: inline stat through a linked directory: -ELOOP", "%g", fsgw_stat_cached(via_swapped, &mode, out));
  char buf[64];
  CHECK(fsgw_read_cached(link_file, buf, sizeof buf, NULL) == -ELOOP, "confine: inline read of a planted link: -ELOOP", "%s", "failed");
  double size = -1;
  CHECK(fsgw_open_cached(via_swapped, &size, NULL) == -ELOOP, "confine: inline open through a linked directory: -ELOOP", "%s", "failed");
  /* Pooled operations. */
  fsgw_comp c = run1(pool, FSGW_OP_OPEN, FSGW_OPEN_READ, 0, NULL, 0, 0, link_file, NULL);
  CHECK(c.result == -ELOOP, "confine: OPEN of a planted link: -ELOOP", "%g", c.result);
  c = run1x(pool, FSGW_OP_STAT, 0, 0, NULL, 0, 0, via_swapped, NULL, out);
  CHECK(c.result == -ELOOP, "confine: STAT through a linked directory: -ELOOP", "%g", c.result);
  c = run1(pool, FSGW_OP_READ_FILE, 0, 0, buf, sizeof buf, 0, via_swapped, NULL);
  CHECK(c.result == -ELOOP, "confine: READ_FILE through a linked directory: -ELOOP", "%g", c.result);
  c = run1(pool, FSGW_OP_UNLINK, 0, 0, NULL, 0, 0, via_swapped, NULL);
  struct stat st;
  CHECK(c.result == -ELOOP && stat(out_file, &st) == 0, "confine: UNLINK through a linked directory: -ELOOP, the outside file stays", "%g", c.result);
  snprintf(tmp, sizeof tmp, "%s/cd/new-tmp", base);
  c = run1(pool, FSGW_OP_OPEN, FSGW_OPEN_CREATE, 0, NULL, 0, 0, tmp, NULL);
  char made[800];
  snprintf(made, sizeof made, "%s/new-tmp", outside);
  CHECK(c.result == -ELOOP && stat(made, &st) != 0, "confine: OPEN_CREATE through a linked directory: -ELOOP, nothing made outside", "%g", c.result);
  c = run1(pool, FSGW_OP_COMMIT, 0, 0, "abc", 3, 0, tmp, via_swapped);
  CHECK(c.result == -ELOOP && stat(made, &st) != 0, "confine: COMMIT into a linked directory: -ELOOP, nothing made outside", "%g", c.result);
  c = run1(pool, FSGW_OP_RENAME, 0, 0, NULL, 0, 0, file_path, via_swapped);
  CHECK(c.result == -ELOOP && stat(file_path, &st) == 0, "confine: RENAME into a linked directory: -ELOOP, the file stays", "%g", c.result);
  /* The outside file is untouched throughout. */
  int r = open(out_file, O_RDONLY);
  char text[16] = {0};
  CHECK(r >= 0 && read(r, text, sizeof text) == 6 && memcmp(text, "secret", 6) == 0, "confine: the outside file is untouched", "%s", text);
  if (r >= 0) close(r);
  /* What works beneath it works as before, and what is created gets the directory's mode. */
  char tmp2[700], final2[700];
  snprintf(tmp2, sizeof tmp2, "%s/ab/t\\1", base);
  snprintf(final2, sizeof final2, "%s/ab/k", base);
  c = run1(pool, FSGW_OP_COMMIT, FSGW_COMMIT_FSYNC, 0, "hello", 5, 0, tmp2, final2);
  mode_t mask = umask(0);
  umask(mask);
  CHECK(c.result == 5 && stat(final2, &st) == 0 && (st.st_mode & 0777) == (0600 & ~mask), "confine: COMMIT (durable) beneath it, the file 0600", "%g %o", c.result, st.st_mode & 0777);
  c = run1(pool, FSGW_OP_STAT, 0, 0, NULL, 0, 0, final2, NULL);
  CHECK(c.result == 5 && S_ISREG((mode_t)c.aux), "confine: STAT beneath it", "%g", c.result);
  c = run1(pool, FSGW_OP_RENAME, 0, 0, NULL, 0, 0, final2, file_path);
  CHECK(c.result == 0, "confine: RENAME beneath it", "%g", c.result);
  c = run1(pool, FSGW_OP_UNLINK, 0, 0, NULL, 0, 0, link_file, NULL);
  CHECK(c.result == 0 && lstat(link_file, &st) != 0 && stat(out_file, &st) == 0, "confine: UNLINK of a planted link removes the link, not its target", "%g", c.result);
  c = run1(pool, FSGW_OP_OPEN, FSGW_OPEN_READ, 0, NULL, 0, 0, out_file, NULL);
  CHECK(c.result >= 0, "confine: a path elsewhere opens as before", "%g", c.result);
  if (c.result >= 0) close((int)c.result);
  /* A digest read beneath it (getxattrat from the confined directory, or /proc/self/fd). */
  uint8_t digest[32];
  for (int i = 0; i < 32; i++) digest[i] = (uint8_t)(200 - i);
  if (setxattr(file_path, "user.fsgw.sha256", digest, 32, 0) == 0) {
    memset(out, 0xee, sizeof out);
    CHECK(fsgw_stat_cached(file_path, &mode, out) == 5 && (out[0] & FSGW_FACT_SHA256) && memcmp(out + 1, digest, 32) == 0, "confine: inline stat reads a digest beneath it", "%d", out[0]);
    memset(out, 0xee, sizeof out);
    c = run1x(pool, FSGW_OP_STAT, 0, 0, NULL, 0, 0, file_path, NULL, out);
    CHECK(c.result == 5 && (out[0] & FSGW_FACT_SHA256) && memcmp(out + 1, digest, 32) == 0, "confine: STAT reads a digest beneath it", "%d", out[0]);
    memset(out, 0xee, sizeof out);
    CHECK(fsgw_stat_cached(out_file, &mode, out) == 6 && !(out[0] & FSGW_FACT_SHA256), "confine: a file elsewhere without a digest: flag 0", "%d", out[0]);
  }
  /* The lock file is never taken through a link. */
  char lock_link[700];
  snprintf(lock_link, sizeof lock_link, "%s/fsgw.lock", base);
  CHECK(symlink(out_file, lock_link) == 0 && fsgw_lock_file(lock_link) == -ELOOP, "confine: lock_file refuses a link", "%s", "failed");
  fsgw_pool_free(pool);
}

static void hex32(const uint8_t *d, char *out) {
  for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

/* SHA-256: FIPS 180-4's vectors on both paths, and both paths agreeing on every length and every
 * way of splitting the input into updates. */
/* RFC 1321's test suite; the same digest fed in every split; an fsgw_digests pair gives the
 * SHA-256 of a lone context and the MD5 beside it, and a lone context ignores the MD5's half. */
static void test_md5(void) {
  static const struct {
    const char *in;
    const char *hex;
  } vectors[] = {
      {"", "d41d8cd98f00b204e9800998ecf8427e"},
      {"a", "0cc175b9c0f1b6a831c399e269772661"},
      {"abc", "900150983cd24fb0d6963f7d28e17f72"},
      {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
      {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
      {"12345678901234567890123456789012345678901234567890123456789012345678901234567890", "57edf4a22be3c955ac49da2e2107b67a"},
  };
  for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
    fsgw_md5 c;
    uint8_t d[16];
    char h[33];
    fsgw_md5_init(&c);
    fsgw_md5_update(&c, vectors[v].in, strlen(vectors[v].in));
    fsgw_md5_digest(&c, d);
    for (int i = 0; i < 16; i++) snprintf(h + 2 * i, 3, "%02x", d[i]);
    CHECK(strcmp(h, vectors[v].hex) == 0, "md5: RFC 1321 vector", "%s for \"%s\"", h, vectors[v].in);
  }
  size_t n = 5000;
  uint8_t *data = malloc(n);
  for (size_t i = 0; i < n; i++) data[i] = (uint8_t)(i * 31 + 7);
  uint8_t whole[16];
  fsgw_md5 one;
  fsgw_md5_init(&one);
  fsgw_md5_update(&one, data, n);
  fsgw_md5_digest(&one, whole);
  int agree = 1;
  for (size_t cut = 0; cut <= n && agree; cut += cut < 200 ? 1 : 173) {
    fsgw_md5 c;
    uint8_t d[16];
    fsgw_md5_init(&c);
    fsgw_md5_update(&c, data, cut);
    fsgw_md5_update(&c, data + cut, n - cut);
    fsgw_md5_digest(&c, d);
    agree = memcmp(d, whole, 16) == 0;
  }
  CHECK(agree, "md5: any split of the input gives the same digest", "%s", "differs");
  fsgw_digests pair;
  fsgw_sha256 lone;
  uint8_t a[32], b[32], m[16];
  fsgw_digests_init(&pair);
  fsgw_sha256_init(&lone);
  fsgw_hash_update(&pair.sha256, data, 1000);
  fsgw_hash_update(&pair.sha256, data + 1000, n - 1000);
  fsgw_hash_update(&lone, data, n);
  fsgw_sha256_digest(&pair.sha256, a);
  fsgw_sha256_digest(&lone, b);
  fsgw_digests_md5(&pair, m);
  CHECK(memcmp(a, b, 32) == 0 && memcmp(m, whole, 16) == 0, "fsgw_hash_update: a pair's SHA-256 is a lone context's, its MD5 the body's", "%02x %02x", a[0], m[0]);
  free(data);
}

static void test_sha256(void) {
  static const struct {
    const char *in;
    const char *hex;
  } vectors[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
  };
  int accelerated_available = 0;
  for (int portable = 0; portable < 2; portable++) {
    fsgw_debug_sha256_portable(portable);
    if (!portable) accelerated_available = fsgw_sha256_accelerated();
    for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
      fsgw_sha256 c;
      uint8_t d[32];
      char h[65];
      fsgw_sha256_init(&c);
      fsgw_sha256_update(&c, vectors[v].in, strlen(vectors[v].in));
      fsgw_sha256_digest(&c, d);
      hex32(d, h);
      CHECK(strcmp(h, vectors[v].hex) == 0, portable ? "sha256 portable: FIPS 180-4 vector" : "sha256 best path: FIPS 180-4 vector", "%s", h);
    }
  }
  fsgw_debug_sha256_portable(0);
  printf("# sha256: SHA-NI %s\n", accelerated_available ? "in use" : "not available on this CPU");
  size_t n = 5000;
  uint8_t *data = malloc(n);
  for (size_t i = 0; i < n; i++) data[i] = (uint8_t)(i * 31 + 7);
  int agree = 1;
  for (size_t len = 0; len < n && agree; len += len < 300 ? 1 : 97) {
    uint8_t a[32], b[32];
    fsgw_sha256 c;
    fsgw_debug_sha256_portable(1);
    fsgw_sha256_init(&c);
    fsgw_sha256_update(&c, data, len);
    fsgw_sha256_digest(&c, a);
    fsgw_debug_sha256_portable(0);
    fsgw_sha256_init(&c);
    for (size_t at = 0, step = 1; at < len; at += step, step = step * 3 % 101 + 1) fsgw_sha256_update(&c, data + at, at + step > len ? len - at : step);
    fsgw_sha256_digest(&c, b);
    agree = memcmp(a, b, 32) == 0;
  }
  CHECK(agree, "sha256: both paths agree on every length, whatever the split into updates", "%d", agree);
  free(data);
}

/* ---- a second pool over the same workers (fsgw_pool_join): another loop's doorbell ---- */
static atomic_int bell2_calls = 0;
static void doorbell2(void) { atomic_fetch_add(&bell2_calls, 1); }

/* Drains `pool` until `want` records came (or 5 s passed); returns the count, results in out. */
static int drain_until(fsgw_pool *pool, fsgw_comp *out, int want) {
  int got = 0;
  for (int spins = 0; got < want && spins < 5000; spins++) {
    int n = fsgw_drain(pool, out + got, want - got);
    if (n > 0) got += n;
    else usleep(1000);
  }
  return got;
}

static void test_join(void) {
  enum { N = 500 };
  fsgw_pool *a = make_pool(2, 64);
  uint64_t h = 0;
  CHECK(fsgw_pool_join(a, 0, doorbell2, &h) == -EINVAL, "join rejects 0 capacity", "%s", "failed");
  CHECK(fsgw_pool_join(a, 8, NULL, &h) == -EINVAL, "join rejects a null doorbell", "%s", "failed");
  CHECK(fsgw_pool_join(a, 32, doorbell2, &h) == 0, "join", "%s", "failed");
  fsgw_pool *b = (fsgw_pool *)(uintptr_t)h;
  double stats[FSGW_STAT_COUNT];
  fsgw_pool_stats(b, stats, FSGW_STAT_COUNT);
  CHECK(stats[FSGW_STAT_THREADS] == 2, "the joined pool reports the shared workers", "%g", stats[FSGW_STAT_THREADS]);
  /* Each pool's operations complete into its own ring, and ring its own doorbell. */
  int before_a = atomic_load(&bell_calls);
  static fsgw_comp out[N];
  int done_a = 0, done_b = 0, sub_a = 0, sub_b = 0, wrong = 0;
  while (done_a < N || done_b < N) {
    while (sub_a < N && fsgw_submit(a, FSGW_OP_NOP, 0, -1, NULL, 1000 + sub_a, 0, NULL, NULL, NULL) >= 0) sub_a++;
    while (sub_b < N && fsgw_submit(b, FSGW_OP_NOP, 0, -1, NULL, 5000 + sub_b, 0, NULL, NULL, NULL) >= 0) sub_b++;
    int n = fsgw_drain(a, out, N);
    for (int i = 0; i < n; i++) wrong += out[i].result < 1000 || out[i].result >= 1000 + N;
    done_a += n;
    fsgw_doorbell_answer(a);
    n = fsgw_drain(b, out, N);
    for (int i = 0; i < n; i++) wrong += out[i].result < 5000 || out[i].result >= 5000 + N;
    done_b += n;
    fsgw_doorbell_answer(b);
    if (n == 0) usleep(200);
  }
  CHECK(done_a == N && done_b == N && wrong == 0, "each pool drains exactly its own operations", "a %d b %d wrong %d", done_a, done_b, wrong);
  CHECK(atomic_load(&bell_calls) > before_a && atomic_load(&bell2_calls) > 0, "each pool's doorbell rings for its own completions", "a %d b %d",
        atomic_load(&bell_calls) - before_a, atomic_load(&bell2_calls));
  /* Stopping one pool cancels its queued operations only; the other goes on with the workers. */
  fsgw_debug_set_op_delay_us(a, 100000);
  int sa = 0, sb = 0;
  for (int i = 0; i < 4; i++) sa += fsgw_submit(a, FSGW_OP_NOP, 0, -1, NULL, 7, 0, NULL, NULL, NULL) >= 0;
  for (int i = 0; i < 4; i++) sb += fsgw_submit(b, FSGW_OP_NOP, 0, -1, NULL, 9, 0, NULL, NULL, NULL) >= 0;
  usleep(20000);
  fsgw_pool_stop(a);
  int n = drain_until(a, out, 4);
  int cancelled = 0;
  for (int i = 0; i < n; i++) cancelled += out[i].result == -ECANCELED;
  CHECK(sa == 4 && n == 4 && cancelled >= 2, "stopping one pool cancels its queued operations", "n %d cancelled %d", n, cancelled);
  CHECK(fsgw_submit(a, FSGW_OP_NOP, 0, -1, NULL, 1, 0, NULL, NULL, NULL) == -ESHUTDOWN, "the stopped pool refuses", "%s", "failed");
  fsgw_debug_set_op_delay_us(b, 0);
  n = drain_until(b, out, 4);
  int ok = 0;
  for (int i = 0; i < n; i++) ok += out[i].result == 9;
  CHECK(sb == 4 && ok == 4, "the other pool's operations all complete", "n %d ok %d", n, ok);
  CHECK(fsgw_submit(b, FSGW_OP_NOP, 0, -1, NULL, 11, 0, NULL, NULL, NULL) >= 0 && drain_until(b, out, 1) == 1 && out[0].result == 11,
        "the other pool still runs new operations", "%s", "failed");
  fsgw_pool_free(a); /* freed while b goes on: the workers stay */
  CHECK(fsgw_submit(b, FSGW_OP_NOP, 0, -1, NULL, 12, 0, NULL, NULL, NULL) >= 0 && drain_until(b, out, 1) == 1 && out[0].result == 12,
        "the workers outlive a freed pool", "%s", "failed");
  fsgw_pool_stop(b);
  fsgw_pool_stats(b, stats, FSGW_STAT_COUNT);
  CHECK(stats[FSGW_STAT_THREADS] == 0, "the last pool to stop stops the workers", "%g", stats[FSGW_STAT_THREADS]);
  uint64_t h2 = 0;
  CHECK(fsgw_pool_join(b, 8, doorbell2, &h2) == -ESHUTDOWN, "no join once the workers are stopping", "%s", "failed");
  fsgw_pool_free(b);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/fsgw-ctest-%d", (int)getpid());
  mkdir(dir, 0755);
  test_abi();
  test_every_op();
  test_full_queue_and_cancel();
  test_many_through_small();
  test_join();
  test_rlimit();
  test_lock_file();
  test_zero_copy();
  test_splice_in();
  test_digests();
  test_confine();
  test_sha256();
  test_md5();
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
