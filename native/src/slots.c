/*
 * Slot lifecycle: a layer's table is published into a slot; its node ids (slot << 32 | index + 1)
 * are handed to the kernel, which may keep them (dentries, open files, overlayfs lower layers) long
 * after JS has stopped serving the layer. The rules that let a slot be freed and its number reused
 * without ever sending a stale node id into another layer's table:
 *
 *  - every node id the kernel receives (lookup replies, readdirplus entries) counts one lookup on
 *    its slot, taken before the reply is sent and given back if the kernel did not take it; every
 *    FORGET gives back what it names. The kernel's own count is exact (it forgets what it fails to
 *    link), so ours is too;
 *  - (the same thread drops the page cache of a quarantined layer's files: als_queue_inval_inode)
 *  - JS retires a slot when it drops the layer (evicted, or released by c/storage): the slot keeps
 *    answering the node ids the kernel still holds, and the `diff` entry is invalidated in the
 *    kernel (from this file's thread: the kernel takes the parent's lock, which a lookup waiting
 *    for JS may hold) so unused dentries go and their FORGETs come;
 *  - a retired slot with no lookups left is unlinked from `slots[]`, then freed once every handler
 *    that might have read the old pointer has returned (two-epoch grace: handlers enter/leave an
 *    epoch, the reclaimer flips it and waits for the old one to drain), and JS is told; the number
 *    goes back to the free list only when JS has forgotten the slot (`slotReleased`), so a late
 *    notification can never hit a newer layer in the same slot.
 *
 * Control-node FORGETs (node ids below 2^32) are passed to JS, which keeps a path per control node
 * only while the kernel holds it.
 */
#include "als.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct als_inval {
  uint64_t parent;
  char name[256];
  size_t len;
  struct als_inval *next;
};

/* --- epochs ------------------------------------------------------------------------------------ */

unsigned als_enter(struct als_fs *fs) {
  for (;;) {
    unsigned e = atomic_load(&fs->epoch) & 1u;
    atomic_fetch_add(&fs->active[e], 1);
    if ((atomic_load(&fs->epoch) & 1u) == e) return e;
    atomic_fetch_sub(&fs->active[e], 1); /* flipped meanwhile: join the new epoch */
  }
}

void als_leave(struct als_fs *fs, unsigned e) { atomic_fetch_sub(&fs->active[e], 1); }

/* --- notifications to JS ----------------------------------------------------------------------- */

static void notify_js(struct als_fs *fs, enum als_op op, uint64_t nodeid, uint64_t a) {
  struct als_pending *p = calloc(1, sizeof *p);
  if (!p) return;
  p->op = op;
  p->nodeid = nodeid;
  p->a = a;
  atomic_store(&p->refs, 1);
  if (napi_call_threadsafe_function(fs->tsfn, p, napi_tsfn_nonblocking) != napi_ok) als_pending_unref(p);
}

/* --- slots ------------------------------------------------------------------------------------- */

static uint32_t take_number(struct als_fs *fs) {
  if (fs->n_free > 0) return fs->free_nums[--fs->n_free];
  if (fs->next_slot < fs->max_slots) return fs->next_slot++;
  return 0;
}

uint32_t als_slot_add(struct als_fs *fs, struct lt_table *t, uint32_t alias_of, uint64_t ino_base, const char **err) {
  struct als_slot *s = calloc(1, sizeof *s);
  if (!s) { *err = "out of memory"; return 0; }
  s->ino_base = ino_base;
  pthread_mutex_lock(&fs->slot_mu);
  if (t) {
    s->t = t;
    s->owner = s;
    atomic_store(&s->trefs, 1);
  } else {
    struct als_slot *from = alias_of > 0 && alias_of < ALS_MAX_SLOTS ? atomic_load(&fs->slots[alias_of]) : NULL;
    if (!from || from->retired) {
      pthread_mutex_unlock(&fs->slot_mu);
      free(s);
      *err = "alias of a slot that is not published";
      return 0;
    }
    s->owner = from->owner;
    s->t = s->owner->t;
    atomic_fetch_add(&s->owner->trefs, 1);
  }
  uint32_t num = take_number(fs);
  if (num == 0) {
    if (!t) atomic_fetch_sub(&s->owner->trefs, 1); /* the owner is published: never the last one */
    pthread_mutex_unlock(&fs->slot_mu);
    free(s);
    *err = "too many layers on this mount";
    return 0;
  }
  s->num = num;
  fs->live_slots++;
  atomic_store_explicit(&fs->slots[num], s, memory_order_release);
  pthread_mutex_unlock(&fs->slot_mu);
  return num;
}

