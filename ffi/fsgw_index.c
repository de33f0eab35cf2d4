/* fsgw_index: the file store's ordered index of keys (see fsgw_index.h). */
#define _GNU_SOURCE
#include "fsgw_index.h"
#include "fsgw_pool.h"
#include "fsgw_volume.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* A leaf: entries [length byte][key bytes][META_BYTES], sorted, packed, in an allocation of `cap`
 * data bytes that follows what they take (within LEAF_SLACK), so that memory stays close to the
 * entries' own bytes whatever the order keys came in. */
typedef struct leaf {
  uint32_t used;
  uint32_t count;
  uint32_t cap;
  uint8_t data[];
} leaf;

/* An entry's facts (what a listing shows), after its key: size (int64 LE), mtime in ms (int64 LE),
 * flags (META_DIGEST: the file records a digest; META_MD5: and an MD5), the digest (32 bytes), and
 * with META_MD5 the MD5 (16 bytes): only the keys that have one pay for it. */
#define META_BYTES 49
#define META_DIGEST 1
#define META_MD5 2
/* The body is a record of a volume (fsgw_volume.h): its facts are size, time, flags and the location
 * (FSGW_INDEX_RECORD_META_BYTES); the digests stay in the record's header (flags say which it has). */
#define META_VOLUME 4
/* The bytes of the facts at meta, and of the entry at e ([len][key][facts]). */
static inline uint32_t meta_bytes(const uint8_t *meta) {
  return (meta[16] & META_VOLUME) ? FSGW_INDEX_RECORD_META_BYTES : META_BYTES + ((meta[16] & META_MD5) ? 16u : 0u);
}
static inline uint32_t entry_bytes(const uint8_t *e) { return 1u + e[0] + meta_bytes(e + 1 + e[0]); }
/* The most an entry of a key of len bytes can take (a file's, with both digests). */
#define ENTRY_BYTES_MAX(len) (1u + (uint32_t)(len) + FSGW_INDEX_META_BYTES_MAX)
/* Room a leaf keeps beyond its entries, so that every addition does not reallocate it. */
#define LEAF_SLACK 256

struct fsgw_index {
  pthread_rwlock_t lock;
  leaf **leaves; /* sorted by their first key */
  uint64_t *first8; /* each leaf's first key's first 8 bytes, big-endian: the search stays in cache */
  size_t nleaves, leaves_cap;
  int64_t count;
  int64_t bytes; /* the leaves' allocations */
  int32_t shards;
  int *shard_fd; /* O_PATH descriptors of the shard directories */
  int volumes_fd; /* O_PATH descriptor of the volumes' directory (-1: none), where a listing reads digests */
  /* Every key of the shard directories is here: set once a load ended well, cleared for good when
   * an addition fails (fsgw_index_has answers a key's absence only while it holds). */
  int complete;
  /* Dead bodies: which volumes hold a body record of a key that is not the key's live one (an
   * overwritten or deleted record, a compaction's copy that lost its race), so that a compaction
   * can drop a tombstone once no other volume holds a body it deletes (fsgw_index_dead_elsewhere).
   * A set of (a 32-bit hash of the key, the volume) kept under the index's lock by the calls that
   * make a body dead. A hash shared by two keys only keeps a tombstone longer. */
  struct dead_part *dead; /* DEAD_PARTS of them, by the hash's top bits; NULL until the first */
  int64_t dead_count;
  int64_t dead_max; /* fsgw_index_dead_limit */
  /* The set reached dead_max (or could not grow) and missed a dead body: from then on it cannot
   * say that no other volume holds one, and every tombstone is kept (until a start that reads the
   * volumes whole builds it again). */
  int dead_full;
};

/* One part of the set: open addressing, 8 bytes a slot (hash << 32 | volume; 0 empty), linear
 * probing, at most 3/4 full. The set is split in parts so that a part's doubling, and the walk
 * that forgets a removed volume, hold the lock for a part's slots at a time: one table of 4
 * million took 220 ms to double and 37 ms to walk, with every loop waiting on the index. */
typedef struct dead_part {
  uint64_t *slots;
  uint32_t cap; /* 0 or a power of two */
  uint32_t count;
} dead_part;

/* Dead bodies an index notes at most unless told otherwise (fsgw_index_dead_limit). */
#define DEAD_MAX_DEFAULT (1 << 22)
#define DEAD_PARTS 256
/* A part's first size, in slots. */
#define DEAD_SLOTS_MIN 16

/* A leaf built at load is filled to this much: an addition then often fits without a split. */
#define LOAD_FILL (FSGW_INDEX_LEAF_BYTES * 15 / 16)
#define KEY_MAX 255

static void put_i64(uint8_t *out, int64_t v) {
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(u >> (8 * i));
}

static int64_t get_i64(const uint8_t *in) {
  uint64_t u = 0;
  for (int i = 7; i >= 0; i--) u = (u << 8) | in[i];
  return (int64_t)u;
}

/* A volume entry's location (its facts at meta, from FSGW_INDEX_RECORD_AT): the volume, the
 * record's offset in it, and its sequence number. */
static uint32_t volume_of(const uint8_t *meta) {
  const uint8_t *loc = meta + FSGW_INDEX_RECORD_AT;
  return (uint32_t)loc[0] | (uint32_t)loc[1] << 8 | (uint32_t)loc[2] << 16 | (uint32_t)loc[3] << 24;
}
static int64_t offset_of(const uint8_t *meta) { return get_i64(meta + FSGW_INDEX_RECORD_AT + 4); }
static int64_t seq_of(const uint8_t *meta) { return get_i64(meta + FSGW_INDEX_RECORD_AT + 12); }

/* ---- dead bodies (the set in struct fsgw_index; its lock held by the caller) ---- */

/* A key's 32-bit hash for the set (FNV-1a, then a 64-bit finaliser): never 0, so that no slot of
 * a dead body is 0 (empty). */
static uint32_t dead_hash(const uint8_t *key, uint32_t len) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint32_t i = 0; i < len; i++) {
    h ^= key[i];
    h *= 0x100000001b3ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  uint32_t r = (uint32_t)(h >> 32);
  return r == 0 ? 1 : r;
}

static inline uint64_t dead_slot(uint32_t hash, uint32_t volume) { return (uint64_t)hash << 32 | volume; }
/* A slot's part (the hash's top 8 bits), and where its probe starts there (its low bits). */
static inline dead_part *dead_part_of(const fsgw_index *ix, uint64_t slot) { return &ix->dead[slot >> 56]; }
static inline uint32_t dead_home(uint64_t slot, uint32_t cap) { return (uint32_t)(slot >> 32) & (cap - 1); }

/* Doubles a part (or makes its first table): 0, or -ENOMEM (the part as it was). */
static int dead_grow(dead_part *p) {
  uint32_t cap = p->cap == 0 ? DEAD_SLOTS_MIN : p->cap * 2;
  uint64_t *table = calloc(cap, sizeof *table);
  if (table == NULL) return -ENOMEM;
  for (uint32_t i = 0; i < p->cap; i++) {
    if (p->slots[i] == 0) continue;
    uint32_t j = dead_home(p->slots[i], cap);
    while (table[j] != 0) j = (j + 1) & (cap - 1);
    table[j] = p->slots[i];
  }
  free(p->slots);
  p->slots = table;
  p->cap = cap;
  return 0;
}

/* Notes a slot (once): past dead_max, or when the set cannot grow, the set is full for good. */
static void dead_put(fsgw_index *ix, uint64_t slot) {
  if (ix->dead_full) return;
  if (ix->dead == NULL && (ix->dead = calloc(DEAD_PARTS, sizeof *ix->dead)) == NULL) {
    ix->dead_full = 1;
    return;
  }
  dead_part *p = dead_part_of(ix, slot);
  if ((p->count + 1) * 4 > (uint64_t)p->cap * 3 && dead_grow(p) != 0) {
    ix->dead_full = 1;
    return;
  }
  uint32_t mask = p->cap - 1;
  for (uint32_t i = dead_home(slot, p->cap);; i = (i + 1) & mask) {
    if (p->slots[i] == slot) return;
    if (p->slots[i] != 0) continue;
    if (ix->dead_count >= ix->dead_max) {
      ix->dead_full = 1;
      return;
    }
    p->slots[i] = slot;
    p->count++;
    ix->dead_count++;
    return;
  }
}

/* The body of key in volume is dead. */
static void dead_note(fsgw_index *ix, const uint8_t *key, uint32_t len, uint32_t volume) { dead_put(ix, dead_slot(dead_hash(key, len), volume)); }

/* Empties slot i of a part, moving back the slots after it whose probe passes i (linear probing's
 * deletion: no marker left behind, so probes stay as short as the part is full). */
static void dead_delete_at(dead_part *p, uint32_t i) {
  uint32_t mask = p->cap - 1;
  for (uint32_t j = (i + 1) & mask; p->slots[j] != 0; j = (j + 1) & mask) {
    uint32_t home = dead_home(p->slots[j], p->cap);
    /* The slot at j may move to i unless its home lies cyclically in (i, j]. */
    int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (stays) continue;
    p->slots[i] = p->slots[j];
    i = j;
  }
  p->slots[i] = 0;
  p->count--;
}

static int has_volume(const uint32_t *ids, int32_t n, uint32_t volume);

/* Forgets the dead bodies of volumes that are gone: `volume`, or with `kept` every volume not among
 * the n ids (sorted ascending). The index's lock is taken for one part at a time. Their number. */
