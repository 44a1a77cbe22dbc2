/*
 * One layer's index as the JS side encodes it (src/fuse/layer-table.ts): one flat little-endian
 * buffer, copied into C once, checked once (every offset and count bounds-checked), immutable
 * afterwards, so worker threads read it without locks. Only the per-chunk "verified" state is
 * mutable, behind its own mutex.
 *
 *   header  8 × u32: magic "LATB", version 1, nodes, dirents, xattrs, chunks, string bytes, 0
 *   nodes   [nodes]   struct lt_node (88 bytes); node i has inode number i + 1; node 0 is the root dir
 *   chunks  [chunks]  struct lt_chunk (56 bytes); per regular file, sorted, contiguous, covering [0,size)
 *   dirents [dirents] struct lt_dirent (12 bytes); per directory, sorted by name bytes (memcmp order)
 *   xattrs  [xattrs]  struct lt_xattr (16 bytes)
 *   strings raw bytes (names, link targets, xattr names and values)
 */
#ifndef LAZY_ALS_TABLE_H
#define LAZY_ALS_TABLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LT_MAGIC 0x4254414cu /* "LATB" little-endian */
#define LT_VERSION 1u
#define LT_HEADER_BYTES 32u

struct lt_node {
  uint32_t mode; /* S_IFMT | permission bits */
  uint32_t uid, gid, nlink;
  uint64_t size;
  int64_t mtime_sec;
  uint32_t mtime_nsec, rdev_major, rdev_minor;
  uint32_t parent; /* node index; the root is its own parent */
  uint32_t name_off, name_len; /* first name (for paths in logs); root: empty */
  uint32_t link_off, link_len;
  uint32_t child_first, child_count;
  uint32_t xattr_first, xattr_count;
  uint32_t chunk_first, chunk_count;
};

struct lt_chunk {
  uint64_t file_offset;
  uint64_t size;
  uint8_t digest[32]; /* sha256 of the uncompressed bytes: the cache object's name */
  uint32_t flags;     /* LT_CHUNK_ZEROS: a hole, never cached as an object (served by JS) */
  uint32_t pad;
};
#define LT_CHUNK_ZEROS 1u

struct lt_dirent {
  uint32_t name_off, name_len, node;
};

struct lt_xattr {
  uint32_t name_off, name_len, val_off, val_len;
};

/* What a verified cache object must still look like (a rewrite or a replacement changes it). */
struct lt_verified {
  uint64_t dev, ino, size;
  int64_t ctime_sec, ctime_nsec;
  int ok;
};

/* The kernel keeps one I/O mode per inode: while a file of it is open in passthrough mode, every
 * other open must be passthrough with the same backing file, and while one is open in cached mode
 * (page cache, READs to us) a passthrough open fails with EIO. So the open files of a node that
 * could be passthrough are counted per mode: `refs` share the backing id `id` (closed with the last
 * of them), `cached` are open in cached mode. */
struct lt_backing {
  int32_t id;
  uint32_t refs;
  uint32_t cached;
};

struct lt_table {
  uint8_t *buf; /* owns everything below */
  size_t len;
  uint32_t n_nodes, n_dirents, n_xattrs, n_chunks, n_strings;
  const struct lt_node *nodes;
  const struct lt_chunk *chunks;
  const struct lt_dirent *dirents;
  const struct lt_xattr *xattrs;
  const uint8_t *strings;
  pthread_mutex_t vmu; /* guards verified[] and backing[] */
  struct lt_verified *verified; /* [n_chunks] */
  struct lt_backing *backing;   /* [n_nodes]: passthrough backing file ids of open files */
  /* Chunks served from their cache objects since JS last collected them (the eviction clock must see
   * reads C answers); any_used says whether to look. Relaxed: a lost mark only ages an object early. */
  _Atomic unsigned char *used; /* [n_chunks] */
  atomic_int any_used;
  atomic_int quarantined;       /* set from JS: the layer does not match its blob, reads answer EIO */
};

/* Copies `data` and checks it. NULL with *err set (static string) when it is malformed. */
struct lt_table *lt_table_new(const uint8_t *data, size_t len, const char **err);
void lt_table_free(struct lt_table *t);

/* Child of directory node `dir` named `name`; -1 when absent. */
int64_t lt_lookup(const struct lt_table *t, uint32_t dir, const uint8_t *name, size_t name_len);

/* Index of the first chunk of node `n` whose end lies after `pos` (n->chunk_count when none). */
uint32_t lt_first_chunk_after(const struct lt_table *t, const struct lt_node *n, uint64_t pos);

/* Note that chunk `ci` was served from its cache object (cheap: one relaxed load on repeat reads). */
static inline void lt_mark_used(struct lt_table *t, uint32_t ci) {
  if (atomic_load_explicit(&t->used[ci], memory_order_relaxed)) return;
  atomic_store_explicit(&t->used[ci], 1, memory_order_relaxed);
  atomic_store_explicit(&t->any_used, 1, memory_order_relaxed);
}

/* Path of node `idx` relative to the layer root ("a/b"), for logs; bytes written (≤ cap). */
size_t lt_path(const struct lt_table *t, uint32_t idx, uint8_t *out, size_t cap);

#endif