/* With slot_mu held: queue `s` for reclaim when it is retired and the kernel holds none of its ids. */
static void maybe_queue(struct als_fs *fs, struct als_slot *s) {
  if (!s->retired || s->queued || atomic_load(&s->nlookup) != 0) return;
  s->queued = 1;
  s->next = fs->ready;
  fs->ready = s;
  pthread_cond_signal(&fs->slot_cv);
}

int als_slot_retire(struct als_fs *fs, uint32_t num, uint64_t parent, const uint8_t *name, size_t len) {
  if (num == 0 || num >= ALS_MAX_SLOTS || len == 0 || len > 255) return -EINVAL;
  struct als_inval *iv = parent != 0 ? calloc(1, sizeof *iv) : NULL;
  pthread_mutex_lock(&fs->slot_mu);
  struct als_slot *s = atomic_load(&fs->slots[num]);
  if (!s || s->retired) {
    pthread_mutex_unlock(&fs->slot_mu);
    free(iv);
    return -ENOENT;
  }
  s->retired = 1;
  maybe_queue(fs, s);
  if (iv) {
    iv->parent = parent;
    memcpy(iv->name, name, len);
    iv->len = len;
    iv->next = fs->invals;
    fs->invals = iv;
    pthread_cond_signal(&fs->slot_cv);
  }
  pthread_mutex_unlock(&fs->slot_mu);
  return 0;
}

void als_queue_inval_inode(struct als_fs *fs, uint64_t ino) {
  struct als_inval *iv = calloc(1, sizeof *iv);
  if (!iv) return;
  iv->parent = ino; /* len 0: the inode's cached pages, not an entry */
  pthread_mutex_lock(&fs->slot_mu);
  iv->next = fs->invals;
  fs->invals = iv;
  pthread_cond_signal(&fs->slot_cv);
  pthread_mutex_unlock(&fs->slot_mu);
}

void als_slot_release_number(struct als_fs *fs, uint32_t num) {
  pthread_mutex_lock(&fs->slot_mu);
  if (num > 0 && num < ALS_MAX_SLOTS && atomic_load(&fs->slots[num]) == NULL && fs->n_free < ALS_MAX_SLOTS)
    fs->free_nums[fs->n_free++] = num;
  pthread_mutex_unlock(&fs->slot_mu);
}

int als_slot_hold(struct als_fs *fs, struct als_slot *s) {
  (void)fs;
  atomic_fetch_add(&s->nlookup, 1);
  return 0;
}

void als_slot_forget(struct als_fs *fs, struct als_slot *s, uint64_t n) {
  uint64_t cur = atomic_load(&s->nlookup);
  uint64_t next;
  do {
    next = cur > n ? cur - n : 0; /* never below zero, whatever a broken kernel says */
  } while (!atomic_compare_exchange_weak(&s->nlookup, &cur, next));
  if (next != 0) return;
  pthread_mutex_lock(&fs->slot_mu);
  maybe_queue(fs, s);
  pthread_mutex_unlock(&fs->slot_mu);
}

