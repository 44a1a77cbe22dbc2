/*
 * The native ALS server: a libfuse3 low-level session served by C threads. Everything inside a
 * layer's `diff/` tree (lookup, getattr, readdir(plus), readlink, xattrs, open, statfs, reads of
 * cached chunks) is answered here from the layer's immutable table; the rest ("misses": the
 * control namespace, reads of content not yet cached, info/blob, use/rmdir) becomes a `pending`
 * request handed to JS through a threadsafe function. Every pending request is answered exactly
 * once: by JS, by its deadline (ETIMEDOUT), or at unmount (EIO).
 */
#ifndef LAZY_ALS_ALS_H
#define LAZY_ALS_ALS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "table.h"

#define ALS_MAX_SLOTS 65536u
#define ALS_SLOT_SHIFT 32

enum als_op {
  ALS_OP_LOOKUP = 1,   /* nodeid = control parent, name */
  ALS_OP_GETATTR = 2,  /* nodeid = control node */
  ALS_OP_READDIR = 3,  /* nodeid = control dir */
  ALS_OP_OPEN = 4,     /* nodeid = control file, a = flags */
  ALS_OP_READ = 5,     /* control file: a = fh, b = offset, c = size */
  ALS_OP_RELEASE = 6,  /* control file: a = fh (notification: no reply expected) */
  ALS_OP_CREATE = 7,   /* nodeid = control parent, name (create and mknod) */
  ALS_OP_RMDIR = 8,    /* nodeid = control parent, name */
  ALS_OP_READ_MISS = 9, /* layer file: a = slot, b = offset, c = size, d = node index, name = path */
  ALS_OP_FORGET = 10,    /* notification: control node `nodeid` forgotten `a` times by the kernel */
  ALS_OP_SLOT_FREED = 11 /* notification: slot `a` (retired) is freed; JS forgets it, then slotReleased */
};

/* A published layer table under one slot number (slots.c has the lifecycle). */
struct als_slot {
  struct lt_table *t;
  uint64_t ino_base; /* st_ino of node 0; node i has st_ino ino_base + i */
  uint32_t num;
  struct als_slot *owner; /* the slot that published t (itself, or the one an alias shares) */
  atomic_uint trefs;      /* on the owner: slots sharing t, freed with the last */
  atomic_ullong nlookup;  /* node ids of this slot the kernel holds (lookups − forgets) */
  int retired, queued;    /* slot_mu: JS dropped it / on the reclaim list */
  struct als_slot *next;  /* slot_mu: reclaim lists */
};

struct als_pending {
  uint64_t id;
  fuse_req_t req; /* NULL for notifications */
  enum als_op op;
  int plus;       /* READDIR: readdirplus */
  uint64_t nodeid, a, b, c, d;
  uid_t uid;
  gid_t gid;
  pid_t pid;
  uint8_t *name;
  size_t name_len;
  uint64_t deadline_ms;
  atomic_int refs;
  struct als_pending *prev, *next;
};

struct als_stats {
  atomic_ullong ops, misses, cached_reads, cached_bytes, verified_objects, verify_failures, timeouts, passthrough_opens;
  atomic_ullong object_opens; /* chunk objects opened by path (the fd cache missed) */
  atomic_ullong control_forgets, slots_freed;
};

/*
 * Verified chunk objects kept open between reads (fdcache.c): direct-mapped by (table, chunk), at
 * most ALS_FDC_SLOTS fds. A reader holds a reference while it preads; an entry found stale (the
 * object was unlinked, replaced or rewritten: see server.c chunk_fd) is closed with its last
 * reference. The timer thread closes idle fds of unlinked objects, so an object the store evicts
 * does not keep its disk space for long.
 */
#define ALS_FDC_SLOTS 1024u
struct als_fdc_entry {
  const struct lt_table *t;
  uint32_t ci;
  int fd;
  uint32_t refs;
  int dead;
};
struct als_fdc {
  pthread_mutex_t mu;
  struct als_fdc_entry e[ALS_FDC_SLOTS];
};
void als_fdc_init(struct als_fdc *c);
void als_fdc_destroy(struct als_fdc *c); /* closes every fd (at unmount: no reader may be running) */
/* The cached fd of chunk `ci` of `t` with a reference taken (*slot set), or -1. */
int als_fdc_get(struct als_fdc *c, const struct lt_table *t, uint32_t ci, int *slot);
/* Offer a freshly verified fd: the slot now owning it with a reference taken, or -1 (the caller keeps it). */
int als_fdc_offer(struct als_fdc *c, const struct lt_table *t, uint32_t ci, int fd);
/* Give back a reference; `stale`: the fd must not be used again (closed with its last reference). */
void als_fdc_release(struct als_fdc *c, int slot, int stale);
/* Before a table is freed: close (or mark) every fd of its chunks. */
void als_fdc_forget_table(struct als_fdc *c, const struct lt_table *t);
/* Close idle fds whose object has been unlinked; how many. */
unsigned als_fdc_sweep_unlinked(struct als_fdc *c);

