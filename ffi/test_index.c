/* C-level tests of the listing index (fsgw_index.h), run by test/ffi/pool-c.test.ts under
 * AddressSanitizer + UBSan and under ThreadSanitizer: 60,000 random adds and removes against a
 * reference set, then every key listed in order across pages; common prefixes; and writers adding
 * and removing while a reader lists (the read-write lock). Prints "ok - ..." per check. */
#define _GNU_SOURCE
#include "fsgw_index.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int checks, failed;
static void check(int ok, const char *what) {
  checks++;
  if (!ok) failed++;
  printf("%s - %s\n", ok ? "ok" : "not ok", what);
}

static int byte_order(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

enum { N = 8000 };
static char keys[N][48];
static int present[N];
static uint8_t meta[FSGW_INDEX_META_BYTES];
/* Facts with an MD5 (flags 3): 16 bytes longer, so that adds and overwrites change entry sizes. */
static uint8_t meta_md5[FSGW_INDEX_META_BYTES_MAX];

/* Lists every key under prefix (pages of `max`) into out as "key\n" lines (unescaped), or prefixes
 * as "P:prefix\n"; returns the number of lines. */
static int list_all(fsgw_index *ix, const char *prefix, const char *delim, int max, char *text, size_t cap) {
  uint8_t *page = malloc(1 << 20);
  uint8_t texts[768], next[256];
  int32_t next_len = 0, alen = 0, after_prefix = 0, lines = 0;
  uint8_t after[256];
  size_t t = 0, plen = strlen(prefix), dlen = strlen(delim);
  for (;;) {
    memcpy(texts, prefix, plen);
    memcpy(texts + plen, delim, dlen);
    memcpy(texts + plen + dlen, after, (size_t)alen);
    int32_t params[7] = {(int32_t)plen, (int32_t)dlen, alen, after_prefix, max, 1 << 20, 0};
    double misses[1 + 2 * max]; /* (no records here: only its count is written) */
    int32_t n = fsgw_index_list(ix, texts, params, page, next, &next_len, misses);
    if (n < 0) break;
    for (char *p = (char *)page; p < (char *)page + n;) {
      char *end = memchr(p, '\n', (size_t)((char *)page + n - p));
      int is_prefix = strncmp(p, "{\"prefix\":\"", 11) == 0;
      if (is_prefix && t + 2 < cap) {
        text[t++] = 'P';
        text[t++] = ':';
      }
      for (char *q = p + (is_prefix ? 11 : 8); !(q[0] == '"' && (q[1] == ',' || q[1] == '}')) && t < cap; q++) {
        if (*q == '\\') q++;
        text[t++] = *q;
      }
      if (t < cap) text[t++] = '\n';
      lines++;
      p = end + 1;
    }
    if (next_len == 0) break;
    after_prefix = next[0] == 'P';
    alen = next_len - 1;
    memcpy(after, next + 1, (size_t)alen);
  }
  text[t < cap ? t : cap - 1] = 0;
  free(page);
  return lines;
}

static void test_random(fsgw_index *ix) {
  srand(7);
  const char alphabet[] = "ab/c\"x-\xc3\xa9";
  for (int i = 0; i < N; i++) {
    int l = 1 + rand() % 30;
    for (int j = 0; j < l; j++) keys[i][j] = alphabet[rand() % (int)(sizeof alphabet - 1)];
    sprintf(keys[i] + l, "%d", i); /* unique */
  }
  for (int step = 0; step < 60000; step++) {
    int i = rand() % N;
    if (rand() % 3) {
      fsgw_index_add(ix, (uint8_t *)keys[i], (int32_t)strlen(keys[i]), rand() % 2 ? meta_md5 : meta);
      present[i] = 1;
    } else {
      fsgw_index_remove(ix, (uint8_t *)keys[i], (int32_t)strlen(keys[i]));
      present[i] = 0;
    }
  }
  char **ref = malloc(N * sizeof *ref);
  int n = 0;
  for (int i = 0; i < N; i++)
    if (present[i]) ref[n++] = keys[i];
  qsort(ref, (size_t)n, sizeof *ref, byte_order);
  check(fsgw_index_count(ix) == n, "the count is the reference set's after 60,000 random adds and removes");
  int agree = 1;
  for (int i = 0; i < N; i++) agree &= fsgw_index_has(ix, (uint8_t *)keys[i], (int32_t)strlen(keys[i])) == present[i];
  check(agree, "has: each key held or not as the reference set says");
  check(fsgw_index_has(ix, (const uint8_t *)"never-added", 11) == 0, "has: a key never added is absent");
  size_t cap = (size_t)N * 50;
  char *text = malloc(cap), *want = malloc(cap);
  size_t w = 0;
  for (int i = 0; i < n; i++) w += (size_t)sprintf(want + w, "%s\n", ref[i]);
  int lines = list_all(ix, "", "", 97, text, cap);
  check(lines == n && strcmp(text, want) == 0, "every key listed once, in byte order, across pages of 97");
  free(text);
  free(want);
  free(ref);
}

/* An entry with an MD5 lists it; an overwrite that drops or adds it keeps every other entry whole. */
static void test_md5(void) {
  fsgw_index *ix = fsgw_index_open(getenv("INDEX_DIR"), 4, 2);
  const char *names[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) fsgw_index_add(ix, (const uint8_t *)names[i], 1, meta);
  check(fsgw_index_add(ix, (const uint8_t *)"b", 1, meta_md5) == 0, "an overwrite with an MD5 is not a new key");
  uint8_t page[4096], next[256];
  int32_t next_len = 0;
  int32_t params[7] = {0, 0, 0, 0, 10, sizeof page, 0};
  double misses[1 + 2 * 10];
  int32_t n = fsgw_index_list(ix, (const uint8_t *)"", params, page, next, &next_len, misses);
  page[n > 0 ? n : 0] = 0;
  const char *b = strstr((char *)page, "{\"key\":\"b\"");
  check(n > 0 && b != NULL && strstr(b, "\"md5\":\"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\"}\n{\"key\":\"c\"") != NULL, "the entry with an MD5 lists it, the next entry follows whole");
  const char *first = strstr((char *)page, "\"md5\"");
  check(first > b && strstr(first + 1, "\"md5\"") == NULL, "only that entry lists an MD5");
  fsgw_index_add(ix, (const uint8_t *)"b", 1, meta);
  n = fsgw_index_list(ix, (const uint8_t *)"", params, page, next, &next_len, misses);
  page[n > 0 ? n : 0] = 0;
  check(n > 0 && strstr((char *)page, "\"md5\"") == NULL && strstr((char *)page, "{\"key\":\"c\"") != NULL && fsgw_index_count(ix) == 3, "an overwrite without an MD5 drops it; three keys still");
  fsgw_index_close(ix);
}

/* A volume's record over a key's file says so (3: the file is the caller's to remove); over a
 * record, or a file over a file, it does not. */
static void test_record_over_file(void) {
  fsgw_index *ix = fsgw_index_open(getenv("INDEX_DIR"), 4, 2);
  uint8_t record[FSGW_INDEX_RECORD_META_BYTES] = {0};
  record[16] = 4 | 1; /* META_VOLUME | META_DIGEST */
  record[FSGW_INDEX_RECORD_AT + 4 + 8] = 7; /* sequence number 7 */
  check(fsgw_index_add(ix, (const uint8_t *)"f", 1, meta) == 1, "a file's key is added");
  check(fsgw_index_add(ix, (const uint8_t *)"f", 1, meta) == 0, "a file over a file: replaced (0)");
  check(fsgw_index_add(ix, (const uint8_t *)"f", 1, record) == 3, "a record over a file: 3");
  record[FSGW_INDEX_RECORD_AT + 4 + 8] = 8;
  check(fsgw_index_add(ix, (const uint8_t *)"f", 1, record) == 0, "a later record over a record: 0");
  check(fsgw_index_add(ix, (const uint8_t *)"r", 1, record) == 1, "a record's new key is added (1)");
  check(fsgw_index_count(ix) == 2, "two keys");
  fsgw_index_close(ix);
}

static void test_prefixes(void) {
  fsgw_index *ix = fsgw_index_open(getenv("INDEX_DIR"), 4, 2);
  const char *k[] = {"a", "a/x", "a/b/c", "a/b/d", "ab", "b", "z/z/z"};
  for (size_t i = 0; i < sizeof k / sizeof *k; i++) fsgw_index_add(ix, (const uint8_t *)k[i], (int32_t)strlen(k[i]), meta);
  char text[512];
  list_all(ix, "", "/", 1000, text, sizeof text);
  check(strcmp(text, "a\nab\nb\nP:a/\nP:z/\n") == 0, "a delimiter rolls deeper keys into common prefixes, after the entries");
  list_all(ix, "", "/", 1, text, sizeof text);
  check(strcmp(text, "a\nP:a/\nab\nb\nP:z/\n") == 0, "pages of one continue after a common prefix past every key under it");
  list_all(ix, "a/", "/", 1000, text, sizeof text);
  check(strcmp(text, "a/x\nP:a/b/\n") == 0, "a prefix and a delimiter together");
  fsgw_index_close(ix);
}

static fsgw_index *shared;
static void *writer(void *arg) {
  int base = *(int *)arg;
  char key[32];
  for (int i = 0; i < 20000; i++) {
    int len = sprintf(key, "w%d/%05d", base, i % 3000);
    if (i % 4 == 3) fsgw_index_remove(shared, (uint8_t *)key, len);
    else fsgw_index_add(shared, (uint8_t *)key, len, meta);
  }
  return NULL;
}

static void test_concurrent(void) {
  shared = fsgw_index_open(getenv("INDEX_DIR"), 4, 2);
  pthread_t w[2];
  int ids[2] = {0, 1};
  for (int i = 0; i < 2; i++) pthread_create(&w[i], NULL, writer, &ids[i]);
  char *text = malloc(1 << 20);
  int ok = 1;
  for (int r = 0; r < 10; r++) {
    list_all(shared, "", "", 50, text, 1 << 20);
    /* Whatever the writers did meanwhile, a listing is in order with no key twice. */
    for (char *p = text, *q; (q = strchr(p, '\n')) != NULL && q[1] != 0; p = q + 1) {
      char *q2 = strchr(q + 1, '\n');
      if (q2 == NULL) break;
      size_t a = (size_t)(q - p), b = (size_t)(q2 - q - 1);
      int c = memcmp(p, q + 1, a < b ? a : b);
      if (c > 0 || (c == 0 && a >= b)) ok = 0;
    }
  }
  for (int i = 0; i < 2; i++) pthread_join(w[i], NULL);
  check(ok, "listings made while two writers add and remove are in order, no key twice");
  free(text);
  fsgw_index_close(shared);
}

/* A volume record's facts: volume, offset, sequence number. */
static void record_at(uint8_t *r, uint32_t volume, int64_t offset, int64_t seq) {
  memset(r, 0, FSGW_INDEX_RECORD_META_BYTES);
  r[16] = 4; /* META_VOLUME */
  uint8_t *loc = r + FSGW_INDEX_RECORD_AT;
  for (int i = 0; i < 4; i++) loc[i] = (uint8_t)(volume >> (8 * i));
  for (int i = 0; i < 8; i++) loc[4 + i] = (uint8_t)((uint64_t)offset >> (8 * i));
  for (int i = 0; i < 8; i++) loc[12 + i] = (uint8_t)((uint64_t)seq >> (8 * i));
}

#define K(s) (const uint8_t *)(s), (int32_t)strlen(s)

/* Dead bodies: every call that makes a key's record give way notes its volume; a volume's go with
 * it; the set's bound; a checkpoint keeps them. */
static void test_dead(void) {
  fsgw_index *ix = fsgw_index_new();
  uint8_t r[FSGW_INDEX_RECORD_META_BYTES];
  record_at(r, 1, 0, 1);
  fsgw_index_add(ix, K("k"), r);
  check(fsgw_index_dead_elsewhere(ix, K("k"), 9) == 0, "dead: a live record is not dead");
  record_at(r, 2, 0, 2);
  fsgw_index_add(ix, K("k"), r);
  check(fsgw_index_dead_elsewhere(ix, K("k"), 9) == 1, "dead: an overwritten record is dead in its volume");
  check(fsgw_index_dead_elsewhere(ix, K("k"), 1) == 0, "dead: its own volume is not elsewhere");
  check(fsgw_index_remove_record(ix, K("k"), 2) == 1 && fsgw_index_dead_elsewhere(ix, K("k"), 1) == 2, "dead: a deleted record is dead in its volume");
  check(fsgw_index_dead_forget(ix, 1) == 1 && fsgw_index_dead_elsewhere(ix, K("k"), 9) == 2, "dead: a volume's dead bodies go with it");
  check(fsgw_index_dead_forget(ix, 2) == 1 && fsgw_index_dead_elsewhere(ix, K("k"), 9) == 0, "dead: none left once both volumes are gone");
  record_at(r, 4, 0, 5);
  fsgw_index_add(ix, K("j"), r);
  record_at(r, 5, 0, 4);
  check(fsgw_index_add(ix, K("j"), r) == 2 && fsgw_index_dead_elsewhere(ix, K("j"), 4) == 5, "dead: a record that lands after a later one is dead as it lands");
  check(fsgw_index_move_record(ix, K("j"), 5, 6, 64) == 1 && fsgw_index_dead_elsewhere(ix, K("j"), 5) == 4, "dead: a compaction's move leaves the source's body dead");
  check(fsgw_index_move_record(ix, K("j"), 3, 7, 0) == 0 && fsgw_index_dead_elsewhere(ix, K("j"), 4) > 0, "dead: a copy that lost its race is dead where it landed");
  fsgw_index_dead_forget(ix, 4);
  fsgw_index_dead_forget(ix, 5);
  check(fsgw_index_dead_elsewhere(ix, K("j"), 9) == 7, "dead: ... in the copy's volume");
  record_at(r, 8, 0, 9);
  fsgw_index_add(ix, K("f"), r);
  fsgw_index_add(ix, K("f"), meta);
  check(fsgw_index_dead_elsewhere(ix, K("f"), 9) == 8, "dead: a file over a record leaves the record dead");
  fsgw_index_add(ix, K("f"), meta);
  fsgw_index_remove(ix, K("f"));
  check(fsgw_index_dead_elsewhere(ix, K("f"), 8) == 0, "dead: a file's overwrite and removal note nothing");
  /* A checkpoint keeps them: saved, loaded into a new index. */
  char path[] = "/tmp/fsgw-dead-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  const uint8_t head[4] = {1, 2, 3, 4};
  check(fsgw_index_save_records(ix, path, head, 4) == 1, "dead: a checkpoint of one record");
  fsgw_index *back = fsgw_index_new();
  check(fsgw_index_load_records(back, path, 4) == 1, "dead: loaded");
  check(fsgw_index_dead_elsewhere(back, K("j"), 9) == 7 && fsgw_index_dead_elsewhere(back, K("f"), 9) == 8 && fsgw_index_dead_elsewhere(back, K("k"), 9) == 0, "dead: the checkpoint keeps the dead bodies");
  uint32_t kept[] = {8};
  fsgw_index_drop_missing(back, kept, 1);
  check(fsgw_index_dead_elsewhere(back, K("j"), 9) == 0 && fsgw_index_dead_elsewhere(back, K("f"), 9) == 8, "dead: dropping missing volumes forgets their dead bodies");
  fsgw_index_close(back);
  /* The bound: past it the index cannot say, and a checkpoint says so too. */
  fsgw_index_dead_limit(ix, 3);
  for (int i = 0; i < 4; i++) {
    char key[16];
    snprintf(key, sizeof key, "b%d", i);
    fsgw_index_dead_add(ix, K(key), 10);
  }
  double st[3];
  fsgw_index_dead_stats(ix, st);
  check(st[0] == 3 && st[2] == 1 && fsgw_index_dead_elsewhere(ix, K("nothing-dead"), 9) == -1, "dead: past its bound the set is full: unknown for every key");
  fsgw_index_save_records(ix, path, head, 4);
  back = fsgw_index_new();
  fsgw_index_load_records(back, path, 4);
  check(fsgw_index_dead_elsewhere(back, K("nothing-dead"), 9) == -1, "dead: a checkpoint of a full set loads full");
  fsgw_index_close(back);
  unlink(path);
  fsgw_index_close(ix);
}

/* The set against a reference: 200,000 dead bodies over 64 volumes, half the volumes forgotten
 * (deletions that move probes back), every answer checked. A hash shared by two keys may only
 * answer "elsewhere" too often, never too rarely. */
static void test_dead_random(void) {
  enum { KEYS = 50000, VOLS = 64 };
  fsgw_index *ix = fsgw_index_new();
  static uint64_t where[KEYS]; /* a bit per volume */
  srand(7);
  for (int n = 0; n < 200000; n++) {
    int k = rand() % KEYS, v = 1 + rand() % (VOLS - 1);
    char key[16];
    snprintf(key, sizeof key, "d%d", k);
    fsgw_index_dead_add(ix, K(key), (uint32_t)v);
    where[k] |= 1ull << v;
  }
  for (int v = 1; v < VOLS; v += 2) {
    fsgw_index_dead_forget(ix, (uint32_t)v);
    for (int k = 0; k < KEYS; k++) where[k] &= ~(1ull << v);
  }
  int missed = 0, extra = 0;
  for (int k = 0; k < KEYS; k++) {
    char key[16];
    snprintf(key, sizeof key, "d%d", k);
    uint32_t v = 2 + 2 * (uint32_t)(k % 31);
    int want = (where[k] & ~(1ull << v)) != 0;
    int32_t got = fsgw_index_dead_elsewhere(ix, K(key), v);
    if (want && got <= 0) missed++;
    if (want && got > 0 && !((where[k] >> got) & 1)) missed++; /* named a volume that holds none */
    if (!want && got != 0) extra++;
  }
  double st[3];
  fsgw_index_dead_stats(ix, st);
  int64_t noted = 0;
  for (int k = 0; k < KEYS; k++) noted += __builtin_popcountll(where[k]);
  check(missed == 0, "dead: 200,000 notes, half the volumes forgotten: no dead body missed");
  check(extra < KEYS / 1000, "dead: and hardly any named that is not there (shared hashes only)");
  check(st[0] == (double)noted, "dead: the count is the reference's");
  fsgw_index_close(ix);
}

int main(void) {
  char dir[] = "/tmp/fsgw-index-test-XXXXXX";
  if (mkdtemp(dir) == NULL) return 2;
  for (int s = 0; s < 4; s++) {
    char shard[64];
    snprintf(shard, sizeof shard, "%s/%02x", dir, s);
    mkdir(shard, 0700);
  }
  setenv("INDEX_DIR", dir, 1);
  meta_md5[16] = 3;
  fsgw_index *ix = fsgw_index_open(dir, 4, 2);
  check(ix != NULL, "opens over its shard directories");
  check(fsgw_index_has(ix, (const uint8_t *)"k", 1) == -1, "has: before a load the index cannot say a key is absent");
  check(fsgw_index_load(ix, 2) == 0, "loads an empty data directory");
  check(fsgw_index_has(ix, (const uint8_t *)"k", 1) == 0, "has: after the load, absent");
  test_random(ix);
  /* A failed addition may have lost a key: from then on an absence is not an answer. */
  check(fsgw_index_add(ix, (const uint8_t *)"", 0, meta) == -EINVAL, "add: a key of no bytes is refused");
  check(fsgw_index_has(ix, (const uint8_t *)"never-added", 11) == -1, "has: after a failed addition, -1 (unknown), not absent");
  check(fsgw_index_has(ix, (uint8_t *)keys[0], (int32_t)strlen(keys[0])) == -1, "has: and -1 for every key");
  fsgw_index_close(ix);
  meta_md5[16] = 3;
  for (int i = 0; i < 16; i++) meta_md5[49 + i] = (uint8_t)(0xa0 + i);
  test_md5();
  test_record_over_file();
  test_prefixes();
  test_concurrent();
  test_dead();
  test_dead_random();
  for (int s = 0; s < 4; s++) {
    char shard[64];
    snprintf(shard, sizeof shard, "%s/%02x", dir, s);
    rmdir(shard);
  }
  rmdir(dir);
  printf("%d checks, %d failed\n", checks, failed);
  return failed != 0;
}