static int64_t dead_forget(fsgw_index *ix, uint32_t volume, int kept, const uint32_t *ids, int32_t n) {
  int64_t forgotten = 0;
  for (int part = 0; part < DEAD_PARTS; part++) {
    pthread_rwlock_wrlock(&ix->lock);
    dead_part *p = ix->dead == NULL ? NULL : &ix->dead[part];
    for (uint32_t i = 0; p != NULL && i < p->cap;) {
      uint64_t s = p->slots[i];
      uint32_t v = (uint32_t)s;
      if (s != 0 && (kept ? !has_volume(ids, n, v) : v == volume)) {
        dead_delete_at(p, i); /* a later slot may have moved to i: looked at again */
        ix->dead_count--;
        forgotten++;
      } else {
        i++;
      }
    }
    pthread_rwlock_unlock(&ix->lock);
  }
  return forgotten;
}

static void dead_free(fsgw_index *ix) {
  if (ix->dead == NULL) return;
  for (int part = 0; part < DEAD_PARTS; part++) free(ix->dead[part].slots);
  free(ix->dead);
}

static int compare(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c != 0) return c;
  return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int starts_with(const uint8_t *key, uint32_t len, const uint8_t *prefix, uint32_t plen) {
  return len >= plen && memcmp(key, prefix, plen) == 0;
}

/* ---- leaves ---- */

static leaf *leaf_new(fsgw_index *ix, uint32_t cap) {
  leaf *l = malloc(sizeof *l + cap);
  if (l == NULL) return NULL;
  l->used = l->count = 0;
  l->cap = cap;
  ix->bytes += (int64_t)(sizeof *l + cap);
  return l;
}

/* Resizes l's allocation to `cap` data bytes (cap >= used); NULL when it cannot grow. */
static leaf *leaf_resize(fsgw_index *ix, leaf *l, uint32_t cap) {
  leaf *r = realloc(l, sizeof *l + cap);
  if (r == NULL) return NULL;
  ix->bytes += (int64_t)cap - (int64_t)r->cap;
  r->cap = cap;
  return r;
}

static void leaf_free(fsgw_index *ix, leaf *l) {
  ix->bytes -= (int64_t)(sizeof *l + l->cap);
  free(l);
}

/* A key's first 8 bytes as a big-endian number, zero-padded: keys hold no NUL byte, so these
 * numbers order as the keys' first 8 bytes do. */
static uint64_t head8(const uint8_t *key, uint32_t len) {
  uint64_t h = 0;
  for (uint32_t i = 0; i < 8; i++) h = (h << 8) | (i < len ? key[i] : 0);
  return h;
}

/* After leaf i's first entry may have changed. */
static void refresh_first(fsgw_index *ix, size_t i) {
  const leaf *l = ix->leaves[i];
  ix->first8[i] = l->used == 0 ? 0 : head8(l->data + 1, l->data[0]);
}

static int leaves_insert(fsgw_index *ix, size_t at, leaf *l) {
  if (ix->nleaves == ix->leaves_cap) {
    size_t cap = ix->leaves_cap == 0 ? 64 : ix->leaves_cap * 2;
    leaf **grown = realloc(ix->leaves, cap * sizeof *grown);
    if (grown == NULL) return -ENOMEM;
    ix->leaves = grown;
    uint64_t *firsts = realloc(ix->first8, cap * sizeof *firsts);
    if (firsts == NULL) return -ENOMEM; /* leaves_cap unchanged: the next call grows both again */
    ix->first8 = firsts;
    ix->leaves_cap = cap;
  }
  memmove(ix->leaves + at + 1, ix->leaves + at, (ix->nleaves - at) * sizeof *ix->leaves);
  memmove(ix->first8 + at + 1, ix->first8 + at, (ix->nleaves - at) * sizeof *ix->first8);
  ix->leaves[at] = l;
  ix->nleaves++;
  refresh_first(ix, at);
  return 0;
}

/* The leaf where key belongs: the last whose first key is <= key (the first leaf for a key below all). */
static size_t leaf_of(const fsgw_index *ix, const uint8_t *key, uint32_t len) {
  size_t lo = 0, hi = ix->nleaves; /* answer in [lo, hi) */
  uint64_t h = head8(key, len);
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    uint64_t f = ix->first8[mid];
    /* The leaf itself is read only when the first 8 bytes tie. */
    int c = f < h ? -1 : f > h ? 1 : compare(ix->leaves[mid]->data + 1, ix->leaves[mid]->data[0], key, len);
    if (c <= 0) lo = mid;
    else hi = mid;
  }
  return lo;
}

/* Offset in l of the first entry >= key; *equal set when it is key itself. */
static uint32_t offset_in(const leaf *l, const uint8_t *key, uint32_t len, int *equal) {
  uint32_t off = 0;
  *equal = 0;
  while (off < l->used) {
    int c = compare(l->data + off + 1, l->data[off], key, len);
    if (c >= 0) {
      *equal = c == 0;
      return off;
    }
    off += entry_bytes(l->data + off);
  }
  return off;
}

int32_t fsgw_index_add(fsgw_index *ix, const uint8_t *key, int32_t len, const uint8_t *meta) {
  pthread_rwlock_wrlock(&ix->lock);
  int32_t rc = 1;
  if (len < 1 || len > KEY_MAX) {
    rc = -EINVAL; /* a key the store never gives: still a key of its not held */
    goto out;
  }
  if (ix->nleaves == 0) {
    leaf *l = leaf_new(ix, LEAF_SLACK);
    if (l == NULL || leaves_insert(ix, 0, l) != 0) {
      if (l != NULL) leaf_free(ix, l);
      rc = -ENOMEM;
      goto out;
    }
  }
  size_t i = leaf_of(ix, key, (uint32_t)len);
  leaf *l = ix->leaves[i];
  int equal;
  uint32_t off = offset_in(l, key, (uint32_t)len, &equal);
  uint32_t need = 1u + (uint32_t)len + meta_bytes(meta);
  if (equal) {
    /* A volume's record never replaces a later record of the same key (writes of one key on two
     * loops, or two writes' completions out of order): the sequence numbers decide, as at start. */
    const uint8_t *held = l->data + off + 1 + len;
    int same = (meta[16] & META_VOLUME) && (held[16] & META_VOLUME) && volume_of(meta) == volume_of(held) && offset_of(meta) == offset_of(held);
    if ((meta[16] & META_VOLUME) && (held[16] & META_VOLUME) && seq_of(held) >= seq_of(meta)) {
      if (!same) dead_note(ix, key, (uint32_t)len, volume_of(meta)); /* written, and dead as it lands */
      rc = 2;
      goto out;
    }
    /* The record held gives way (to a later one, or to a file): its body stays in its volume, dead. */
    if ((held[16] & META_VOLUME) && !same) dead_note(ix, key, (uint32_t)len, volume_of(held));
    /* There: its facts change (an overwrite), in place when they take as many bytes. A file's
     * entry that becomes a record's says so (3): its file is the caller's to remove. */
    int32_t replaced = (meta[16] & META_VOLUME) && !(held[16] & META_VOLUME) ? 3 : 0;
    uint32_t old = entry_bytes(l->data + off);
    if (old == need) {
      memcpy(l->data + off + 1 + len, meta, meta_bytes(meta));
      rc = replaced;
      goto out;
    }
    /* Else the old entry goes and the new one is inserted where it was (counted as before). */
    memmove(l->data + off, l->data + off + old, l->used - off - old);
    l->used -= old;
    l->count--;
    ix->count--;
    rc = replaced;
  }
  if (l->used + need > FSGW_INDEX_LEAF_BYTES) {
    /* Split: the entries from the middle on move to a new leaf after this one. */
    uint32_t cut = 0, n = 0;
    while (cut < l->used / 2) {
      cut += entry_bytes(l->data + cut);
      n++;
    }
    leaf *r = leaf_new(ix, l->used - cut + LEAF_SLACK);
    if (r == NULL || leaves_insert(ix, i + 1, r) != 0) {
      if (r != NULL) leaf_free(ix, r);
      rc = -ENOMEM;
      goto out;
    }
    memcpy(r->data, l->data + cut, l->used - cut);
    r->used = l->used - cut;
    r->count = l->count - n;
    l->used = cut;
    l->count = n;
    refresh_first(ix, i + 1);
    leaf *shrunk = leaf_resize(ix, l, cut + LEAF_SLACK);
    if (shrunk != NULL) ix->leaves[i] = l = shrunk;
    if (off >= cut) {
      i++;
      l = r;
      off -= cut;
    }
  }
  if (l->used + need > l->cap) {
    uint32_t cap = l->used + need + LEAF_SLACK;
    leaf *grown = leaf_resize(ix, l, cap < FSGW_INDEX_LEAF_BYTES ? cap : FSGW_INDEX_LEAF_BYTES);
    if (grown == NULL) {
      rc = -ENOMEM;
      goto out;
    }
    ix->leaves[i] = l = grown;
  }
  memmove(l->data + off + need, l->data + off, l->used - off);
  l->data[off] = (uint8_t)len;
  memcpy(l->data + off + 1, key, (size_t)len);
  memcpy(l->data + off + 1 + len, meta, meta_bytes(meta));
  l->used += need;
  l->count++;
  ix->count++;
  if (off == 0) refresh_first(ix, i);
out:
  if (rc < 0) ix->complete = 0; /* a key may be missing now, whatever failed: absences are no longer answers */
  pthread_rwlock_unlock(&ix->lock);
  return rc;
}

int32_t fsgw_index_has(fsgw_index *ix, const uint8_t *key, int32_t len) {
  pthread_rwlock_rdlock(&ix->lock);
  int32_t rc = -1;
  if (ix->complete) {
    int equal = 0;
    if (len >= 1 && len <= KEY_MAX && ix->nleaves > 0) offset_in(ix->leaves[leaf_of(ix, key, (uint32_t)len)], key, (uint32_t)len, &equal);
    rc = equal;
  }
  pthread_rwlock_unlock(&ix->lock);
  return rc;
}