void als_forget_one(struct als_fs *fs, fuse_ino_t ino, uint64_t nlookup) {
  if (ino == FUSE_ROOT_ID || nlookup == 0) return;
  uint64_t slot = (uint64_t)ino >> ALS_SLOT_SHIFT;
  if (slot == 0) {
    atomic_fetch_add(&fs->stats.control_forgets, 1);
    notify_js(fs, ALS_OP_FORGET, ino, nlookup);
    return;
  }
  if (slot >= ALS_MAX_SLOTS) return;
  struct als_slot *s = atomic_load_explicit(&fs->slots[slot], memory_order_acquire);
  if (s) als_slot_forget(fs, s, nlookup);
}

/* Drop one slot struct (and its table with the last slot sharing it). slot_mu not needed: the slot
 * is unreachable from `slots[]` and past its grace period. */
static void free_slot(struct als_fs *fs, struct als_slot *s) {
  struct als_slot *owner = s->owner;
  if (atomic_fetch_sub(&owner->trefs, 1) == 1) {
    als_fdc_forget_table(&fs->fdc, owner->t); /* before the pointer can be reused by a new table */
    lt_table_free(owner->t);
    if (owner != s) free(owner);
    free(s);
    return;
  }
  if (owner != s) free(s); /* an owner stays while aliases use its table */
}

/* --- the slot thread: kernel invalidations and reclaim -------------------------------------------- */

void *als_slot_main(void *arg) {
  struct als_fs *fs = arg;
  pthread_mutex_lock(&fs->slot_mu);
  while (!fs->slot_stopping) {
    if (fs->invals) {
      struct als_inval *iv = fs->invals;
      fs->invals = iv->next;
      pthread_mutex_unlock(&fs->slot_mu);
      /* ENOENT when the kernel no longer has the entry or inode: nothing to drop. */
      if (iv->len == 0) fuse_lowlevel_notify_inval_inode(fs->se, iv->parent, 0, 0);
      else fuse_lowlevel_notify_inval_entry(fs->se, iv->parent, iv->name, iv->len);
      free(iv);
      pthread_mutex_lock(&fs->slot_mu);
      continue;
    }
    if (!fs->grace && fs->ready) {
      fs->grace = fs->ready;
      fs->ready = NULL;
      for (struct als_slot *s = fs->grace; s; s = s->next) atomic_store_explicit(&fs->slots[s->num], NULL, memory_order_release);
      fs->grace_epoch = atomic_fetch_add(&fs->epoch, 1) & 1u;
      continue;
    }
    if (fs->grace) {
      if (atomic_load(&fs->active[fs->grace_epoch]) != 0) {
        /* Handlers of the old epoch are still running (they are short): look again shortly. */
        pthread_mutex_unlock(&fs->slot_mu);
        usleep(1000);
        pthread_mutex_lock(&fs->slot_mu);
        continue;
      }
      struct als_slot *list = fs->grace;
      fs->grace = NULL;
      while (list) {
        struct als_slot *s = list;
        list = s->next;
        uint32_t num = s->num;
        fs->live_slots--;
        free_slot(fs, s);
        atomic_fetch_add(&fs->stats.slots_freed, 1);
        notify_js(fs, ALS_OP_SLOT_FREED, 0, num); /* JS forgets it, then gives the number back */
      }
      continue;
    }
    pthread_cond_wait(&fs->slot_cv, &fs->slot_mu);
  }
  pthread_mutex_unlock(&fs->slot_mu);
  atomic_store(&fs->slot_done, 1);
  return NULL;
}

int als_slots_start(struct als_fs *fs, unsigned max_slots) {
  fs->max_slots = max_slots >= 2 && max_slots <= ALS_MAX_SLOTS ? max_slots : ALS_MAX_SLOTS;
  fs->next_slot = 1;
  pthread_cond_init(&fs->slot_cv, NULL);
  if (pthread_create(&fs->slot_thread, NULL, als_slot_main, fs) != 0) return -1;
  fs->slot_started = 1;
  return 0;
}

