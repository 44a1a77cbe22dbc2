#include "table.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int in_strings(const struct lt_table *t, uint32_t off, uint32_t len) {
  return (uint64_t)off + (uint64_t)len <= (uint64_t)t->n_strings;
}

static int name_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c != 0) return c;
  return al < bl ? -1 : al > bl ? 1 : 0;
}

static const char *check(const struct lt_table *t) {
  if (t->n_nodes == 0) return "table has no root";
  if ((t->nodes[0].mode & S_IFMT) != S_IFDIR) return "root is not a directory";
  for (uint32_t i = 0; i < t->n_nodes; i++) {
    const struct lt_node *n = &t->nodes[i];
    if (n->parent >= t->n_nodes) return "parent out of range";
    if (!in_strings(t, n->name_off, n->name_len)) return "name out of range";
    if (!in_strings(t, n->link_off, n->link_len)) return "link target out of range";
    if ((uint64_t)n->child_first + n->child_count > t->n_dirents) return "children out of range";
    if ((uint64_t)n->xattr_first + n->xattr_count > t->n_xattrs) return "xattrs out of range";
    if ((uint64_t)n->chunk_first + n->chunk_count > t->n_chunks) return "chunks out of range";
    if (n->mtime_nsec >= 1000000000u) return "mtime nsec out of range";
    unsigned type = n->mode & S_IFMT;
    if (type != S_IFDIR && n->child_count != 0) return "children on a non-directory";
    if (type != S_IFREG && n->chunk_count != 0) return "chunks on a non-regular file";
    if (type == S_IFREG) {
      uint64_t pos = 0;
      for (uint32_t c = 0; c < n->chunk_count; c++) {
        const struct lt_chunk *ch = &t->chunks[n->chunk_first + c];
        if (ch->file_offset != pos || ch->size == 0 || ch->size > (1ull << 40)) return "chunks not contiguous";
        pos += ch->size;
      }
      if (n->chunk_count != 0 && pos != n->size) return "chunks do not cover the file";
    }
    for (uint32_t c = 0; c < n->child_count; c++) {
      const struct lt_dirent *d = &t->dirents[n->child_first + c];
      if (d->node >= t->n_nodes || d->node == 0) return "dirent node out of range";
      if (d->name_len == 0 || d->name_len > 255 || !in_strings(t, d->name_off, d->name_len)) return "dirent name out of range";
      if (memchr(t->strings + d->name_off, '/', d->name_len) || memchr(t->strings + d->name_off, 0, d->name_len)) return "dirent name has '/' or NUL";
      if (c > 0) {
        const struct lt_dirent *p = d - 1;
        if (name_cmp(t->strings + p->name_off, p->name_len, t->strings + d->name_off, d->name_len) >= 0) return "dirents not sorted";
      }
    }
    for (uint32_t x = 0; x < n->xattr_count; x++) {
      const struct lt_xattr *a = &t->xattrs[n->xattr_first + x];
      if (a->name_len == 0 || !in_strings(t, a->name_off, a->name_len) || !in_strings(t, a->val_off, a->val_len)) return "xattr out of range";
    }
  }
  return NULL;
}

struct lt_table *lt_table_new(const uint8_t *data, size_t len, const char **err) {
  uint32_t h[8];
  *err = NULL;
  if (len < LT_HEADER_BYTES) { *err = "table shorter than its header"; return NULL; }
  memcpy(h, data, sizeof h);
  if (h[0] != LT_MAGIC || h[1] != LT_VERSION) { *err = "bad table magic or version"; return NULL; }
  uint64_t want = LT_HEADER_BYTES + (uint64_t)h[2] * sizeof(struct lt_node) + (uint64_t)h[5] * sizeof(struct lt_chunk) +
                  (uint64_t)h[3] * sizeof(struct lt_dirent) + (uint64_t)h[4] * sizeof(struct lt_xattr) + (uint64_t)h[6];
  if (want != len) { *err = "table length does not match its header"; return NULL; }
  struct lt_table *t = calloc(1, sizeof *t);
  if (!t) { *err = "out of memory"; return NULL; }
  t->buf = malloc(len);
  t->verified = calloc(h[5] ? h[5] : 1, sizeof *t->verified);
  t->backing = calloc(h[2] ? h[2] : 1, sizeof *t->backing);
  t->used = calloc(h[5] ? h[5] : 1, sizeof *t->used);
  if (!t->buf || !t->verified || !t->backing || !t->used) {
    free(t->buf); free(t->verified); free(t->backing); free((void *)t->used); free(t);
    *err = "out of memory";
    return NULL;
  }
  memcpy(t->buf, data, len);
  t->len = len;
  t->n_nodes = h[2]; t->n_dirents = h[3]; t->n_xattrs = h[4]; t->n_chunks = h[5]; t->n_strings = h[6];
  size_t off = LT_HEADER_BYTES;
  t->nodes = (const struct lt_node *)(t->buf + off); off += (size_t)t->n_nodes * sizeof(struct lt_node);
  t->chunks = (const struct lt_chunk *)(t->buf + off); off += (size_t)t->n_chunks * sizeof(struct lt_chunk);
  t->dirents = (const struct lt_dirent *)(t->buf + off); off += (size_t)t->n_dirents * sizeof(struct lt_dirent);
  t->xattrs = (const struct lt_xattr *)(t->buf + off); off += (size_t)t->n_xattrs * sizeof(struct lt_xattr);
  t->strings = t->buf + off;
  pthread_mutex_init(&t->vmu, NULL);
  const char *bad = check(t);
  if (bad) { *err = bad; lt_table_free(t); return NULL; }
  return t;
}

void lt_table_free(struct lt_table *t) {
  if (!t) return;
  pthread_mutex_destroy(&t->vmu);
  free(t->verified);
  free(t->backing);
  free((void *)t->used);
  free(t->buf);
  free(t);
}

int64_t lt_lookup(const struct lt_table *t, uint32_t dir, const uint8_t *name, size_t name_len) {
  if (dir >= t->n_nodes) return -1;
  const struct lt_node *n = &t->nodes[dir];
  size_t lo = 0, hi = n->child_count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const struct lt_dirent *d = &t->dirents[n->child_first + mid];
    int c = name_cmp(t->strings + d->name_off, d->name_len, name, name_len);
    if (c == 0) return d->node;
    if (c < 0) lo = mid + 1; else hi = mid;
  }
  return -1;
}

uint32_t lt_first_chunk_after(const struct lt_table *t, const struct lt_node *n, uint64_t pos) {
  uint32_t lo = 0, hi = n->chunk_count;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    const struct lt_chunk *c = &t->chunks[n->chunk_first + mid];
    if (c->file_offset + c->size > pos) hi = mid; else lo = mid + 1;
  }
  return lo;
}

size_t lt_path(const struct lt_table *t, uint32_t idx, uint8_t *out, size_t cap) {
  /* Walk to the root collecting names back to front, then move them to the front. */
  size_t pos = cap;
  unsigned depth = 0;
  while (idx != 0 && idx < t->n_nodes && depth++ < 4096) {
    const struct lt_node *n = &t->nodes[idx];
    size_t need = n->name_len + (pos == cap ? 0 : 1);
    if (need > pos) break;
    if (pos != cap) out[--pos] = '/';
    pos -= n->name_len;
    memcpy(out + pos, t->strings + n->name_off, n->name_len);
    idx = n->parent;
  }
  size_t len = cap - pos;
  memmove(out, out + pos, len);
  return len;
}
