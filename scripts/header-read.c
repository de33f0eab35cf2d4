/* header-read: what reading one record's header costs, the price of keeping a record's digests only
 * in its volume (issue 27: an index entry without the SHA-256 would need this read for every exist,
 * download and listed record that answers a digest). One thread, no runtime: preadv2(RWF_NOWAIT) of
 * the 88-byte header at random 8-aligned offsets of a volume-sized file in the page cache.
 *
 *   gcc -O2 -o /tmp/header-read scripts/header-read.c && /tmp/header-read DIR [MiB]
 *
 * Writes DIR/header-read.tmp (MiB, default 1024), reads it 1,000,000 times, removes it. Prints the
 * CPU (user + system) per read. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#define HEADER_BYTES 88
#define READS 1000000

static double cpu_us(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: header-read DIR [MiB]\n");
    return 2;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/header-read.tmp", argv[1]);
  size_t size = (size_t)(argc > 2 ? atol(argv[2]) : 1024) << 20;
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) {
    perror(path);
    return 1;
  }
  char *chunk = calloc(1, 1 << 20);
  for (size_t at = 0; at < size; at += 1 << 20) {
    if (write(fd, chunk, 1 << 20) != 1 << 20) {
      perror("write");
      unlink(path);
      return 1;
    }
  }
  char header[HEADER_BYTES];
  unsigned long long x = 1;
  int misses = 0;
  double t0 = cpu_us();
  for (int i = 0; i < READS; i++) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    off_t at = (off_t)((x >> 20) % (size / 8 - HEADER_BYTES / 8)) * 8;
    struct iovec v = {header, HEADER_BYTES};
    if (preadv2(fd, &v, 1, at, RWF_NOWAIT) != HEADER_BYTES) misses++;
  }
  double us = (cpu_us() - t0) / READS;
  unlink(path);
  printf("preadv2(RWF_NOWAIT) of %d bytes at random offsets of a cached %zu MiB file: %.2f us CPU each (%d not from the cache)\n", HEADER_BYTES, size >> 20, us, misses);
  return 0;
}