void als_slots_stop(struct als_fs *fs) {
  if (!fs->slot_started) return;
  pthread_mutex_lock(&fs->slot_mu);
  fs->slot_stopping = 1;
  pthread_cond_broadcast(&fs->slot_cv);
  pthread_mutex_unlock(&fs->slot_mu);
  /* An invalidation can wait on the kernel only while the connection lives; it is gone by now. */
  for (int i = 0; i < 300 && !atomic_load(&fs->slot_done); i++) usleep(10000);
  if (atomic_load(&fs->slot_done)) pthread_join(fs->slot_thread, NULL);
  else pthread_detach(fs->slot_thread);
  fs->slot_started = 0;
}

/* At unmount, once no FUSE thread runs: every slot, live, retired or in grace, and every table. */
void als_slots_free_all(struct als_fs *fs) {
  pthread_mutex_lock(&fs->slot_mu);
  for (uint32_t i = 1; i < ALS_MAX_SLOTS; i++) {
    struct als_slot *s = atomic_load(&fs->slots[i]);
    if (!s) continue;
    atomic_store(&fs->slots[i], NULL);
    free_slot(fs, s);
  }
  while (fs->grace) {
    struct als_slot *s = fs->grace;
    fs->grace = s->next;
    free_slot(fs, s);
  }
  fs->ready = NULL; /* its slots were still in slots[]: freed above */
  while (fs->invals) {
    struct als_inval *iv = fs->invals;
    fs->invals = iv->next;
    free(iv);
  }
  fs->live_slots = 0;
  pthread_mutex_unlock(&fs->slot_mu);
}

/* --- cached reads seen by the eviction clock ------------------------------------------------------ */

size_t als_take_used(struct als_fs *fs, uint8_t *out, size_t cap_digests) {
  size_t n = 0;
  unsigned e = als_enter(fs);
  uint32_t hi;
  pthread_mutex_lock(&fs->slot_mu);
  hi = fs->next_slot;
  pthread_mutex_unlock(&fs->slot_mu);
  for (uint32_t i = 1; i < hi && n < cap_digests; i++) {
    struct als_slot *s = atomic_load_explicit(&fs->slots[i], memory_order_acquire);
    if (!s || !atomic_exchange(&s->t->any_used, 0)) continue;
    struct lt_table *t = s->t;
    for (uint32_t c = 0; c < t->n_chunks; c++) {
      if (!atomic_load_explicit(&t->used[c], memory_order_relaxed)) continue;
      if (n == cap_digests) {
        atomic_store(&t->any_used, 1); /* the rest next time */
        break;
      }
      atomic_store_explicit(&t->used[c], 0, memory_order_relaxed);
      memcpy(out + 32 * n++, t->chunks[c].digest, 32);
    }
  }
  als_leave(fs, e);
  return n;
}

/* --- every FUSE handler runs inside an epoch ------------------------------------------------------ */

#define FS(req) ((struct als_fs *)fuse_req_userdata(req))
#define GUARD(call)                     \
  do {                                  \
    struct als_fs *gfs_ = FS(req);      \
    unsigned e_ = als_enter(gfs_);      \
    call;                               \
    als_leave(gfs_, e_);                \
  } while (0)