/* Removes key; the write lock held. 1 when removed, 0 when it was not there. */
static int32_t remove_locked(fsgw_index *ix, const uint8_t *key, int32_t len) {
  int32_t rc = 0;
  if (ix->nleaves > 0) {
    size_t i = leaf_of(ix, key, (uint32_t)len);
    leaf *l = ix->leaves[i];
    int equal;
    uint32_t off = offset_in(l, key, (uint32_t)len, &equal);
    if (equal) {
      const uint8_t *held = l->data + off + 1 + len;
      if (held[16] & META_VOLUME) dead_note(ix, key, (uint32_t)len, volume_of(held)); /* its body stays in its volume */
      uint32_t size = entry_bytes(l->data + off);
      memmove(l->data + off, l->data + off + size, l->used - off - size);
      l->used -= size;
      l->count--;
      ix->count--;
      rc = 1;
      if (l->count == 0 && ix->nleaves > 1) {
        leaf_free(ix, l);
        memmove(ix->leaves + i, ix->leaves + i + 1, (ix->nleaves - i - 1) * sizeof *ix->leaves);
        memmove(ix->first8 + i, ix->first8 + i + 1, (ix->nleaves - i - 1) * sizeof *ix->first8);
        ix->nleaves--;
      } else {
        if (l->cap - l->used > 2 * LEAF_SLACK) {
          leaf *shrunk = leaf_resize(ix, l, l->used + LEAF_SLACK);
          if (shrunk != NULL) ix->leaves[i] = shrunk;
        }
        if (off == 0) refresh_first(ix, i);
      }
    }
  }
  return rc;
}

int32_t fsgw_index_remove(fsgw_index *ix, const uint8_t *key, int32_t len) {
  if (len < 1 || len > KEY_MAX) return 0;
  pthread_rwlock_wrlock(&ix->lock);
  int32_t rc = remove_locked(ix, key, len);
  pthread_rwlock_unlock(&ix->lock);
  return rc;
}

int32_t fsgw_index_get(fsgw_index *ix, const uint8_t *key, int32_t len, uint8_t *out) {
  pthread_rwlock_rdlock(&ix->lock);
  int32_t rc = ix->complete ? 0 : -1;
  if (len >= 1 && len <= KEY_MAX && ix->nleaves > 0) {
    const leaf *l = ix->leaves[leaf_of(ix, key, (uint32_t)len)];
    int equal = 0;
    uint32_t off = offset_in(l, key, (uint32_t)len, &equal);
    if (equal) {
      const uint8_t *meta = l->data + off + 1 + len;
      rc = (int32_t)meta_bytes(meta);
      memcpy(out, meta, (size_t)rc);
    }
  }
  pthread_rwlock_unlock(&ix->lock);
  return rc;
}

/* The facts of key's entry while it is the volume record of sequence number seq, else NULL (another
 * write of the key since: a later record, or a file); the lock held. */
static uint8_t *record_of(fsgw_index *ix, const uint8_t *key, int32_t len, double seq) {
  if (ix->nleaves == 0) return NULL;
  leaf *l = ix->leaves[leaf_of(ix, key, (uint32_t)len)];
  int equal = 0;
  uint32_t off = offset_in(l, key, (uint32_t)len, &equal);
  uint8_t *meta = l->data + off + 1 + len;
  return equal && (meta[16] & META_VOLUME) && seq_of(meta) == (int64_t)seq ? meta : NULL;
}

int32_t fsgw_index_remove_record(fsgw_index *ix, const uint8_t *key, int32_t len, double seq) {
  if (len < 1 || len > KEY_MAX) return 0;
  pthread_rwlock_wrlock(&ix->lock);
  int32_t rc = record_of(ix, key, len, seq) != NULL ? remove_locked(ix, key, len) : 0;
  pthread_rwlock_unlock(&ix->lock);
  return rc;
}

int32_t fsgw_index_move_record(fsgw_index *ix, const uint8_t *key, int32_t len, double seq, uint32_t volume, double offset) {
  if (len < 1 || len > KEY_MAX) return 0;
  pthread_rwlock_wrlock(&ix->lock);
  uint8_t *meta = record_of(ix, key, len, seq);
  if (meta != NULL) {
    dead_note(ix, key, (uint32_t)len, volume_of(meta)); /* the copied body, until its volume goes */
    uint8_t *loc = meta + FSGW_INDEX_RECORD_AT;
    for (int i = 0; i < 4; i++) loc[i] = (uint8_t)(volume >> (8 * i));
    put_i64(loc + 4, (int64_t)offset);
  } else {
    dead_note(ix, key, (uint32_t)len, volume); /* the copy lost its race: dead as it lands */
  }
  pthread_rwlock_unlock(&ix->lock);
  return meta != NULL;
}

int32_t fsgw_index_dead_elsewhere(fsgw_index *ix, const uint8_t *key, int32_t len, uint32_t volume) {
  if (len < 1 || len > KEY_MAX) return 0;
  pthread_rwlock_rdlock(&ix->lock);
  int32_t rc = 0;
  uint64_t want = dead_slot(dead_hash(key, (uint32_t)len), 0);
  const dead_part *p = ix->dead == NULL ? NULL : dead_part_of(ix, want);
  if (ix->dead_full) rc = -1;
  else if (p != NULL && p->cap > 0) {
    for (uint32_t i = dead_home(want, p->cap); p->slots[i] != 0; i = (i + 1) & (p->cap - 1)) {
      uint64_t s = p->slots[i];
      if ((s >> 32) == (want >> 32) && (uint32_t)s != volume) {
        rc = (int32_t)(uint32_t)s;
        break;
      }
    }
  }
  pthread_rwlock_unlock(&ix->lock);
  return rc;
}

void fsgw_index_dead_add(fsgw_index *ix, const uint8_t *key, int32_t len, uint32_t volume) {
  if (len < 1 || len > KEY_MAX) return;
  pthread_rwlock_wrlock(&ix->lock);
  dead_note(ix, key, (uint32_t)len, volume);
  pthread_rwlock_unlock(&ix->lock);
}

double fsgw_index_dead_forget(fsgw_index *ix, uint32_t volume) { return (double)dead_forget(ix, volume, 0, NULL, 0); }

void fsgw_index_dead_limit(fsgw_index *ix, double max) {
  pthread_rwlock_wrlock(&ix->lock);
  ix->dead_max = max < 0 ? 0 : (int64_t)max;
  pthread_rwlock_unlock(&ix->lock);
}

void fsgw_index_dead_stats(fsgw_index *ix, double *out) {
  pthread_rwlock_rdlock(&ix->lock);
  double bytes = ix->dead == NULL ? 0 : (double)(DEAD_PARTS * sizeof *ix->dead);
  for (int part = 0; ix->dead != NULL && part < DEAD_PARTS; part++) bytes += (double)ix->dead[part].cap * sizeof(uint64_t);
  out[0] = (double)ix->dead_count;
  out[1] = bytes;
  out[2] = ix->dead_full;
  pthread_rwlock_unlock(&ix->lock);
}

/* Leaves walked per hold of the read lock by fsgw_index_volume_usage: writers wait at most this long. */
#define USAGE_LEAVES_PER_LOCK 256

int32_t fsgw_index_volume_usage(fsgw_index *ix, const uint32_t *ids, int32_t n, double *live) {
  for (int32_t i = 0; i < n; i++) live[i] = 0;
  for (size_t from = 0;; from += USAGE_LEAVES_PER_LOCK) {
    pthread_rwlock_rdlock(&ix->lock);
    if (from >= ix->nleaves) {
      pthread_rwlock_unlock(&ix->lock);
      break;
    }
    size_t to = from + USAGE_LEAVES_PER_LOCK < ix->nleaves ? from + USAGE_LEAVES_PER_LOCK : ix->nleaves;
    for (size_t li = from; li < to; li++) {
      const leaf *l = ix->leaves[li];
      for (uint32_t off = 0; off < l->used; off += entry_bytes(l->data + off)) {
        const uint8_t *e = l->data + off, *meta = e + 1 + e[0];
        if (!(meta[16] & META_VOLUME)) continue;
        uint32_t vol = volume_of(meta);
        int32_t lo = 0, hi = n - 1;
        while (lo <= hi) {
          int32_t mid = lo + (hi - lo) / 2;
          if (ids[mid] == vol) {
            /* The record's bytes: header, key, body, to a multiple of 8 (fsgw_volume.h). */
            live[mid] += (double)((88 + e[0] + get_i64(meta) + 7) & ~(int64_t)7);
            break;
          }
          if (ids[mid] < vol) lo = mid + 1;
          else hi = mid - 1;
        }
      }
    }
    pthread_rwlock_unlock(&ix->lock);
  }
  return 0;
}

fsgw_index *fsgw_index_new(void) {
  fsgw_index *ix = calloc(1, sizeof *ix);
  if (ix == NULL) return NULL;
  pthread_rwlock_init(&ix->lock, NULL);
  ix->complete = 1;
  ix->volumes_fd = -1;
  ix->dead_max = DEAD_MAX_DEFAULT;
  return ix;
}

double fsgw_index_count(fsgw_index *ix) {
  pthread_rwlock_rdlock(&ix->lock);
  double n = (double)ix->count;
  pthread_rwlock_unlock(&ix->lock);
  return n;
}

double fsgw_index_bytes(fsgw_index *ix) {
  pthread_rwlock_rdlock(&ix->lock);
  double n = (double)ix->bytes + (double)(ix->leaves_cap * (sizeof(leaf *) + sizeof(uint64_t)));
  pthread_rwlock_unlock(&ix->lock);
  return n;
}

/* ---- open, close ---- */

