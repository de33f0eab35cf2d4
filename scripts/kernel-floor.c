/* kernel-floor: what the kernel alone charges, in CPU time, for the file work of each exchange, on
 * one thread with no network and no runtime. scripts/bench-exchanges.ts runs it beside the server
 * so that server CPU per exchange can be read against the floor the disk work sets.
 *
 *   kernel-floor DIR FILES SIZE [keep]   (DIR must not exist; 256 shard directories, like fsgw)
 *
 * With `keep` the files are not unlinked (unlink is not measured): on ext4 without a journal,
 * creating files right after a mass deletion is slower for minutes, which would tax what runs next.
 *
 * Prints one line: microseconds of CPU (user + system) per operation, files synced to disk after
 * they are written (as scripts/bench-exchanges.ts does before it reads or deletes them), for
 *   stat-hit, stat-miss (a name never looked up), stat-cached (openat2 RESOLVE_CACHED + fstat +
 *   close: fsgw's inline exist), commit (create, write SIZE bytes, close, rename), unlink. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static double cpu_us(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: kernel-floor DIR FILES SIZE [keep]\n");
    return 2;
  }
  const char *dir = argv[1];
  int n = atoi(argv[2]);
  size_t size = (size_t)atol(argv[3]);
  char *buf = malloc(size);
  char path[4096], tmp[4096];
  if (buf == NULL || n < 1 || mkdir(dir, 0755) != 0) {
    perror("kernel-floor");
    return 1;
  }
  memset(buf, 'x', size);
  for (int s = 0; s < 256; s++) {
    snprintf(path, sizeof path, "%s/%02x", dir, s);
    mkdir(path, 0755);
  }
  struct stat st;
  double t0 = cpu_us();
  for (int i = 0; i < n; i++) {
    snprintf(tmp, sizeof tmp, "%s/%02x/.tmp%d", dir, i % 256, i);
    snprintf(path, sizeof path, "%s/%02x/f%d", dir, i % 256, i);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, buf, size) != (ssize_t)size || close(fd) != 0 || rename(tmp, path) != 0) {
      perror("commit");
      return 1;
    }
  }
  double commit = (cpu_us() - t0) / n;
  sync(); /* as the benchmark does after filling: later operations meet files already on disk */
  t0 = cpu_us();
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%02x/f%d", dir, i % 256, i);
    stat(path, &st);
  }
  double hit = (cpu_us() - t0) / n;
  t0 = cpu_us();
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%02x/f%d", dir, i % 256, i);
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_CACHED};
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
    if (fd >= 0) {
      fstat(fd, &st);
      close(fd);
    }
  }
  double cached = (cpu_us() - t0) / n;
  t0 = cpu_us();
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%02x/never%d", dir, i % 256, i);
    stat(path, &st);
  }
  double miss = (cpu_us() - t0) / n;
  printf("kernel-floor: %d files x %zu B: stat-hit %.1f us, stat-miss %.1f us, stat-cached %.1f us, commit %.1f us", n, size, hit, miss,
         cached, commit);
  if (argc == 5) {
    printf("\n");
    return 0;
  }
  t0 = cpu_us();
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%02x/f%d", dir, i % 256, i);
    unlink(path);
  }
  printf(", unlink %.1f us\n", (cpu_us() - t0) / n);
  return 0;
}