static void g_init(void *u, struct fuse_conn_info *c) { als_ll_ops.init(u, c); }
static void g_lookup(fuse_req_t req, fuse_ino_t p, const char *n) { GUARD(als_ll_ops.lookup(req, p, n)); }
static void g_forget(fuse_req_t req, fuse_ino_t i, uint64_t n) { GUARD(als_ll_ops.forget(req, i, n)); }
static void g_forget_multi(fuse_req_t req, size_t c, struct fuse_forget_data *f) { GUARD(als_ll_ops.forget_multi(req, c, f)); }
static void g_getattr(fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi) { GUARD(als_ll_ops.getattr(req, i, fi)); }
static void g_readlink(fuse_req_t req, fuse_ino_t i) { GUARD(als_ll_ops.readlink(req, i)); }
static void g_getxattr(fuse_req_t req, fuse_ino_t i, const char *n, size_t s) { GUARD(als_ll_ops.getxattr(req, i, n, s)); }
static void g_listxattr(fuse_req_t req, fuse_ino_t i, size_t s) { GUARD(als_ll_ops.listxattr(req, i, s)); }
static void g_statfs(fuse_req_t req, fuse_ino_t i) { GUARD(als_ll_ops.statfs(req, i)); }
static void g_opendir(fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi) { GUARD(als_ll_ops.opendir(req, i, fi)); }
static void g_readdir(fuse_req_t req, fuse_ino_t i, size_t s, off_t o, struct fuse_file_info *fi) { GUARD(als_ll_ops.readdir(req, i, s, o, fi)); }
static void g_readdirplus(fuse_req_t req, fuse_ino_t i, size_t s, off_t o, struct fuse_file_info *fi) { GUARD(als_ll_ops.readdirplus(req, i, s, o, fi)); }
static void g_releasedir(fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi) { GUARD(als_ll_ops.releasedir(req, i, fi)); }
static void g_open(fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi) { GUARD(als_ll_ops.open(req, i, fi)); }
static void g_read(fuse_req_t req, fuse_ino_t i, size_t s, off_t o, struct fuse_file_info *fi) { GUARD(als_ll_ops.read(req, i, s, o, fi)); }
static void g_release(fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi) { GUARD(als_ll_ops.release(req, i, fi)); }
static void g_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, struct fuse_file_info *fi) { GUARD(als_ll_ops.create(req, p, n, m, fi)); }
static void g_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d) { GUARD(als_ll_ops.mknod(req, p, n, m, d)); }
static void g_rmdir(fuse_req_t req, fuse_ino_t p, const char *n) { GUARD(als_ll_ops.rmdir(req, p, n)); }
static void g_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m) { GUARD(als_ll_ops.mkdir(req, p, n, m)); }
static void g_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n) { GUARD(als_ll_ops.symlink(req, l, p, n)); }
static void g_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t p, const char *n) { GUARD(als_ll_ops.link(req, i, p, n)); }
static void g_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn, unsigned f) { GUARD(als_ll_ops.rename(req, p, n, np, nn, f)); }
static void g_unlink(fuse_req_t req, fuse_ino_t p, const char *n) { GUARD(als_ll_ops.unlink(req, p, n)); }
static void g_setattr(fuse_req_t req, fuse_ino_t i, struct stat *a, int s, struct fuse_file_info *fi) { GUARD(als_ll_ops.setattr(req, i, a, s, fi)); }
static void g_write(fuse_req_t req, fuse_ino_t i, const char *b, size_t s, off_t o, struct fuse_file_info *fi) { GUARD(als_ll_ops.write(req, i, b, s, o, fi)); }
static void g_setxattr(fuse_req_t req, fuse_ino_t i, const char *n, const char *v, size_t s, int f) { GUARD(als_ll_ops.setxattr(req, i, n, v, s, f)); }
static void g_removexattr(fuse_req_t req, fuse_ino_t i, const char *n) { GUARD(als_ll_ops.removexattr(req, i, n)); }

/* The table the session runs: server.c's handlers, each inside an epoch. A handler server.c leaves
 * NULL stays NULL (libfuse's default answer). */
void als_guarded_ops(struct fuse_lowlevel_ops *out) {
  memset(out, 0, sizeof *out);
#define W(f) out->f = als_ll_ops.f ? g_##f : NULL
  W(init); W(lookup); W(forget); W(forget_multi); W(getattr); W(readlink); W(getxattr); W(listxattr);
  W(statfs); W(opendir); W(readdir); W(readdirplus); W(releasedir); W(open); W(read); W(release);
  W(create); W(mknod); W(rmdir); W(mkdir); W(symlink); W(link); W(rename); W(unlink); W(setattr);
  W(write); W(setxattr); W(removexattr);
#undef W
}