fsgw_index *fsgw_index_open(const char *dir, int32_t shards, int32_t width) {
  if (shards < 1 || width < 1 || width > 8) {
    errno = EINVAL;
    return NULL;
  }
  fsgw_index *ix = calloc(1, sizeof *ix);
  int *fds = calloc((size_t)shards, sizeof *fds);
  if (ix == NULL || fds == NULL) goto fail;
  pthread_rwlock_init(&ix->lock, NULL);
  ix->volumes_fd = -1;
  ix->dead_max = DEAD_MAX_DEFAULT;
  ix->shards = shards;
  ix->shard_fd = fds;
  for (int32_t s = 0; s < shards; s++) fds[s] = -1;
  int base = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (base < 0) goto fail;
  for (int32_t s = 0; s < shards; s++) {
    char name[16];
    snprintf(name, sizeof name, "%0*x", (int)width, (unsigned)s);
    fds[s] = openat(base, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fds[s] < 0) {
      int e = errno;
      close(base);
      errno = e;
      goto fail;
    }
  }
  close(base);
  return ix;
fail: {
  int e = errno;
  if (ix != NULL && ix->shard_fd != NULL) {
    for (int32_t s = 0; s < shards; s++)
      if (fds[s] >= 0) close(fds[s]);
  }
  free(fds);
  free(ix);
  errno = e;
  return NULL;
}
}

int32_t fsgw_index_set_volumes(fsgw_index *ix, const char *path) {
  int fd = open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -errno;
  /* Set once (every loop's store asks): a listing that let the index go still uses the first. */
  pthread_rwlock_wrlock(&ix->lock);
  int taken = ix->volumes_fd < 0;
  if (taken) ix->volumes_fd = fd;
  pthread_rwlock_unlock(&ix->lock);
  if (!taken) close(fd);
  return 0;
}

void fsgw_index_close(fsgw_index *ix) {
  if (ix == NULL) return;
  for (size_t i = 0; i < ix->nleaves; i++) leaf_free(ix, ix->leaves[i]);
  free(ix->leaves);
  free(ix->first8);
  dead_free(ix);
  for (int32_t s = 0; s < ix->shards; s++) close(ix->shard_fd[s]); /* none for fsgw_index_new's */
  free(ix->shard_fd);
  if (ix->volumes_fd >= 0) close(ix->volumes_fd);
  pthread_rwlock_destroy(&ix->lock);
  free(ix);
}

#ifndef __NR_getxattrat
#define __NR_getxattrat 464
#endif
struct index_xattr_args {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};
static atomic_int index_getxattrat_missing;

/* The facts of the file `name` in directory `dir` as an entry keeps them (META_BYTES): 0, or
 * -errno (-ENOENT: gone; -EISDIR: not a regular file, a link included). */