struct als_fs {
  struct fuse_session *se;
  pthread_t loop_thread;
  int loop_started;
  char *mountpoint;
  char *objdir;
  struct stat root_attr; /* answered here, cached by the kernel for ≤ 1 s (a dead daemon must soon show ENOTCONN) */
  double layer_timeout; /* entry/attr timeout for layer content (immutable) */
  double ctl_timeout;   /* default for control nodes when JS gives none */
  uint64_t miss_timeout_ms;
  int passthrough_wanted;
  atomic_int passthrough;        /* negotiated with the kernel (INIT reply patched, see server.c) */
  atomic_int passthrough_denied; /* FUSE_DEV_IOC_BACKING_OPEN refused (EPERM when not privileged) */
  atomic_ullong init_unique;     /* unique of the kernel's INIT request, when it offers passthrough */
  atomic_int no_open;            /* OPEN answered ENOSYS: the kernel opens files without us (server.c als_open) */
  _Atomic(struct als_slot *) slots[ALS_MAX_SLOTS];
  pthread_mutex_t slot_mu; /* guards everything slot-related below */
  uint32_t next_slot, max_slots, live_slots;
  uint32_t free_nums[ALS_MAX_SLOTS];
  uint32_t n_free;
  struct als_slot *ready;  /* retired, forgotten: to unlink and free */
  struct als_slot *grace;  /* unlinked: freed once epoch `grace_epoch` has drained */
  unsigned grace_epoch;
  struct als_inval *invals; /* kernel entry invalidations for the slot thread */
  pthread_cond_t slot_cv;
  pthread_t slot_thread;
  int slot_started, slot_stopping;
  atomic_int slot_done;
  atomic_uint epoch;        /* handlers run inside an epoch; see slots.c */
  atomic_ullong active[2];
  napi_threadsafe_function tsfn;
  pthread_mutex_t pmu;
  pthread_cond_t pcv;
  struct als_pending *phead;
  uint64_t next_id;
  int stopping;
  pthread_t timer_thread;
  int timer_started;
  struct als_stats stats;
  struct als_fdc fdc;
};

extern const struct fuse_lowlevel_ops als_ll_ops;
/* Session I/O that adds FUSE_PASSTHROUGH to libfuse 3.14's INIT reply (it predates the flag). */
extern const struct fuse_custom_io als_passthrough_io;

/* Pending requests (server.c). */
void als_pending_unref(struct als_pending *p);
/* Removes request `id` from the pending list; NULL when it was already answered. */
struct als_pending *als_pending_take(struct als_fs *fs, uint64_t id);
void als_fail_all_pending(struct als_fs *fs, int err);
void *als_timer_main(void *arg);

/* Slot lifecycle, epochs and the guarded ops table (slots.c). */
struct als_inval;
unsigned als_enter(struct als_fs *fs);
void als_leave(struct als_fs *fs, unsigned e);
/* t: publish it (the slot owns it); t NULL: share the table of slot `alias_of`. 0 + *err when refused. */
uint32_t als_slot_add(struct als_fs *fs, struct lt_table *t, uint32_t alias_of, uint64_t ino_base, const char **err);
/* JS dropped the layer: free the slot once the kernel forgot its ids; invalidate parent/name (0: none). */
int als_slot_retire(struct als_fs *fs, uint32_t num, uint64_t parent, const uint8_t *name, size_t len);
void als_slot_release_number(struct als_fs *fs, uint32_t num);
/* Drop the kernel's cached pages of node `ino`, from the slot thread (never the JS thread). */
void als_queue_inval_inode(struct als_fs *fs, uint64_t ino);
int als_slot_hold(struct als_fs *fs, struct als_slot *s); /* one more id handed to the kernel */
void als_slot_forget(struct als_fs *fs, struct als_slot *s, uint64_t n);
void als_forget_one(struct als_fs *fs, fuse_ino_t ino, uint64_t nlookup);
int als_slots_start(struct als_fs *fs, unsigned max_slots);
void als_slots_stop(struct als_fs *fs);
void als_slots_free_all(struct als_fs *fs);
size_t als_take_used(struct als_fs *fs, uint8_t *out, size_t cap_digests);
void als_guarded_ops(struct fuse_lowlevel_ops *out);

/* Attributes of a layer node (server.c). */
void als_fill_attr(const struct als_slot *s, uint32_t idx, struct stat *st);
void als_quarantine_backing(struct als_fs *fs, struct lt_table *t); /* t->quarantined set: drop its backing ids */
uint64_t als_now_ms(void);

#endif
