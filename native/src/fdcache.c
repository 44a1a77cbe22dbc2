/* Open verified chunk objects, kept open between reads (see als.h, struct als_fdc). Reopening an
 * object by path on every READ costs a path walk, an open and a close (the larger part of a 4 KiB
 * read served from the page cache), and loses the file's readahead state, so a cold sequential
 * read of a big object got no readahead at all. */
#include "als.h"

#include <stdlib.h>
#include <unistd.h>

static uint32_t fdc_hash(const struct lt_table *t, uint32_t ci) {
  uint64_t h = ((uint64_t)(uintptr_t)t >> 4) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)ci * 0xc2b2ae3d27d4eb4full);
  return (uint32_t)(h >> 32) % ALS_FDC_SLOTS;
}

void als_fdc_init(struct als_fdc *c) {
  pthread_mutex_init(&c->mu, NULL);
  for (uint32_t i = 0; i < ALS_FDC_SLOTS; i++) c->e[i] = (struct als_fdc_entry){.t = NULL, .ci = 0, .fd = -1, .refs = 0, .dead = 0};
}

void als_fdc_destroy(struct als_fdc *c) {
  pthread_mutex_lock(&c->mu); /* kept usable: a slot thread that outlived unmount may still forget tables */
  for (uint32_t i = 0; i < ALS_FDC_SLOTS; i++) {
    if (c->e[i].fd >= 0) close(c->e[i].fd);
    c->e[i] = (struct als_fdc_entry){.t = NULL, .ci = 0, .fd = -1, .refs = 0, .dead = 0};
  }
  pthread_mutex_unlock(&c->mu);
}

int als_fdc_get(struct als_fdc *c, const struct lt_table *t, uint32_t ci, int *slot) {
  uint32_t i = fdc_hash(t, ci);
  int fd = -1;
  pthread_mutex_lock(&c->mu);
  struct als_fdc_entry *e = &c->e[i];
  if (e->t == t && e->ci == ci && e->fd >= 0 && !e->dead) {
    e->refs++;
    fd = e->fd;
    *slot = (int)i;
  }
  pthread_mutex_unlock(&c->mu);
  return fd;
}

int als_fdc_offer(struct als_fdc *c, const struct lt_table *t, uint32_t ci, int fd) {
  uint32_t i = fdc_hash(t, ci);
  int old = -1, slot = -1;
  pthread_mutex_lock(&c->mu);
  struct als_fdc_entry *e = &c->e[i];
  if (e->refs == 0) { /* free, or idle: the newer object takes the slot */
    old = e->fd;
    *e = (struct als_fdc_entry){.t = t, .ci = ci, .fd = fd, .refs = 1, .dead = 0};
    slot = (int)i;
  }
  pthread_mutex_unlock(&c->mu);
  if (old >= 0) close(old);
  return slot;
}

void als_fdc_release(struct als_fdc *c, int slot, int stale) {
  if (slot < 0 || slot >= (int)ALS_FDC_SLOTS) return;
  int old = -1;
  pthread_mutex_lock(&c->mu);
  struct als_fdc_entry *e = &c->e[slot];
  if (stale) e->dead = 1;
  if (e->refs > 0) e->refs--;
  if (e->dead && e->refs == 0) {
    old = e->fd;
    *e = (struct als_fdc_entry){.t = NULL, .ci = 0, .fd = -1, .refs = 0, .dead = 0};
  }
  pthread_mutex_unlock(&c->mu);
  if (old >= 0) close(old);
}

void als_fdc_forget_table(struct als_fdc *c, const struct lt_table *t) {
  pthread_mutex_lock(&c->mu);
  for (uint32_t i = 0; i < ALS_FDC_SLOTS; i++) {
    struct als_fdc_entry *e = &c->e[i];
    if (e->t != t) continue;
    if (e->refs > 0) { /* in use by a reader: closed when it gives it back */
      e->dead = 1;
      continue;
    }
    if (e->fd >= 0) close(e->fd);
    *e = (struct als_fdc_entry){.t = NULL, .ci = 0, .fd = -1, .refs = 0, .dead = 0};
  }
  pthread_mutex_unlock(&c->mu);
}

unsigned als_fdc_sweep_unlinked(struct als_fdc *c) {
  unsigned closed = 0;
  pthread_mutex_lock(&c->mu);
  for (uint32_t i = 0; i < ALS_FDC_SLOTS; i++) {
    struct als_fdc_entry *e = &c->e[i];
    if (e->fd < 0 || e->refs > 0) continue;
    struct stat st;
    if (fstat(e->fd, &st) == 0 && st.st_nlink > 0) continue;
    close(e->fd);
    *e = (struct als_fdc_entry){.t = NULL, .ci = 0, .fd = -1, .refs = 0, .dead = 0};
    closed++;
  }
  pthread_mutex_unlock(&c->mu);
  return closed;
}