static int meta_at(int dir, const char *name, uint8_t *meta) {
  struct stat st;
  if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return -errno;
  if (!S_ISREG(st.st_mode)) return -EISDIR;
  put_i64(meta, st.st_size);
  put_i64(meta + 8, (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000);
  uint8_t *digest = meta + 17;
  uint8_t value[48]; /* the SHA-256, and the MD5 after it when the upload computed one */
  long n = -1;
  if (!atomic_load_explicit(&index_getxattrat_missing, memory_order_relaxed)) {
    struct index_xattr_args args = {(uint64_t)(uintptr_t)value, sizeof value, 0};
    n = syscall(__NR_getxattrat, dir, name, AT_SYMLINK_NOFOLLOW, FSGW_DIGEST_XATTR, &args, sizeof args);
    if (n < 0 && errno == ENOSYS) atomic_store(&index_getxattrat_missing, 1);
  }
  if (atomic_load_explicit(&index_getxattrat_missing, memory_order_relaxed)) {
    char path[64 + KEY_MAX];
    snprintf(path, sizeof path, "/proc/self/fd/%d/%s", dir, name);
    n = lgetxattr(path, FSGW_DIGEST_XATTR, value, sizeof value);
  }
  meta[16] = n == 32 ? META_DIGEST : n == 48 ? META_DIGEST | META_MD5 : 0;
  if (meta[16] & META_DIGEST) memcpy(digest, value, 32);
  else memset(digest, 0, 32);
  if (meta[16] & META_MD5) memcpy(meta + META_BYTES, value + 32, 16);
  return 0;
}

/* ---- load: a parallel readdir of the shards ---- */

typedef struct keybuf {
  uint8_t *data; /* [len][bytes]... */
  size_t used, cap;
  int64_t n;
} keybuf;

typedef struct load_job {
  fsgw_index *ix;
  atomic_int next_shard;
  atomic_int error;
} load_job;

typedef struct load_worker {
  load_job *job;
  keybuf keys;
  pthread_t thread;
} load_worker;

/* Appends [len][key][meta] for the file `name` of directory `dir`: 1 when added, 0 when it is not
 * a regular file (or went), -ENOMEM. */
static int keybuf_push(keybuf *b, int dir, const char *name, size_t len) {
  if (b->used + ENTRY_BYTES_MAX(len) > b->cap) {
    size_t cap = b->cap == 0 ? 1 << 20 : b->cap * 2;
    uint8_t *grown = realloc(b->data, cap);
    if (grown == NULL) return -ENOMEM;
    b->data = grown;
    b->cap = cap;
  }
  uint8_t *e = b->data + b->used;
  if (meta_at(dir, name, e + 1 + len) != 0) return 0;
  e[0] = (uint8_t)len;
  for (size_t i = 0; i < len; i++) e[1 + i] = name[i] == 0x1f ? '/' : (uint8_t)name[i];
  b->used += entry_bytes(e);
  b->n++;
  return 1;
}

static void *load_shards(void *arg) {
  load_worker *w = arg;
  fsgw_index *ix = w->job->ix;
  for (;;) {
    int s = atomic_fetch_add(&w->job->next_shard, 1);
    if (s >= ix->shards) break;
    int fd = openat(ix->shard_fd[s], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL) {
      atomic_store(&w->job->error, errno);
      if (fd >= 0) close(fd);
      break;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      const char *name = e->d_name;
      size_t len = strlen(name);
      if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.'))) continue;
      if (len > KEY_MAX || strchr(name, '\\') != NULL) continue; /* a temporary file */
      if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue; /* meta_at checks the rest */
      if (keybuf_push(&w->keys, ix->shard_fd[s], name, len) < 0) {
        atomic_store(&w->job->error, ENOMEM);
        break;
      }
    }
    closedir(d);
  }
  return NULL;
}

static int compare_ptrs(const void *a, const void *b) {
  const uint8_t *x = *(const uint8_t *const *)a, *y = *(const uint8_t *const *)b;
  return compare(x + 1, x[0], y + 1, y[0]);
}

double fsgw_index_load(fsgw_index *ix, int32_t threads) {
  if (threads < 1) threads = 1;
  if (threads > 64) threads = 64;
  load_job job = {.ix = ix};
  atomic_init(&job.next_shard, 0);
  atomic_init(&job.error, 0);
  load_worker *workers = calloc((size_t)threads, sizeof *workers);
  if (workers == NULL) return -ENOMEM;
  int started = 0;
  for (int t = 0; t < threads; t++) {
    workers[t].job = &job;
    if (pthread_create(&workers[t].thread, NULL, load_shards, &workers[t]) != 0) break;
    started++;
  }
  if (started == 0) load_shards(&workers[0]); /* no thread: this one reads them all */
  for (int t = 0; t < started; t++) pthread_join(workers[t].thread, NULL);
  int64_t total = 0;
  for (int t = 0; t < threads; t++) total += workers[t].keys.n;
  double rc = 0;
  const uint8_t **all = NULL;
  int fresh = 0;
  if (atomic_load(&job.error) != 0) {
    rc = -(double)atomic_load(&job.error);
    goto out;
  }
  all = malloc((size_t)(total > 0 ? total : 1) * sizeof *all);
  if (all == NULL) {
    rc = -ENOMEM;
    goto out;
  }
  int64_t n = 0;
  for (int t = 0; t < threads; t++)
    for (size_t off = 0; off < workers[t].keys.used; off += entry_bytes(workers[t].keys.data + off)) all[n++] = workers[t].keys.data + off;
  qsort(all, (size_t)n, sizeof *all, compare_ptrs);
  /* Add in order: each new key goes at the end of the last leaf, or into a new one. Keys already
   * in the index (added by an upload meanwhile) are merged by the ordinary add. */
  pthread_rwlock_wrlock(&ix->lock);
  fresh = ix->nleaves == 0;
  if (!fresh) pthread_rwlock_unlock(&ix->lock); /* each add takes it */
  for (int64_t k = 0; k < n; k++) {
    const uint8_t *key = all[k];
    if (k > 0 && compare(key + 1, key[0], all[k - 1] + 1, all[k - 1][0]) == 0) continue;
    if (!fresh) {
      if (fsgw_index_add(ix, key + 1, key[0], key + 1 + key[0]) < 0) {
        rc = -ENOMEM;
        goto out;
      }
      continue;
    }
    leaf *l = ix->nleaves == 0 ? NULL : ix->leaves[ix->nleaves - 1];
    if (l == NULL || l->used + entry_bytes(key) > LOAD_FILL) {
      if (l != NULL) {
        leaf *shrunk = leaf_resize(ix, l, l->used + LEAF_SLACK);
        if (shrunk != NULL) ix->leaves[ix->nleaves - 1] = shrunk;
      }
      l = leaf_new(ix, FSGW_INDEX_LEAF_BYTES);
      if (l == NULL || leaves_insert(ix, ix->nleaves, l) != 0) {
        if (l != NULL) leaf_free(ix, l);
        rc = -ENOMEM;
        goto out;
      }
    }
    memcpy(l->data + l->used, key, entry_bytes(key));
    l->used += entry_bytes(key);
    l->count++;
    ix->count++;
    if (l->count == 1) refresh_first(ix, ix->nleaves - 1);
  }
  if (fresh && ix->nleaves > 0) {
    leaf *last = ix->leaves[ix->nleaves - 1];
    leaf *shrunk = leaf_resize(ix, last, last->used + LEAF_SLACK);
    if (shrunk != NULL) ix->leaves[ix->nleaves - 1] = shrunk;
  }
  rc = (double)ix->count;
  if (!fresh) pthread_rwlock_wrlock(&ix->lock);
  ix->complete = 1;
  pthread_rwlock_unlock(&ix->lock);
  fresh = 0;
out:
  if (fresh) pthread_rwlock_unlock(&ix->lock);
  free(all);
  for (int t = 0; t < threads; t++) free(workers[t].keys.data);
  free(workers);
  return rc;
}

/* ---- listing ---- */

/* A position: leaf index and offset in it. */
typedef struct cursor {
  size_t leaf;
  uint32_t off;
} cursor;

/* The first entry >= key (strict: > key). */
static cursor seek(const fsgw_index *ix, const uint8_t *key, uint32_t len, int strict) {
  cursor c = {0, 0};
  if (ix->nleaves == 0 || len == 0) return c;
  c.leaf = leaf_of(ix, key, len);
  int equal;
  c.off = offset_in(ix->leaves[c.leaf], key, len, &equal);
  if (equal && strict) c.off += entry_bytes(ix->leaves[c.leaf]->data + c.off);
  return c;
}

/* The entry at c (NULL at the end), moving c past empty leaf tails. */
static const uint8_t *at(const fsgw_index *ix, cursor *c) {
  while (c->leaf < ix->nleaves && c->off >= ix->leaves[c->leaf]->used) {
    c->leaf++;
    c->off = 0;
  }
  return c->leaf < ix->nleaves ? ix->leaves[c->leaf]->data + c->off : NULL;
}

/* The smallest byte string greater than every string that starts with p (len 0: none, the end). */
static uint32_t successor(const uint8_t *p, uint32_t len, uint8_t *out) {
  while (len > 0 && p[len - 1] == 0xff) len--;
  if (len == 0) return 0;
  memcpy(out, p, len);
  out[len - 1]++;
  return len;
}

/* Bytes a key or prefix takes as a JSON string's contents. Clients' keys hold no control
 * characters and no backslash (see src/storage/keys.ts), but the names of the HTTP door's other
 * buckets start with U+0001 (keys.ts, bucketKey): a control character is \u00XX, '"' and '\\'
 * are escaped with a backslash. */
static uint32_t json_len(const uint8_t *text, uint32_t len) {
  uint32_t n = len;
  for (uint32_t i = 0; i < len; i++) n += text[i] < 0x20 ? 5 : text[i] == '"' || text[i] == '\\';
  return n;
}

static size_t put_json(uint8_t *out, const uint8_t *text, uint32_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (uint32_t i = 0; i < len; i++) {
    if (text[i] < 0x20) {
      memcpy(out + o, "\\u00", 4);
      out[o + 4] = (uint8_t)hex[text[i] >> 4];
      out[o + 5] = (uint8_t)hex[text[i] & 15];
      o += 6;
      continue;
    }
    if (text[i] == '"' || text[i] == '\\') out[o++] = '\\';
    out[o++] = text[i];
  }
  return o;
}

/* The longest entry line beyond its key: {"key":"","size":<20>,"mtime":"<24>","sha256":"<64>",
 * "md5":"<32>"}\n is 190 bytes; the time is written within 48 (an odd year takes more digits). */
#define ENTRY_LINE_FIXED 216
/* A prefix line beyond the prefix: {"prefix":""}\n */
#define PREFIX_LINE_FIXED 14

/* One entry's line, from the facts the index keeps for it and its digests (a file's are in its
 * facts; a record's, read from its header, at `digests`: the SHA-256 then the MD5, or NULL: none
 * shown); its length. */
static size_t entry_line(const uint8_t *key, uint32_t len, const uint8_t *meta, const uint8_t *digests, uint8_t *out) {
  int64_t size = get_i64(meta), mtime_ms = get_i64(meta + 8);
  if (mtime_ms < 0) mtime_ms = 0; /* before 1970: shown as 1970 */
  size_t o = 0;
  memcpy(out + o, "{\"key\":\"", 8);
  o += 8;
  o += put_json(out + o, key, len);
  time_t sec = (time_t)(mtime_ms / 1000);
  struct tm tm;
  gmtime_r(&sec, &tm);
  int n = snprintf((char *)out + o, 80, "\",\"size\":%lld,\"mtime\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", (long long)size, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                   tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(mtime_ms % 1000));
  o += n < 80 ? (size_t)n : 79;
  if (digests != NULL && (meta[16] & META_DIGEST)) {
    static const char hex[] = "0123456789abcdef";
    memcpy(out + o, ",\"sha256\":\"", 11);
    o += 11;
    for (int i = 0; i < 32; i++) {
      out[o++] = (uint8_t)hex[digests[i] >> 4];
      out[o++] = (uint8_t)hex[digests[i] & 15];
    }
    out[o++] = '"';
  }
  if (digests != NULL && (meta[16] & META_MD5)) {
    static const char hex[] = "0123456789abcdef";
    memcpy(out + o, ",\"md5\":\"", 8);
    o += 8;
    for (int i = 0; i < 16; i++) {
      out[o++] = (uint8_t)hex[digests[32 + i] >> 4];
      out[o++] = (uint8_t)hex[digests[32 + i] & 15];
    }
    out[o++] = '"';
  }
  out[o++] = '}';
  out[o++] = '\n';
  return o;
}

/* The volumes a page's records are in, opened while the index is held (so each is there: a
 * compaction removes a volume only after the index stops pointing into it) and read after it is let
 * go (a descriptor keeps a removed volume's bytes, and a record's bytes never change). */
typedef struct page_volumes {
  uint32_t *ids;
  int *fds;
  int32_t n, cap; /* cap: the page's entries, so every record's volume fits */
} page_volumes;

/* The descriptor of volume id for this page (-1: it cannot be opened; its digests are not shown). */
static int page_volume(page_volumes *v, int dir, uint32_t id) {
  for (int32_t i = 0; i < v->n; i++)
    if (v->ids[i] == id) return v->fds[i];
  if (v->n == v->cap) return -1; /* (never: each record of the page adds at most one) */
  char name[16];
  snprintf(name, sizeof name, "%08x.fsv", (unsigned)id);
  /* O_NOATIME keeps a listing from dirtying the volume's inode; only its owner may ask for it. */
  int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  v->ids[v->n] = id;
  v->fds[v->n++] = fd;
  return fd;
}

/* Whether hdr is the header of the record a listing shows (facts meta): its magic, kind, key length
 * and sequence number. */
static int header_matches(const uint8_t *hdr, const uint8_t *meta, uint32_t key_len) {
  return memcmp(hdr, "FSV1", 4) == 0 && hdr[4] == FSGW_VOLUME_KIND_BODY && hdr[5] == key_len && get_i64(hdr + 8) == seq_of(meta);
}

/* Reads `len` bytes at `at` of fd: from the page cache as the inline calls read (fsgw_pool.h),
 * unless the caller may wait. The bytes read, or -EAGAIN (not cached), or another -errno. */
static double read_at(int fd, uint8_t *buf, size_t len, int64_t at, int wait) {
  return wait ? (double)pread(fd, buf, len, (off_t)at) : fsgw_pread_now(fd, buf, (double)len, (double)at);
}

/* Reads the header of the record a listing shows (facts meta) into hdr: 1 when it is that record's,
 * 0 when not (shown without digests), -EAGAIN when its page is not cached and the caller may not
 * wait. */
static int read_header(int fd, const uint8_t *meta, uint32_t key_len, int wait, uint8_t *hdr) {
  if (fd < 0) return 0;
  double n = read_at(fd, hdr, FSGW_VOLUME_HEADER_BYTES, offset_of(meta), wait);
  if (n == -EAGAIN) return -EAGAIN;
  if (n != FSGW_VOLUME_HEADER_BYTES) return 0;
  return header_matches(hdr, meta, key_len);
}

/* Records stored one after another (keys uploaded in key order) lie close together in their volume,
 * and a page lists them in key order: one read of the bytes from one header to the last of the next
 * few that fall within SPAN_BYTES_MAX serves them all, where each would be a system call of its own.
 * A span is read only when it holds a header per SPAN_BYTES_PER_HEADER (16 KiB copied cost about
 * what the system call it saves does), so that records of 64 KiB are still read header by header. */
#define SPAN_BYTES_MAX (64 * 1024)
#define SPAN_BYTES_PER_HEADER (16 * 1024)
#define SPAN_LOOKAHEAD 64
typedef struct header_span {
  int fd;
  int64_t start, len; /* len 0: nothing held */
  uint8_t *buf;       /* SPAN_BYTES_MAX */
} header_span;

/* The header of the record at entry j of the page (its volume's descriptor fd) into hdr, read with
 * the next records' of the same volume when they are near (the span then serves them): as
 * read_header answers. */
static int span_header(header_span *s, const uint8_t *picked, const size_t *pos, int32_t j, int32_t n, int fd, int wait, uint8_t *hdr) {
  const uint8_t *e = picked + pos[j], *meta = e + 1 + e[0];
  if (fd < 0) return 0;
  int64_t off = offset_of(meta);
  if (s->buf != NULL && s->len > 0 && s->fd == fd && off >= s->start && off + FSGW_VOLUME_HEADER_BYTES <= s->start + s->len) {
    memcpy(hdr, s->buf + (off - s->start), FSGW_VOLUME_HEADER_BYTES);
    return header_matches(hdr, meta, e[0]);
  }
  if (s->buf != NULL) {
    uint32_t vol = volume_of(meta);
    int64_t end = off + FSGW_VOLUME_HEADER_BYTES;
    int32_t covered = 1;
    for (int32_t i = j + 1; i < n && i <= j + SPAN_LOOKAHEAD; i++) {
      const uint8_t *f = picked + pos[i], *fm = f + 1 + f[0];
      if (!(fm[16] & META_VOLUME) || !(fm[16] & META_DIGEST)) continue; /* (a file's, or one without digests) */
      /* The first record elsewhere ends the look: where a page's records lie apart (keys not
       * stored in their order) each record costs one comparison here, not SPAN_LOOKAHEAD. */
      int64_t at = offset_of(fm);
      if (volume_of(fm) != vol || at < off || at + FSGW_VOLUME_HEADER_BYTES > off + SPAN_BYTES_MAX) break;
      if (at + FSGW_VOLUME_HEADER_BYTES > end) end = at + FSGW_VOLUME_HEADER_BYTES;
      covered++;
    }
    if (covered > 1 && end - off <= (int64_t)covered * SPAN_BYTES_PER_HEADER) {
      double got = read_at(fd, s->buf, (size_t)(end - off), off, wait);
      /* Not all cached, or cut short: this header alone, as without a span. */
      if (got >= FSGW_VOLUME_HEADER_BYTES) {
        s->fd = fd;
        s->start = off;
        s->len = (int64_t)got;
        memcpy(hdr, s->buf, FSGW_VOLUME_HEADER_BYTES);
        return header_matches(hdr, meta, e[0]);
      }
    }
  }
  return read_header(fd, meta, e[0], wait, hdr);
}

int32_t fsgw_index_list(fsgw_index *ix, const uint8_t *texts, const int32_t *params, uint8_t *out, uint8_t *next, int32_t *next_len, double *misses) {
  int32_t plen = params[0], dlen = params[1], alen = params[2], after_prefix = params[3], max = params[4], cap = params[5], wait = params[6];
  *next_len = 0;
  misses[0] = 0;
  if (plen < 0 || plen > KEY_MAX || dlen < 0 || dlen > KEY_MAX || alen < 0 || alen > KEY_MAX || max < 1 || cap < FSGW_INDEX_PAGE_BYTES_MIN) return -EINVAL;
  const uint8_t *prefix = texts, *delim = texts + plen, *after = texts + plen + dlen;
  /* Entries are copied here as they are met ([len][key][facts]) and written once the index is let
   * go (a record's digests are read from its volume); common prefixes wait here ([len][bytes]) to
   * follow them. */
  uint8_t *picked = malloc((size_t)max * (1 + KEY_MAX + FSGW_INDEX_META_BYTES_MAX));
  uint8_t *prefixes = malloc((size_t)max * (1 + KEY_MAX));
  page_volumes vols = {malloc((size_t)max * sizeof(uint32_t)), malloc((size_t)max * sizeof(int)), 0, max};
  size_t *pos = malloc((size_t)max * sizeof(size_t));
  /* (Without its buffer a listing reads header by header, as before spans.) */
  header_span span = {-1, 0, 0, malloc(SPAN_BYTES_MAX)};
  int32_t rc = 0;
  if (picked == NULL || prefixes == NULL || vols.ids == NULL || vols.fds == NULL || pos == NULL) {
    rc = -ENOMEM;
    goto out;
  }
  size_t pbytes = 0, ebytes = 0, o = 0;
  int32_t taken = 0;
  int more = 0;
  int64_t room = cap;
  uint8_t last[KEY_MAX];
  uint32_t last_len = 0;
  int last_is_prefix = 0;
  pthread_rwlock_rdlock(&ix->lock);
  cursor c;
  uint8_t bound[KEY_MAX];
  if (alen > 0 && compare(after, (uint32_t)alen, prefix, (uint32_t)plen) >= 0) {
    if (after_prefix) {
      uint32_t blen = successor(after, (uint32_t)alen, bound);
      c = blen == 0 ? (cursor){ix->nleaves, 0} : seek(ix, bound, blen, 0);
    } else {
      c = seek(ix, after, (uint32_t)alen, 1);
    }
  } else {
    c = seek(ix, prefix, (uint32_t)plen, 0);
  }
  for (;;) {
    const uint8_t *e = at(ix, &c);
    if (e == NULL || !starts_with(e + 1, e[0], prefix, (uint32_t)plen)) break;
    uint32_t len = e[0];
    const uint8_t *key = e + 1;
    /* A delimiter after the prefix rolls the key into its common prefix. */
    uint32_t cp = 0;
    if (dlen > 0) {
      for (uint32_t i = (uint32_t)plen; i + (uint32_t)dlen <= len; i++) {
        if (memcmp(key + i, delim, (size_t)dlen) == 0) {
          cp = i + (uint32_t)dlen;
          break;
        }
      }
    }
    int64_t need = cp > 0 ? PREFIX_LINE_FIXED + json_len(key, cp) : ENTRY_LINE_FIXED + json_len(key, len);
    if (taken == max || need > room) {
      more = 1;
      break;
    }
    room -= need;
    taken++;
    if (cp > 0) {
      prefixes[pbytes] = (uint8_t)cp;
      memcpy(prefixes + pbytes + 1, key, cp);
      pbytes += 1u + cp;
      memcpy(last, key, cp);
      last_len = cp;
      last_is_prefix = 1;
      uint32_t blen = successor(key, cp, bound);
      if (blen == 0) break;
      c = seek(ix, bound, blen, 0);
    } else {
      const uint8_t *meta = key + len;
      uint32_t bytes = entry_bytes(e);
      memcpy(picked + ebytes, e, bytes);
      ebytes += bytes;
      if ((meta[16] & META_VOLUME) && (meta[16] & META_DIGEST) && ix->volumes_fd >= 0) page_volume(&vols, ix->volumes_fd, volume_of(meta));
      memcpy(last, key, len);
      last_len = len;
      last_is_prefix = 0;
      c.off += bytes;
    }
  }
  int vdir = ix->volumes_fd; /* set once: never closed while the index is open */
  pthread_rwlock_unlock(&ix->lock);
  int32_t missed = 0, npicked = 0;
  for (size_t p = 0; p < ebytes; p += entry_bytes(picked + p)) pos[npicked++] = p;
  for (int32_t j = 0; j < npicked; j++) {
    const uint8_t *e = picked + pos[j], *meta = e + 1 + e[0];
    const uint8_t *digests = meta + 17; /* a file's, in its facts */
    uint8_t hdr[FSGW_VOLUME_HEADER_BYTES];
    if (meta[16] & META_VOLUME) {
      digests = NULL;
      if ((meta[16] & META_DIGEST) && vdir >= 0) {
        /* (Opened above, while the index was held: found in the page's table, never opened here.) */
        int r = span_header(&span, picked, pos, j, npicked, page_volume(&vols, vdir, volume_of(meta)), wait, hdr);
        if (r == -EAGAIN) {
          /* Not cached: the caller has it read on the pool and asks again (never on its thread). */
          misses[1 + 2 * missed] = volume_of(meta);
          misses[2 + 2 * missed] = (double)offset_of(meta);
          misses[0] = ++missed;
          continue;
        }
        if (r == 1) digests = hdr + 32;
      }
    }
    o += entry_line(e + 1, e[0], meta, digests, out + o);
  }
  if (missed > 0) {
    rc = -EAGAIN;
    goto out;
  }
  for (size_t p = 0; p < pbytes; p += 1u + prefixes[p]) {
    memcpy(out + o, "{\"prefix\":\"", 11);
    o += 11;
    o += put_json(out + o, prefixes + p + 1, prefixes[p]);
    memcpy(out + o, "\"}\n", 3);
    o += 3;
  }
  if (more && taken > 0) {
    /* The next page starts after the last key or prefix taken: "K" + key, or "P" + prefix. */
    next[0] = last_is_prefix ? 'P' : 'K';
    memcpy(next + 1, last, last_len);
    *next_len = 1 + (int32_t)last_len;
  }
  rc = (int32_t)o;
out:
  for (int32_t i = 0; i < vols.n; i++)
    if (vols.fds[i] >= 0) close(vols.fds[i]);
  free(vols.ids);
  free(vols.fds);
  free(pos);
  free(span.buf);
  free(picked);
  free(prefixes);
  return rc;
}

/* ---- a start-up scan's records (fsgw_volscan) ---- */

/* Entries [len][key][kind][facts]: facts as an index entry keeps them (flag 4: the location), for
 * a tombstone only its sequence number (8 bytes, in place of the location's) and what it deletes. */
struct fsgw_volscan {
  uint8_t *data;
  size_t used, cap;
  int64_t n;
};

/* The collector's buffer and the sort's array are read at random once sorted (each key's entry,
 * in key order): on huge pages (2 MiB, where the kernel gives them on request) a gigabyte of them
 * takes 512 TLB entries instead of 262,144, and ten million reads stop waiting on page walks. */
static void *huge_alloc(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  madvise(p, bytes, MADV_HUGEPAGE); /* advice: refused or unknown, the memory is still good */
  return p;
}

static void *huge_grow(void *p, size_t old_bytes, size_t bytes) {
  if (p == NULL) return huge_alloc(bytes);
  void *q = mremap(p, old_bytes, bytes, MREMAP_MAYMOVE);
  return q == MAP_FAILED ? NULL : q;
}

fsgw_volscan *fsgw_volscan_new(void) { return calloc(1, sizeof(fsgw_volscan)); }

void fsgw_volscan_free(fsgw_volscan *s) {
  if (s == NULL) return;
  if (s->data != NULL) munmap(s->data, s->cap);
  free(s);
}

static uint32_t scan_entry_bytes(const uint8_t *e) {
  const uint8_t *meta = e + 2 + e[0];
  return 2u + e[0] + (e[1 + e[0]] == 2 ? 16u : meta_bytes(meta));
}

int fsgw_volscan_push(fsgw_volscan *s, const uint8_t *key, uint32_t len, int kind, const uint8_t *meta) {
  uint32_t need = 2u + len + (kind == 2 ? 16u : meta_bytes(meta));
  if (s->used + need > s->cap) {
    size_t cap = s->cap == 0 ? (size_t)1 << 24 : s->cap * 2;
    uint8_t *grown = huge_grow(s->data, s->cap, cap);
    if (grown == NULL) return -ENOMEM;
    s->data = grown;
    s->cap = cap;
  }
  uint8_t *e = s->data + s->used;
  e[0] = (uint8_t)len;
  memcpy(e + 1, key, len);
  e[1 + len] = (uint8_t)kind;
  memcpy(e + 2 + len, meta, need - 2u - len);
  s->used += need;
  s->n++;
  return 0;
}

/* A record's sequence number: a body's from its location, a tombstone's its first 8 bytes. */
static int64_t scan_seq(const uint8_t *e) {
  const uint8_t *meta = e + 2 + e[0];
  return e[1 + e[0]] == 2 ? get_i64(meta) : seq_of(meta);
}

/* A record to sort: its key's first 16 bytes (big-endian, zero-padded: they order as the keys do),
 * its length and sequence number, so that nearly every comparison reads no entry (at ten million
 * records, each read of one is a cache miss). */
typedef struct scan_ref {
  uint64_t h1, h2;
  /* A body's sequence number; a tombstone's, the number it deletes. */
  int64_t seq;
  const uint8_t *e;
  uint32_t len;
  uint32_t tombstone;
} scan_ref;

static uint64_t head8_at(const uint8_t *key, uint32_t len, uint32_t from) {
  uint64_t h = 0;
  for (uint32_t i = from; i < from + 8; i++) h = (h << 8) | (i < len ? key[i] : 0);
  return h;
}

/* The keys' order: by the first 16 bytes, then (past 16 bytes) by the entries themselves. */
static int compare_keys(const scan_ref *x, const scan_ref *y) {
  if (x->h1 != y->h1) return x->h1 < y->h1 ? -1 : 1;
  if (x->h2 != y->h2) return x->h2 < y->h2 ? -1 : 1;
  if (x->len <= 16 || y->len <= 16) return x->len < y->len ? -1 : x->len > y->len;
  return compare(x->e + 1, x->len, y->e + 1, y->len);
}

/* (A key's records need no order among themselves: the merge takes the largest numbers.) */
static inline int compare_scan(const scan_ref *x, const scan_ref *y) { return compare_keys(x, y); }

/* Sorts refs in place: a quicksort on the structs themselves (glibc's qsort copies elements this
 * large through memcpy and calls the comparison through a pointer: 3x slower at ten million). */
static void sort_refs(scan_ref *a, size_t n) {
  while (n > 16) {
    /* The median of three as the pivot, then Hoare's partition. */
    size_t m = n / 2;
    if (compare_scan(&a[m], &a[0]) < 0) { scan_ref t = a[m]; a[m] = a[0]; a[0] = t; }
    if (compare_scan(&a[n - 1], &a[0]) < 0) { scan_ref t = a[n - 1]; a[n - 1] = a[0]; a[0] = t; }
    if (compare_scan(&a[n - 1], &a[m]) < 0) { scan_ref t = a[n - 1]; a[n - 1] = a[m]; a[m] = t; }
    scan_ref pivot = a[m];
    size_t i = 0, j = n - 1;
    for (;;) {
      while (compare_scan(&a[i], &pivot) < 0) i++;
      while (compare_scan(&pivot, &a[j]) < 0) j--;
      if (i >= j) break;
      scan_ref t = a[i];
      a[i] = a[j];
      a[j] = t;
      i++;
      j--;
    }
    /* Recurse into the smaller side, loop on the larger: the stack stays O(log n). */
    size_t left = j + 1;
    if (left < n - left) {
      sort_refs(a, left);
      a += left;
      n -= left;
    } else {
      sort_refs(a + left, n - left);
      n = left;
    }
  }
  for (size_t i = 1; i < n; i++) {
    scan_ref t = a[i];
    size_t j = i;
    for (; j > 0 && compare_scan(&t, &a[j - 1]) < 0; j--) a[j] = a[j - 1];
    a[j] = t;
  }
}

/* Leaves of a fresh index built in key order: each filled here to LOAD_FILL, then allocated at
 * its size (one malloc, no realloc) and put after the others. The index's lock is held. */
typedef struct leaf_builder {
  uint32_t used, count;
  uint8_t data[FSGW_INDEX_LEAF_BYTES];
} leaf_builder;

static int builder_flush(fsgw_index *ix, leaf_builder *b) {
  if (b->count == 0) return 0;
  leaf *l = leaf_new(ix, b->used + LEAF_SLACK);
  if (l == NULL || leaves_insert(ix, ix->nleaves, l) != 0) {
    if (l != NULL) leaf_free(ix, l);
    return -ENOMEM;
  }
  memcpy(l->data, b->data, b->used);
  l->used = b->used;
  l->count = b->count;
  ix->count += b->count;
  refresh_first(ix, ix->nleaves - 1);
  b->used = b->count = 0;
  return 0;
}

static int builder_add(fsgw_index *ix, leaf_builder *b, const uint8_t *key, uint32_t len, const uint8_t *meta) {
  uint32_t need = 1u + len + meta_bytes(meta);
  if (b->used + need > LOAD_FILL && builder_flush(ix, b) != 0) return -ENOMEM;
  uint8_t *e = b->data + b->used;
  e[0] = (uint8_t)len;
  memcpy(e + 1, key, len);
  memcpy(e + 1 + len, meta, meta_bytes(meta));
  b->used += need;
  b->count++;
  return 0;
}

/* Whether volume is one of ids (sorted ascending). */
static int has_volume(const uint32_t *ids, int32_t n, uint32_t volume) {
  int32_t lo = 0, hi = n - 1;
  while (lo <= hi) {
    int32_t mid = lo + (hi - lo) / 2;
    if (ids[mid] == volume) return 1;
    if (ids[mid] < volume) lo = mid + 1;
    else hi = mid - 1;
  }
  return 0;
}

int32_t fsgw_volscan_merge(fsgw_volscan *s, fsgw_index *ix, const uint32_t *ids, int32_t nids, uint8_t *conflicts, int32_t cap, int32_t *used) {
  *used = 0;
  size_t refs_bytes = (size_t)(s->n > 0 ? s->n : 1) * sizeof(scan_ref);
  scan_ref *refs = huge_alloc(refs_bytes);
  if (refs == NULL) return -ENOMEM;
  int64_t n = 0;
  for (size_t off = 0; off < s->used; off += scan_entry_bytes(s->data + off)) {
    const uint8_t *e = s->data + off;
    int tomb = e[1 + e[0]] == 2;
    refs[n] = (scan_ref){head8_at(e + 1, e[0], 0), head8_at(e + 1, e[0], 8), tomb ? get_i64(e + 2 + e[0] + 8) : scan_seq(e), e, e[0], (uint32_t)tomb};
    n++;
  }
  sort_refs(refs, (size_t)n);
  /* An index of no key yet (no files): built leaf by leaf in key order, under its lock throughout. */
  pthread_rwlock_wrlock(&ix->lock);
  int fresh = ix->nleaves == 0;
  leaf_builder *builder = fresh ? malloc(sizeof *builder) : NULL;
  if (fresh && builder == NULL) {
    pthread_rwlock_unlock(&ix->lock);
    munmap(refs, refs_bytes);
    return -ENOMEM;
  }
  if (fresh) builder->used = builder->count = 0;
  else pthread_rwlock_unlock(&ix->lock);
  int32_t reported = 0, rc = 0;
  uint8_t held[FSGW_INDEX_META_BYTES_MAX];
  for (int64_t i = 0; i < n;) {
    /* The entries this loop reads lie all over the collector's buffer (the sort's order is not
     * theirs): fetched some keys ahead, the reads do not wait on memory one by one. */
    if (i + 16 < n) {
      __builtin_prefetch(refs[i + 16].e);
      __builtin_prefetch(refs[i + 16].e + 64);
    }
    /* One key's records: its last body, and the largest number its tombstones delete. */
    int64_t j = i;
    const scan_ref *last = NULL;
    int64_t dead = 0;
    for (; j < n && (j == i || compare_keys(&refs[j], &refs[i]) == 0); j++) {
      if (refs[j].tombstone) {
        if (refs[j].seq > dead) dead = refs[j].seq;
      } else if (last == NULL || refs[j].seq > last->seq) {
        last = &refs[j];
      }
    }
    const scan_ref *first = &refs[i];
    int live = last != NULL && last->seq > dead;
    /* Every other body of the key is dead where it lies (fresh: the lock is held already). */
    for (int64_t k = i; k < j; k++) {
      const scan_ref *r = &refs[k];
      if (r->tombstone || (live && r == last)) continue;
      const uint8_t *volume_at = r->e + 2 + r->len + FSGW_INDEX_RECORD_AT;
      uint32_t volume = (uint32_t)volume_at[0] | (uint32_t)volume_at[1] << 8 | (uint32_t)volume_at[2] << 16 | (uint32_t)volume_at[3] << 24;
      if (fresh) dead_note(ix, r->e + 1, r->len, volume);
      else fsgw_index_dead_add(ix, r->e + 1, (int32_t)r->len, volume);
    }
    i = j;
    if (fresh) {
      if (!live) continue;
      const uint8_t *body = last->e; /* (the only entry read after the sort) */
      if (builder_add(ix, builder, body + 1, body[0], body + 2 + body[0]) != 0) {
        rc = -ENOMEM;
        break;
      }
      continue;
    }
    const uint8_t *e = live ? last->e : first->e;
    const uint8_t *key = e + 1, *meta = live ? e + 2 + e[0] : NULL;
    int32_t len = e[0];
    int32_t h = fsgw_index_get(ix, key, len, held);
    if (h > 0 && (held[16] & META_VOLUME)) {
      /* The index holds a record of the key already (a checkpoint's): the later stays. The same
       * number in a volume that is gone is the record a compaction copied here. */
      int64_t hs = seq_of(held);
      int replace = live && (last->seq > hs || (last->seq == hs && !has_volume(ids, nids, volume_of(held))));
      if (replace || hs <= dead) fsgw_index_remove(ix, key, len);
      if (replace && fsgw_index_add(ix, key, len, meta) < 0) {
        rc = -ENOMEM;
        break;
      }
      continue;
    }
    if (!live) continue;
    if (h > 0 && !(held[16] & META_VOLUME)) {
      /* A file of the key stands beside the record: a crash came between a commit and the
       * clean-up of what it replaced. The later one stays (a tie: the record, which is written
       * after the file it replaces is renamed); the other is reported for removal, with the
       * record's sequence number (what its tombstone names). */
      int record_wins = get_i64(meta + 8) >= get_i64(held + 8);
      if (*used + 10 + len > cap) {
        rc = -E2BIG;
        break;
      }
      conflicts[*used] = record_wins ? 1 : 2;
      conflicts[*used + 1] = (uint8_t)len;
      memcpy(conflicts + *used + 2, key, (size_t)len);
      put_i64(conflicts + *used + 2 + len, seq_of(meta));
      *used += 10 + len;
      reported++;
      if (!record_wins) {
        fsgw_index_dead_add(ix, key, len, volume_of(meta)); /* deleted by a tombstone once the scan ends */
        continue;
      }
    }
    if (fsgw_index_add(ix, key, len, meta) < 0) {
      rc = -ENOMEM;
      break;
    }
  }
  if (fresh) {
    if (rc == 0 && builder_flush(ix, builder) != 0) rc = -ENOMEM;
    free(builder);
    pthread_rwlock_unlock(&ix->lock);
  }
  munmap(refs, refs_bytes);
  return rc < 0 ? rc : reported;
}

int32_t fsgw_index_drop_missing(fsgw_index *ix, const uint32_t *ids, int32_t n) {
  /* Keys first (under the read lock), removed after: [len][key]... */
  size_t cap = 1 << 16, used = 0;
  uint8_t *keys = malloc(cap);
  if (keys == NULL) return -ENOMEM;
  int32_t count = 0;
  pthread_rwlock_rdlock(&ix->lock);
  for (size_t li = 0; li < ix->nleaves; li++) {
    const leaf *l = ix->leaves[li];
    for (uint32_t off = 0; off < l->used; off += entry_bytes(l->data + off)) {
      const uint8_t *e = l->data + off, *meta = e + 1 + e[0];
      if (!(meta[16] & META_VOLUME) || has_volume(ids, n, volume_of(meta))) continue;
      if (used + 1 + e[0] > cap) {
        uint8_t *grown = realloc(keys, cap * 2);
        if (grown == NULL) {
          pthread_rwlock_unlock(&ix->lock);
          free(keys);
          return -ENOMEM;
        }
        keys = grown;
        cap *= 2;
      }
      memcpy(keys + used, e, 1u + e[0]);
      used += 1u + e[0];
      count++;
    }
  }
  pthread_rwlock_unlock(&ix->lock);
  for (size_t off = 0; off < used; off += 1u + keys[off]) fsgw_index_remove(ix, keys + off + 1, keys[off]);
  free(keys);
  /* Bodies in volumes that are gone are not dead anywhere (the removals above noted some). */
  dead_forget(ix, 0, 1, ids, n);
  return count;
}

/* ---- checkpoints of the records ---- */

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -errno;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* A checkpoint ends with the number of records (int64 LE), of dead bodies (int64 LE), whether the
 * set of dead bodies was full (uint32 LE), and the CRC-32C of everything before (uint32 LE). */
#define CHECKPOINT_FOOTER_BYTES 24

double fsgw_index_save_records(fsgw_index *ix, const char *path, const uint8_t *head, int32_t head_len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  size_t cap = 1 << 20, used = 0;
  uint8_t *buf = malloc(cap);
  int rc = buf == NULL ? -ENOMEM : write_all(fd, head, (size_t)head_len);
  uint32_t crc = fsgw_crc32c(0, head, (size_t)head_len);
  int64_t count = 0;
  pthread_rwlock_rdlock(&ix->lock);
  for (size_t li = 0; rc == 0 && li < ix->nleaves; li++) {
    const leaf *l = ix->leaves[li];
    for (uint32_t off = 0; rc == 0 && off < l->used; off += entry_bytes(l->data + off)) {
      const uint8_t *e = l->data + off;
      if (!(e[1 + e[0] + 16] & META_VOLUME)) continue;
      uint32_t n = entry_bytes(e);
      if (used + n > cap) {
        crc = fsgw_crc32c(crc, buf, used);
        rc = write_all(fd, buf, used);
        used = 0;
      }
      memcpy(buf + used, e, n);
      used += n;
      count++;
    }
  }
  /* Then the dead bodies, each slot as it is kept (uint64 LE), and whether the set was full. */
  int64_t dead = 0;
  int full = ix->dead_full;
  for (int part = 0; rc == 0 && ix->dead != NULL && part < DEAD_PARTS; part++) {
    const dead_part *p = &ix->dead[part];
    for (uint32_t i = 0; rc == 0 && i < p->cap; i++) {
      if (p->slots[i] == 0) continue;
      if (used + 8 > cap) {
        crc = fsgw_crc32c(crc, buf, used);
        rc = write_all(fd, buf, used);
        used = 0;
      }
      put_i64(buf + used, (int64_t)p->slots[i]);
      used += 8;
      dead++;
    }
  }
  pthread_rwlock_unlock(&ix->lock);
  if (rc == 0) {
    crc = fsgw_crc32c(crc, buf, used);
    rc = write_all(fd, buf, used);
  }
  if (rc == 0) {
    uint8_t footer[CHECKPOINT_FOOTER_BYTES];
    put_i64(footer, count);
    put_i64(footer + 8, dead);
    for (int i = 0; i < 4; i++) footer[16 + i] = (uint8_t)((uint32_t)full >> (8 * i));
    crc = fsgw_crc32c(crc, footer, 20);
    for (int i = 0; i < 4; i++) footer[20 + i] = (uint8_t)(crc >> (8 * i));
    rc = write_all(fd, footer, CHECKPOINT_FOOTER_BYTES);
  }
  if (rc == 0 && fsync(fd) != 0) rc = -errno;
  free(buf);
  if (close(fd) != 0 && rc == 0) rc = -errno;
  return rc < 0 ? rc : (double)count;
}

double fsgw_index_load_records(fsgw_index *ix, const char *path, int32_t head_len) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  size_t size = (size_t)st.st_size;
  if (size < (size_t)head_len + CHECKPOINT_FOOTER_BYTES) {
    close(fd);
    return -EBADMSG;
  }
  uint8_t *data = huge_alloc(size);
  if (data == NULL) {
    close(fd);
    return -ENOMEM;
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, data + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  double rc = 0;
  /* The whole file checked before anything is added: a damaged checkpoint adds nothing. */
  uint32_t crc = fsgw_crc32c(0, data, size - 4);
  uint32_t want = (uint32_t)data[size - 4] | (uint32_t)data[size - 3] << 8 | (uint32_t)data[size - 2] << 16 | (uint32_t)data[size - 1] << 24;
  if (got != size || crc != want) {
    rc = -EBADMSG;
    goto out;
  }
  const uint8_t *footer = data + size - CHECKPOINT_FOOTER_BYTES;
  int64_t count = get_i64(footer), dead = get_i64(footer + 8);
  int full = footer[16] != 0;
  if (dead < 0 || (uint64_t)dead > (size - CHECKPOINT_FOOTER_BYTES - (size_t)head_len) / 8) {
    rc = -EBADMSG;
    goto out;
  }
  const uint8_t *dead_at = footer - 8 * dead;
  const uint8_t *p = data + head_len, *end = dead_at;
  pthread_rwlock_wrlock(&ix->lock);
  int fresh = ix->nleaves == 0;
  leaf_builder *builder = fresh ? malloc(sizeof *builder) : NULL;
  if (fresh && builder != NULL) builder->used = builder->count = 0;
  if (!fresh) pthread_rwlock_unlock(&ix->lock);
  int64_t n = 0;
  while (p < end && rc == 0) {
    uint32_t len = p[0];
    const uint8_t *meta = p + 1 + len;
    if (len == 0 || p + 1 + len + 17 > end || !(meta[16] & META_VOLUME) || p + entry_bytes(p) > end) {
      rc = -EBADMSG;
      break;
    }
    int r = 0;
    if (fresh) {
      r = builder == NULL ? -ENOMEM : builder_add(ix, builder, p + 1, len, meta);
    } else {
      /* A file of the key was loaded first: it was committed after the checkpoint (at a clean stop no
       * key is both), so it stays, and the record (deleted by a tombstone in a tail) is not added. */
      uint8_t held[FSGW_INDEX_META_BYTES_MAX];
      int32_t h = fsgw_index_get(ix, p + 1, (int32_t)len, held);
      if (h > 0 && !(held[16] & META_VOLUME)) fsgw_index_dead_add(ix, p + 1, (int32_t)len, volume_of(meta));
      else if (fsgw_index_add(ix, p + 1, (int32_t)len, meta) < 0) r = -ENOMEM;
    }
    if (r != 0) rc = r;
    p += entry_bytes(p);
    n++;
  }
  if (rc == 0 && n != count) rc = -EBADMSG;
  if (fresh && rc == 0 && builder != NULL && builder_flush(ix, builder) != 0) rc = -ENOMEM;
  if (!fresh) pthread_rwlock_wrlock(&ix->lock);
  for (int64_t d = 0; rc == 0 && d < dead; d++) dead_put(ix, (uint64_t)get_i64(dead_at + 8 * d));
  if (rc == 0 && full) ix->dead_full = 1;
  free(builder);
  pthread_rwlock_unlock(&ix->lock);
  if (rc == 0) rc = (double)n;
out:
  munmap(data, size);
  return rc;
}
