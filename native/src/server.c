/* The FUSE low-level handlers (see als.h). Every handler replies on every path, or hands the
 * request to JS as a pending request that the timer thread answers if JS does not. */
#include "als.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define ALS_MAX_PATH 4096

static struct als_fs *fs_of(fuse_req_t req) { return (struct als_fs *)fuse_req_userdata(req); }

uint64_t als_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- node ids ------------------------------------------------------------------------------- */
/* Control nodes (root, ref and key dirs, info, blob) have ids below 2^32 chosen by JS; a layer
 * node is (slot << 32) | (index + 1). */

static const struct als_slot *slot_of(struct als_fs *fs, fuse_ino_t nodeid, uint32_t *idx) {
  uint64_t slot = (uint64_t)nodeid >> ALS_SLOT_SHIFT;
  if (slot == 0 || slot >= ALS_MAX_SLOTS) return NULL;
  const struct als_slot *s = atomic_load_explicit(&fs->slots[slot], memory_order_acquire);
  if (!s) return NULL;
  uint64_t low = (uint64_t)nodeid & 0xffffffffu;
  if (low == 0 || low > s->t->n_nodes) return NULL;
  *idx = (uint32_t)(low - 1);
  return s;
}

static int is_control(fuse_ino_t nodeid) { return ((uint64_t)nodeid >> ALS_SLOT_SHIFT) == 0; }

void als_fill_attr(const struct als_slot *s, uint32_t idx, struct stat *st) {
  const struct lt_node *n = &s->t->nodes[idx];
  memset(st, 0, sizeof *st);
  st->st_ino = s->ino_base + idx;
  st->st_mode = n->mode;
  st->st_nlink = n->nlink;
  st->st_uid = n->uid;
  st->st_gid = n->gid;
  unsigned type = n->mode & S_IFMT;
  if (type == S_IFCHR || type == S_IFBLK) st->st_rdev = makedev(n->rdev_major, n->rdev_minor);
  st->st_size = (off_t)n->size;
  st->st_blksize = 4096;
  st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
  st->st_mtim.tv_sec = n->mtime_sec;
  st->st_mtim.tv_nsec = n->mtime_nsec;
  st->st_atim = st->st_mtim;
  st->st_ctim = st->st_mtim;
}

static void reply_layer_entry(struct als_fs *fs, fuse_req_t req, uint64_t slot, const struct als_slot *s, uint32_t idx) {
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = (slot << ALS_SLOT_SHIFT) | (uint64_t)(idx + 1);
  e.generation = 1;
  als_fill_attr(s, idx, &e.attr);
  e.attr_timeout = fs->layer_timeout;
  e.entry_timeout = fs->layer_timeout;
  /* Counted before the kernel can forget it; given back when the kernel did not take it. */
  als_slot_hold(fs, (struct als_slot *)s);
  if (fuse_reply_entry(req, &e) != 0) als_slot_forget(fs, (struct als_slot *)s, 1);
}

/* --- pending requests ------------------------------------------------------------------------ */

void als_pending_unref(struct als_pending *p) {
  if (atomic_fetch_sub(&p->refs, 1) == 1) {
    free(p->name);
    free(p);
  }
}

static void list_remove(struct als_fs *fs, struct als_pending *p) {
  if (p->prev) p->prev->next = p->next; else fs->phead = p->next;
  if (p->next) p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

struct als_pending *als_pending_take(struct als_fs *fs, uint64_t id) {
  pthread_mutex_lock(&fs->pmu);
  struct als_pending *p = fs->phead;
  while (p && p->id != id) p = p->next;
  if (p) list_remove(fs, p);
  pthread_mutex_unlock(&fs->pmu);
  return p;
}

void als_fail_all_pending(struct als_fs *fs, int err) {
  for (;;) {
    pthread_mutex_lock(&fs->pmu);
    struct als_pending *p = fs->phead;
    if (p) list_remove(fs, p);
    pthread_mutex_unlock(&fs->pmu);
    if (!p) return;
    fuse_reply_err(p->req, err);
    als_pending_unref(p);
  }
}

void *als_timer_main(void *arg) {
  struct als_fs *fs = arg;
  uint64_t last_sweep = als_now_ms();
  pthread_mutex_lock(&fs->pmu);
  while (!fs->stopping) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 200 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&fs->pcv, &fs->pmu, &ts);
    uint64_t now = als_now_ms();
    if (now - last_sweep >= 5000) { /* evicted objects must not keep their disk space in our fd cache */
      last_sweep = now;
      pthread_mutex_unlock(&fs->pmu);
      als_fdc_sweep_unlinked(&fs->fdc);
      pthread_mutex_lock(&fs->pmu);
    }
    struct als_pending *p = fs->phead;
    while (p) {
      struct als_pending *next = p->next;
      if (p->deadline_ms <= now) {
        list_remove(fs, p);
        pthread_mutex_unlock(&fs->pmu);
        atomic_fetch_add(&fs->stats.timeouts, 1);
        fuse_reply_err(p->req, ETIMEDOUT);
        als_pending_unref(p);
        pthread_mutex_lock(&fs->pmu);
        next = fs->phead; /* the list may have changed while unlocked: rescan */
      }
      p = next;
    }
  }
  pthread_mutex_unlock(&fs->pmu);
  return NULL;
}

static struct als_pending *pending_new(fuse_req_t req, enum als_op op, fuse_ino_t nodeid) {
  struct als_pending *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->req = req;
  p->op = op;
  p->nodeid = nodeid;
  if (req) {
    const struct fuse_ctx *c = fuse_req_ctx(req);
    p->uid = c->uid;
    p->gid = c->gid;
    p->pid = c->pid;
  }
  return p;
}

static int pending_set_name(struct als_pending *p, const void *name, size_t len) {
  p->name = malloc(len ? len : 1);
  if (!p->name) return -1;
  memcpy(p->name, name, len);
  p->name_len = len;
  return 0;
}

/* Hand `p` to JS. On failure the request is answered EIO here. Takes ownership of p. */
static void to_js(struct als_fs *fs, struct als_pending *p) {
  atomic_fetch_add(&fs->stats.misses, 1);
  int notify = p->req == NULL;
  atomic_store(&p->refs, notify ? 1 : 2); /* the list's reference + the JS call's */
  if (!notify) {
    pthread_mutex_lock(&fs->pmu);
    if (fs->stopping) {
      pthread_mutex_unlock(&fs->pmu);
      fuse_reply_err(p->req, EIO);
      free(p->name);
      free(p);
      return;
    }
    p->id = ++fs->next_id;
    p->deadline_ms = als_now_ms() + fs->miss_timeout_ms;
    p->next = fs->phead;
    if (fs->phead) fs->phead->prev = p;
    fs->phead = p;
    pthread_mutex_unlock(&fs->pmu);
  }
  if (napi_call_threadsafe_function(fs->tsfn, p, napi_tsfn_nonblocking) != napi_ok) {
    if (!notify) {
      struct als_pending *q = als_pending_take(fs, p->id);
      if (q) {
        fuse_reply_err(q->req, EIO);
        als_pending_unref(q);
      }
    }
    als_pending_unref(p);
  }
}

static void miss_simple(fuse_req_t req, enum als_op op, fuse_ino_t nodeid, const char *name) {
  struct als_fs *fs = fs_of(req);
  struct als_pending *p = pending_new(req, op, nodeid);
  if (!p || (name && pending_set_name(p, name, strlen(name)) != 0)) {
    free(p);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  to_js(fs, p);
}

static int open_verified(struct als_fs *fs, struct lt_table *t, uint32_t ci);

/* --- passthrough ------------------------------------------------------------------------------
 * Debian 12's libfuse 3.14 predates FUSE passthrough (kernel ≥ 6.9), but the protocol is small:
 *  - INIT: the kernel offers FUSE_PASSTHROUGH (flags2 bit 5, i.e. bit 37); we accept it by setting
 *    it in the reply's flags2 with max_stack_depth 1 (backing files live on a plain filesystem).
 *    libfuse builds that reply, so the session's writev (a libfuse custom io) patches it in flight.
 *  - OPEN: FUSE_DEV_IOC_BACKING_OPEN on /dev/fuse turns a verified cache object into a backing id;
 *    the open reply carries it with FOPEN_PASSTHROUGH (sent with fuse_reply_iov, as 3.14's
 *    fuse_reply_open has no field for it). The id is shared per node and closed with the last open
 *    file. Not privileged (EPERM): every later open uses the pread path.
 * The kernel ABI is stable; the structures below are its (include/uapi/linux/fuse.h). */
#define ALS_FUSE_INIT 26u
#define ALS_INIT_EXT (1u << 30)
#define ALS_PASSTHROUGH_FLAGS2 (1u << 5) /* FUSE_PASSTHROUGH = 1 << 37 */
#define ALS_FOPEN_NOFLUSH (1u << 5)
#define ALS_FOPEN_PASSTHROUGH (1u << 7)
#define ALS_PT_FH (1ull << 63)     /* fh of a passthrough open: flag | node index */
#define ALS_CACHED_FH (1ull << 62) /* fh of a cached-mode open of a passthrough candidate */
#define ALS_PASSTHROUGH_MIN (1u << 20)
struct als_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
struct als_open_out {
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;
};
#define ALS_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct als_backing_map)
#define ALS_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata) {
  struct als_fs *fs = userdata;
  ssize_t r = read(fd, buf, len);
  if (r >= 60) {
    const uint8_t *b = buf;
    uint32_t opcode, flags, flags2;
    uint64_t unique;
    memcpy(&opcode, b + 4, 4);
    if (opcode == ALS_FUSE_INIT) {
      memcpy(&unique, b + 8, 8);
      memcpy(&flags, b + 40 + 12, 4);
      memcpy(&flags2, b + 40 + 16, 4);
      if ((flags & ALS_INIT_EXT) && (flags2 & ALS_PASSTHROUGH_FLAGS2)) atomic_store(&fs->init_unique, unique);
    }
  }
  return r;
}

static ssize_t pt_writev(int fd, struct iovec *iov, int count, void *userdata) {
  struct als_fs *fs = userdata;
  uint64_t init = atomic_load(&fs->init_unique);
  if (init != 0 && count >= 1 && iov[0].iov_len >= 16) {
    uint64_t unique;
    int32_t error;
    memcpy(&error, (uint8_t *)iov[0].iov_base + 4, 4);
    memcpy(&unique, (uint8_t *)iov[0].iov_base + 8, 8);
    if (unique == init && error == 0) {
      size_t total = 0;
      for (int i = 0; i < count; i++) total += iov[i].iov_len;
      if (total >= 16 + 40 && total <= 4096) {
        uint8_t msg[4096];
        size_t pos = 0;
        for (int i = 0; i < count; i++) {
          memcpy(msg + pos, iov[i].iov_base, iov[i].iov_len);
          pos += iov[i].iov_len;
        }
        uint32_t flags, flags2, depth = 1;
        memcpy(&flags, msg + 16 + 12, 4);
        memcpy(&flags2, msg + 16 + 32, 4);
        flags |= ALS_INIT_EXT;
        flags2 |= ALS_PASSTHROUGH_FLAGS2;
        memcpy(msg + 16 + 12, &flags, 4);
        memcpy(msg + 16 + 32, &flags2, 4);
        memcpy(msg + 16 + 36, &depth, 4);
        atomic_store(&fs->init_unique, 0);
        ssize_t r = write(fd, msg, total);
        if (r == (ssize_t)total) atomic_store(&fs->passthrough, 1);
        return r;
      }
    }
  }
  return writev(fd, iov, count);
}

const struct fuse_custom_io als_passthrough_io = {.writev = pt_writev, .read = pt_read};

/* The backing file id for a passthrough open of node `idx`, or -1 when it cannot have one. The
 * caller decides the open's I/O mode with open_io_mode (which keeps the kernel's one-mode-per-inode
 * rule); this only makes the id. */
static int32_t backing_open(struct als_fs *fs, struct lt_table *t, uint32_t idx) {
  int fd = open_verified(fs, t, t->nodes[idx].chunk_first);
  if (fd < 0) return -1;
  struct als_backing_map map = {.fd = fd, .flags = 0, .padding = 0};
  int id = ioctl(fuse_session_fd(fs->se), ALS_DEV_IOC_BACKING_OPEN, &map);
  int err = errno;
  close(fd); /* the kernel holds its own reference */
  if (id <= 0) {
    if (err == EPERM || err == EOPNOTSUPP || err == ENOTTY || err == EINVAL) atomic_store(&fs->passthrough_denied, 1);
    return -1;
  }
  return id;
}

static void backing_close(struct als_fs *fs, int32_t id) {
  uint32_t m = (uint32_t)id;
  ioctl(fuse_session_fd(fs->se), ALS_DEV_IOC_BACKING_CLOSE, &m);
}

/* Whether node `idx` may be opened in passthrough mode at all: its content is one verified object
 * (the backing file is per whole file) of at least ALS_PASSTHROUGH_MIN bytes (below that, the two
 * ioctls per open cost more than they save: such files stay in the page cache with keep_cache). */
static int passthrough_candidate(struct als_fs *fs, const struct lt_table *t, uint32_t idx) {
  const struct lt_node *n = &t->nodes[idx];
  return atomic_load(&fs->passthrough) && n->chunk_count == 1 && n->size >= ALS_PASSTHROUGH_MIN &&
         !(t->chunks[n->chunk_first].flags & LT_CHUNK_ZEROS);
}

/*
 * The I/O mode of a new open of candidate node `idx`: a backing id (> 0, a reference taken) or 0
 * for cached mode (counted). Never both at once for one node (struct lt_backing): a file first
 * opened before its object was cached (cached mode) and still open — a running binary, mapped by
 * exec — keeps every later open of it in cached mode until it is closed; and while a passthrough
 * file is open, later opens share its backing id even if the object can no longer be opened.
 */
static int32_t open_io_mode(struct als_fs *fs, struct lt_table *t, uint32_t idx) {
  struct lt_backing *b = &t->backing[idx];
  pthread_mutex_lock(&t->vmu);
  /* Under vmu: als_quarantine_backing sets the flag before it takes vmu, so no open after it shares an id. */
  if (atomic_load(&t->quarantined)) {
    pthread_mutex_unlock(&t->vmu);
    return -1;
  }
  if (b->refs > 0) {
    b->refs++;
    int32_t id = b->id;
    pthread_mutex_unlock(&t->vmu);
    return id;
  }
  if (b->cached > 0 || atomic_load(&fs->passthrough_denied)) {
    b->cached++;
    pthread_mutex_unlock(&t->vmu);
    return 0;
  }
  pthread_mutex_unlock(&t->vmu);
  int32_t mine = backing_open(fs, t, idx); /* may hash the object: not under the lock */
  int32_t id = 0, spare = -1;
  pthread_mutex_lock(&t->vmu);
  if (atomic_load(&t->quarantined)) { /* refuted while the backing file was opened */
    id = -1;
    spare = mine;
  } else if (b->refs > 0) { /* another open won the race: share its id */
    b->refs++;
    id = b->id;
    spare = mine;
  } else if (b->cached > 0 || mine <= 0) { /* a cached-mode open came first, or no backing file */
    b->cached++;
    spare = mine;
  } else {
    b->id = mine;
    b->refs = 1;
    id = mine;
  }
  pthread_mutex_unlock(&t->vmu);
  if (spare > 0) backing_close(fs, spare);
  if (id > 0 && id == mine) atomic_fetch_add(&fs->stats.passthrough_opens, 1);
  return id;
}

/* Quarantine (t->quarantined already set): close every backing id the table still holds so no
 * later open can share it. Files already open in passthrough keep reading their backing file: the
 * kernel holds its own reference per open file and FUSE cannot revoke it. refs stay counted (their
 * releases still come); id 0 tells close_io_mode there is nothing left to close. */
void als_quarantine_backing(struct als_fs *fs, struct lt_table *t) {
  for (uint32_t i = 0; i < t->n_nodes; i++) {
    struct lt_backing *b = &t->backing[i];
    int32_t close_id = 0;
    pthread_mutex_lock(&t->vmu);
    if (b->refs > 0 && b->id > 0) {
      close_id = b->id;
      b->id = 0;
    }
    pthread_mutex_unlock(&t->vmu);
    if (close_id > 0) backing_close(fs, close_id);
  }
}

/* A candidate's open file is closed (or its open reply could not be delivered). */
static void close_io_mode(struct als_fs *fs, struct lt_table *t, uint32_t idx, int passthrough) {
  struct lt_backing *b = &t->backing[idx];
  int32_t close_id = -1;
  pthread_mutex_lock(&t->vmu);
  if (passthrough) {
    if (b->refs > 0 && --b->refs == 0) close_id = b->id;
  } else if (b->cached > 0) {
    b->cached--;
  }
  pthread_mutex_unlock(&t->vmu);
  if (close_id > 0) backing_close(fs, close_id);
}

/* --- init ------------------------------------------------------------------------------------ */

static void als_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  unsigned want = FUSE_CAP_ASYNC_READ | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_READDIRPLUS | FUSE_CAP_CACHE_SYMLINKS;
  conn->want |= conn->capable & want;
  /* Always readdirplus: the listing carries the attributes `find`/`ls -l` want next. */
  conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
  conn->want &= ~(unsigned)(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_AUTO_INVAL_DATA);
  /* A layer's ACLs are enforced like on a normal unpack: the kernel reads system.posix_acl_access
   * (and _default) through getxattr, caches them with the attributes and checks them on access. */
  if (conn->capable & FUSE_CAP_POSIX_ACL) conn->want |= FUSE_CAP_POSIX_ACL;
  conn->max_readahead = 1u << 20;
  conn->max_read = 1u << 20; /* must equal the max_read mount option */
  conn->time_gran = 1;
  if (getenv("LAZY_ALS_NATIVE_DEBUG")) fprintf(stderr, "lazy-als native: capable=%#x want=%#x\n", conn->capable, conn->want);
}

/* --- metadata -------------------------------------------------------------------------------- */

static void als_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  struct als_fs *fs = fs_of(req);
  atomic_fetch_add(&fs->stats.ops, 1);
  if (is_control(parent)) return miss_simple(req, ALS_OP_LOOKUP, parent, name);
  uint32_t idx;
  const struct als_slot *s = slot_of(fs, parent, &idx);
  if (!s) return (void)fuse_reply_err(req, ESTALE);
  if ((s->t->nodes[idx].mode & S_IFMT) != S_IFDIR) return (void)fuse_reply_err(req, ENOTDIR);
  int64_t child = lt_lookup(s->t, idx, (const uint8_t *)name, strlen(name));
  if (child < 0) {
    /* A negative entry the kernel may keep as long as the layer's positives: layers never change. */
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.entry_timeout = fs->layer_timeout;
    return (void)fuse_reply_entry(req, &e);
  }
  reply_layer_entry(fs, req, (uint64_t)parent >> ALS_SLOT_SHIFT, s, (uint32_t)child);
}

/* Layer ids: the slot's lookup count (a retired slot is freed at zero); control ids: told to JS. */
static void als_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  als_forget_one(fs_of(req), ino, nlookup);
  fuse_reply_none(req);
}

static void als_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  struct als_fs *fs = fs_of(req);
  for (size_t i = 0; i < count; i++) als_forget_one(fs, forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

static void als_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  struct als_fs *fs = fs_of(req);
  atomic_fetch_add(&fs->stats.ops, 1);
  /* The root in C, cached for at most a second: with default_permissions every path walk from the
   * mountpoint needs the root's attributes, and timeout 0 cost one more round trip per open by path
   * (half of a warm small-file open); a second keeps a dead daemon's mountpoint showing ENOTCONN
   * almost at once (stale-mount detection also checks mountinfo and the control socket). */
  if (ino == FUSE_ROOT_ID) return (void)fuse_reply_attr(req, &fs->root_attr, fs->ctl_timeout < 1.0 ? fs->ctl_timeout : 1.0);
  if (is_control(ino)) return miss_simple(req, ALS_OP_GETATTR, ino, NULL);
  uint32_t idx;
  const struct als_slot *s = slot_of(fs, ino, &idx);
  if (!s) return (void)fuse_reply_err(req, ESTALE);
  struct stat st;
  als_fill_attr(s, idx, &st);
  fuse_reply_attr(req, &st, fs->layer_timeout);
}

static void als_readlink(fuse_req_t req, fuse_ino_t ino) {
  struct als_fs *fs = fs_of(req);
  atomic_fetch_add(&fs->stats.ops, 1);
  uint32_t idx;
  const struct als_slot *s = is_control(ino) ? NULL : slot_of(fs, ino, &idx);
  if (!s) return (void)fuse_reply_err(req, is_control(ino) ? EINVAL : ESTALE);
  const struct lt_node *n = &s->t->nodes[idx];
  if ((n->mode & S_IFMT) != S_IFLNK) return (void)fuse_reply_err(req, EINVAL);
  char *target = malloc((size_t)n->link_len + 1);
  if (!target) return (void)fuse_reply_err(req, ENOMEM);
  memcpy(target, s->t->strings + n->link_off, n->link_len);
  target[n->link_len] = 0;
  fuse_reply_readlink(req, target);
  free(target);
}

static void als_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  struct als_fs *fs = fs_of(req);
  atomic_fetch_add(&fs->stats.ops, 1);
  uint32_t idx;
  const struct als_slot *s = is_control(ino) ? NULL : slot_of(fs, ino, &idx);
  if (!s) return (void)fuse_reply_err(req, is_control(ino) ? ENODATA : ESTALE);
  const struct lt_node *n = &s->t->nodes[idx];
  size_t nl = strlen(name);
  for (uint32_t i = 0; i < n->xattr_count; i++) {
    const struct lt_xattr *x = &s->t->xattrs[n->xattr_first + i];
    if (x->name_len != nl || memcmp(s->t->strings + x->name_off, name, nl) != 0) continue;
    if (size == 0) return (void)fuse_reply_xattr(req, x->val_len);
    if (size < x->val_len) return (void)fuse_reply_err(req, ERANGE);
    return (void)fuse_reply_buf(req, (const char *)s->t->strings + x->val_off, x->val_len);
  }
  fuse_reply_err(req, ENODATA);
}

static void als_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  struct als_fs *fs = fs_of(req);
  atomic_fetch_add(&fs->stats.ops, 1);
  uint32_t idx;
  const struct als_slot *s = is_control(ino) ? NULL : slot_of(fs, ino, &idx);
  if (!s) {
    if (!is_control(ino)) return (void)fuse_reply_err(req, ESTALE);
    return (void)(size == 0 ? fuse_reply_xattr(req, 0) : fuse_reply_buf(req, NULL, 0));
  }
  const struct lt_node *n = &s->t->nodes[idx];
  size_t total = 0;
  for (uint32_t i = 0; i < n->xattr_count; i++) total += (size_t)s->t->xattrs[n->xattr_first + i].name_len + 1;
  if (size == 0) return (void)fuse_reply_xattr(req, total);
  if (size < total) return (void)fuse_reply_err(req, ERANGE);
  char *buf = malloc(total ? total : 1);
  if (!buf) return (void)fuse_reply_err(req, ENOMEM);
  size_t pos = 0;
  for (uint32_t i = 0; i < n->xattr_count; i++) {
    const struct lt_xattr *x = &s->t->xattrs[n->xattr_first + i];
    memcpy(buf + pos, s->t->strings + x->name_off, x->name_len);
    pos += x->name_len;
    buf[pos++] = 0;
  }
  fuse_reply_buf(req, buf, total);
  free(buf);
}

static void als_statfs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  struct statvfs sv;
  memset(&sv, 0, sizeof sv);
  sv.f_bsize = 4096;
  sv.f_frsize = 4096;
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

/* --- directories ----------------------------------------------------------------------------- */

static void als_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct als_fs *fs = fs_of(req);
  fi->fh = 0;
  if (!is_control(ino)) {
    uint32_t idx;
    const struct als_slot *s = slot_of(fs, ino, &idx);
    if (!s) return (void)fuse_reply_err(req, ESTALE);
    if ((s->t->nodes[idx].mode & S_IFMT) != S_IFDIR) return (void)fuse_reply_err(req, ENOTDIR);
    fi->cache_readdir = 1; /* a layer directory never changes: let the kernel keep the listing */
    fi->keep_cache = 1;
  }
  fuse_reply_open(req, fi);
}

static void als_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino; (void)fi;
  fuse_reply_err(req, 0);
}

static void layer_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus) {
  struct als_fs *fs = fs_of(req);
  uint32_t idx;
  const struct als_slot *s = slot_of(fs, ino, &idx);
  if (!s) return (void)fuse_reply_err(req, ESTALE);
  const struct lt_table *t = s->t;
  const struct lt_node *dir = &t->nodes[idx];
  if ((dir->mode & S_IFMT) != S_IFDIR) return (void)fuse_reply_err(req, ENOTDIR);
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  if (size > (1u << 20)) size = 1u << 20;
  char *buf = malloc(size ? size : 1);
  if (!buf) return (void)fuse_reply_err(req, ENOMEM);
  uint64_t slot = (uint64_t)ino >> ALS_SLOT_SHIFT;
  size_t pos = 0;
  uint64_t linked = 0; /* entries that hand the kernel a node id (readdirplus, not . and ..) */
  uint64_t total = 2 + (uint64_t)dir->child_count;
  char name[256];
  for (uint64_t i = (uint64_t)off; i < total; i++) {
    uint32_t child;
    size_t nl;
    if (i < 2) {
      child = i == 0 ? idx : dir->parent;
      nl = i + 1;
      memcpy(name, "..", nl);
    } else {
      const struct lt_dirent *d = &t->dirents[dir->child_first + (i - 2)];
      child = d->node;
      nl = d->name_len; /* ≤ 255, checked at publish */
      memcpy(name, t->strings + d->name_off, nl);
    }
    name[nl] = 0;
    size_t used;
    if (plus) {
      struct fuse_entry_param e;
      memset(&e, 0, sizeof e);
      als_fill_attr(s, child, &e.attr);
      if (i >= 2) { /* "." and ".." carry no entry: the kernel does not link them */
        e.ino = (slot << ALS_SLOT_SHIFT) | (uint64_t)(child + 1);
        e.generation = 1;
        e.attr_timeout = fs->layer_timeout;
        e.entry_timeout = fs->layer_timeout;
      }
      used = fuse_add_direntry_plus(req, buf + pos, size - pos, name, &e, (off_t)(i + 1));
      if (used <= size - pos && e.ino != 0) linked++;
    } else {
      struct stat st;
      als_fill_attr(s, child, &st);
      used = fuse_add_direntry(req, buf + pos, size - pos, name, &st, (off_t)(i + 1));
    }
    if (used > size - pos) break;
    pos += used;
  }
  /* The kernel links every entry with a node id or forgets it (it never drops one silently). */
  if (linked) atomic_fetch_add(&((struct als_slot *)s)->nlookup, linked);
  if (fuse_reply_buf(req, buf, pos) != 0 && linked) als_slot_forget(fs, (struct als_slot *)s, linked);
  free(buf);
}

static void any_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus) {
  struct als_fs *fs = fs_of(req);
  atomic_fetch_add(&fs->stats.ops, 1);
  if (!is_control(ino)) return layer_readdir(req, ino, size, off, plus);
  struct als_pending *p = pending_new(req, ALS_OP_READDIR, ino);
  if (!p) return (void)fuse_reply_err(req, ENOMEM);
  p->plus = plus;
  p->b = (uint64_t)(off < 0 ? 0 : off);
  p->c = size;
  to_js(fs, p);
}

static void als_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  any_readdir(req, ino, size, off, 0);
}

static void als_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  any_readdir(req, ino, size, off, 1);
}

/* --- files ----------------------------------------------------------------------------------- */

static void als_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct als_fs *fs = fs_of(req);
  atomic_fetch_add(&fs->stats.ops, 1);
  if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & (O_TRUNC | O_APPEND | O_CREAT)) != 0) return (void)fuse_reply_err(req, EROFS);
  if (is_control(ino)) {
    struct als_pending *p = pending_new(req, ALS_OP_OPEN, ino);
    if (!p) return (void)fuse_reply_err(req, ENOMEM);
    p->a = (uint64_t)(unsigned)fi->flags;
    return to_js(fs, p);
  }
  uint32_t idx;
  const struct als_slot *s = slot_of(fs, ino, &idx);
  if (!s) return (void)fuse_reply_err(req, ESTALE);
  unsigned type = s->t->nodes[idx].mode & S_IFMT;
  if (type == S_IFDIR) return (void)fuse_reply_err(req, EISDIR);
  if (type != S_IFREG) return (void)fuse_reply_err(req, EINVAL);
  if (atomic_load(&s->t->quarantined)) return (void)fuse_reply_err(req, EIO);
  /* Without passthrough no layer file needs an OPEN: ENOSYS makes the kernel stop sending OPEN and
   * RELEASE for every file of this connection (FUSE no-open; keep_cache is then its default), which
   * halves a warm small-file open. Control files then arrive with fh 0 (JS opens them per read).
   * Not once a passthrough open succeeded: a no-open file of an inode that has a backing file
   * could not be mmapped. */
  if (!atomic_load(&fs->passthrough) || (atomic_load(&fs->passthrough_denied) && atomic_load(&fs->stats.passthrough_opens) == 0)) {
    atomic_store(&fs->no_open, 1);
    return (void)fuse_reply_err(req, ENOSYS);
  }
  fi->fh = 0;
  if (passthrough_candidate(fs, s->t, idx)) {
    int32_t id = open_io_mode(fs, s->t, idx);
    if (id < 0) return (void)fuse_reply_err(req, EIO); /* quarantined meanwhile */
    if (id > 0) {
      struct als_open_out out = {.fh = ALS_PT_FH | idx, .open_flags = ALS_FOPEN_PASSTHROUGH | ALS_FOPEN_NOFLUSH, .backing_id = id};
      struct iovec iov = {.iov_base = &out, .iov_len = sizeof out};
      if (fuse_reply_iov(req, &iov, 1) != 0) close_io_mode(fs, s->t, idx, 1); /* the opener is gone: no release will come */
      return;
    }
    fi->fh = ALS_CACHED_FH | idx;
  }
  fi->keep_cache = 1; /* immutable content: what the kernel cached stays right */
  fi->noflush = 1;
  if (fuse_reply_open(req, fi) != 0 && fi->fh != 0) close_io_mode(fs, s->t, idx, 0);
}

static void als_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct als_fs *fs = fs_of(req);
  uint64_t fh = fi->fh;
  fuse_reply_err(req, 0);
  if (!is_control(ino) && (fh & (ALS_PT_FH | ALS_CACHED_FH))) {
    uint32_t idx;
    const struct als_slot *s = slot_of(fs, ino, &idx);
    if (s && idx == (uint32_t)(fh & 0xffffffffu)) close_io_mode(fs, s->t, idx, (fh & ALS_PT_FH) != 0);
    return;
  }
  if (is_control(ino) && fh != 0) {
    struct als_pending *p = pending_new(NULL, ALS_OP_RELEASE, ino);
    if (!p) return;
    p->a = fh;
    to_js(fs, p);
  }
}

/* sha256 of a whole object file equals `want` (one pass, node's OpenSSL). */
static int object_hashes_to(int fd, uint64_t size, const uint8_t want[32]) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) return 0;
  int ok = 0;
  size_t piece = 256 * 1024;
  uint8_t *buf = malloc(piece);
  if (buf && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
    uint64_t pos = 0;
    for (;;) {
      ssize_t r = pread(fd, buf, piece, (off_t)pos);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) break;
      if (r == 0) {
        uint8_t md[32];
        unsigned mdlen = 0;
        ok = pos == size && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32 && memcmp(md, want, 32) == 0;
        break;
      }
      if (EVP_DigestUpdate(ctx, buf, (size_t)r) != 1) break;
      pos += (uint64_t)r;
      if (pos > size) break;
    }
  }
  free(buf);
  EVP_MD_CTX_free(ctx);
  return ok;
}

static void object_path(const struct als_fs *fs, const uint8_t digest[32], char *out, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  char h[65];
  for (int i = 0; i < 32; i++) {
    h[2 * i] = hex[digest[i] >> 4];
    h[2 * i + 1] = hex[digest[i] & 15];
  }
  h[64] = 0;
  snprintf(out, cap, "%s/sha256/%.2s/%s", fs->objdir, h, h + 2);
}

/*
 * Open the cached object of chunk `ci`, trusted once: the first use in this process hashes the
 * whole object and remembers its identity (dev, ino, size, ctime); later uses only compare the
 * identity, so a replaced or rewritten object is hashed again. -1 when absent or bad (a miss).
 */
static int open_verified(struct als_fs *fs, struct lt_table *t, uint32_t ci) {
  const struct lt_chunk *c = &t->chunks[ci];
  if (c->flags & LT_CHUNK_ZEROS) return -1;
  char path[ALS_MAX_PATH];
  object_path(fs, c->digest, path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != c->size) {
    close(fd);
    return -1;
  }
  struct lt_verified now = {(uint64_t)st.st_dev, (uint64_t)st.st_ino, (uint64_t)st.st_size, st.st_ctim.tv_sec, st.st_ctim.tv_nsec, 1};
  pthread_mutex_lock(&t->vmu);
  struct lt_verified v = t->verified[ci];
  pthread_mutex_unlock(&t->vmu);
  if (v.ok && v.dev == now.dev && v.ino == now.ino && v.size == now.size && v.ctime_sec == now.ctime_sec && v.ctime_nsec == now.ctime_nsec) {
    lt_mark_used(t, ci);
    return fd;
  }
  if (!object_hashes_to(fd, c->size, c->digest)) {
    atomic_fetch_add(&fs->stats.verify_failures, 1);
    close(fd);
    return -1; /* JS reads it through the object store, which drops the corrupt object and refetches */
  }
  atomic_fetch_add(&fs->stats.verified_objects, 1);
  pthread_mutex_lock(&t->vmu);
  t->verified[ci] = now;
  pthread_mutex_unlock(&t->vmu);
  lt_mark_used(t, ci);
  return fd;
}

/* Whether `st` is still the object verified for chunk `ci` (same inode, size and ctime, linked). */
static int still_verified(struct lt_table *t, uint32_t ci, const struct stat *st) {
  pthread_mutex_lock(&t->vmu);
  struct lt_verified v = t->verified[ci];
  pthread_mutex_unlock(&t->vmu);
  return v.ok && st->st_nlink > 0 && v.dev == (uint64_t)st->st_dev && v.ino == (uint64_t)st->st_ino &&
         v.size == (uint64_t)st->st_size && v.ctime_sec == st->st_ctim.tv_sec && v.ctime_nsec == st->st_ctim.tv_nsec;
}

/*
 * A verified fd of chunk `ci`: kept open in the fd cache and re-checked with one fstat per use
 * (unlinked, replaced or rewritten ⇒ dropped, and the object is opened and verified again), else
 * opened by path (open_verified). *slot ≥ 0: give it back with chunk_fd_done; the fd is the cache's.
 */
static int chunk_fd(struct als_fs *fs, struct lt_table *t, uint32_t ci, int *slot) {
  int fd = als_fdc_get(&fs->fdc, t, ci, slot);
  if (fd >= 0) {
    struct stat st;
    if (fstat(fd, &st) == 0 && still_verified(t, ci, &st)) {
      lt_mark_used(t, ci); /* served from its object: the eviction clock must see it (hot fds most of all) */
      return fd;
    }
    als_fdc_release(&fs->fdc, *slot, 1);
  }
  *slot = -1;
  atomic_fetch_add(&fs->stats.object_opens, 1);
  fd = open_verified(fs, t, ci);
  if (fd >= 0) *slot = als_fdc_offer(&fs->fdc, t, ci, fd);
  return fd;
}

static void chunk_fd_done(struct als_fs *fs, int fd, int slot) {
  if (slot >= 0) als_fdc_release(&fs->fdc, slot, 0);
  else close(fd);
}

/* A sequential reader entering chunk `ci - 1` will want chunk `ci` next: each chunk is its own
 * object file, so the kernel's readahead stops at the object's end; ask for the next one now (only
 * when already verified: hashing is a synchronous read we do not do on speculation). */
static void prefetch_chunk(struct als_fs *fs, struct lt_table *t, uint32_t ci) {
  pthread_mutex_lock(&t->vmu);
  int ok = t->verified[ci].ok;
  pthread_mutex_unlock(&t->vmu);
  if (!ok || (t->chunks[ci].flags & LT_CHUNK_ZEROS)) return;
  int slot;
  int fd = chunk_fd(fs, t, ci, &slot);
  if (fd < 0) return;
  (void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
  chunk_fd_done(fs, fd, slot);
}

/* Serve [off, off+size) of a layer file from verified cache objects; 0 when it replied. */
static int read_cached(struct als_fs *fs, fuse_req_t req, const struct als_slot *s, uint32_t idx, uint64_t off, size_t size) {
  struct lt_table *t = s->t;
  const struct lt_node *n = &t->nodes[idx];
  if (off >= n->size || size == 0) {
    fuse_reply_buf(req, NULL, 0);
    return 0;
  }
  uint64_t end = n->size - off < size ? n->size : off + size;
  size_t len = (size_t)(end - off);
  char *buf = malloc(len);
  if (!buf) return -1;
  size_t pos = 0;
  uint32_t next = n->chunk_count; /* chunk to prefetch: the one after a chunk this read starts */
  for (uint32_t k = lt_first_chunk_after(t, n, off); k < n->chunk_count && pos < len; k++) {
    uint32_t ci = n->chunk_first + k;
    const struct lt_chunk *c = &t->chunks[ci];
    uint64_t from = off + pos - c->file_offset; /* within the chunk */
    uint64_t want = c->size - from < len - pos ? c->size - from : len - pos;
    if (from == 0 && k + 1 < n->chunk_count) next = k + 1;
    int slot;
    int fd = chunk_fd(fs, t, ci, &slot);
    if (fd < 0) { free(buf); return -1; }
    size_t got = 0;
    while (got < want) {
      ssize_t r = pread(fd, buf + pos + got, (size_t)(want - got), (off_t)(from + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += (size_t)r;
    }
    chunk_fd_done(fs, fd, slot);
    if (got != want) { free(buf); return -1; }
    pos += got;
  }
  if (pos != len) { free(buf); return -1; }
  atomic_fetch_add(&fs->stats.cached_reads, 1);
  atomic_fetch_add(&fs->stats.cached_bytes, len);
  fuse_reply_buf(req, buf, len);
  free(buf);
  if (next < n->chunk_count) prefetch_chunk(fs, t, n->chunk_first + next);
  return 0;
}

static void als_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  struct als_fs *fs = fs_of(req);
  atomic_fetch_add(&fs->stats.ops, 1);
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  if (is_control(ino)) {
    struct als_pending *p = pending_new(req, ALS_OP_READ, ino);
    if (!p) return (void)fuse_reply_err(req, ENOMEM);
    p->a = fi->fh;
    p->b = (uint64_t)off;
    p->c = size;
    return to_js(fs, p);
  }
  uint32_t idx;
  const struct als_slot *s = slot_of(fs, ino, &idx);
  if (!s) return (void)fuse_reply_err(req, ESTALE);
  if ((s->t->nodes[idx].mode & S_IFMT) != S_IFREG) return (void)fuse_reply_err(req, EISDIR);
  if (atomic_load(&s->t->quarantined)) return (void)fuse_reply_err(req, EIO); /* cached bytes of a refuted layer */
  if (fs->objdir && read_cached(fs, req, s, idx, (uint64_t)off, size) == 0) return;
  struct als_pending *p = pending_new(req, ALS_OP_READ_MISS, ino);
  uint8_t *path = malloc(ALS_MAX_PATH);
  if (!p || !path) {
    free(p);
    free(path);
    return (void)fuse_reply_err(req, ENOMEM);
  }
  p->a = (uint64_t)ino >> ALS_SLOT_SHIFT;
  p->b = (uint64_t)off;
  p->c = size;
  p->d = idx;
  p->name_len = lt_path(s->t, idx, path, ALS_MAX_PATH);
  p->name = path;
  to_js(fs, p);
}

/* --- the use/release protocol and everything else that writes -------------------------------- */

static void create_or_use(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (!is_control(parent)) return (void)fuse_reply_err(req, EROFS);
  miss_simple(req, ALS_OP_CREATE, parent, name);
}

static void als_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  (void)mode; (void)fi;
  create_or_use(req, parent, name);
}

static void als_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  (void)mode; (void)rdev;
  create_or_use(req, parent, name);
}

static void als_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (!is_control(parent)) return (void)fuse_reply_err(req, EROFS);
  miss_simple(req, ALS_OP_RMDIR, parent, name);
}

static void erofs_name(fuse_req_t req, fuse_ino_t p, const char *n) { (void)p; (void)n; fuse_reply_err(req, EROFS); }
static void als_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m) { (void)m; erofs_name(req, p, n); }
static void als_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n) { (void)l; erofs_name(req, p, n); }
static void als_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t p, const char *n) { (void)i; erofs_name(req, p, n); }
static void als_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn, unsigned f) {
  (void)np; (void)nn; (void)f;
  erofs_name(req, p, n);
}
static void als_setattr(fuse_req_t req, fuse_ino_t i, struct stat *a, int s, struct fuse_file_info *fi) {
  (void)i; (void)a; (void)s; (void)fi;
  fuse_reply_err(req, EROFS);
}
static void als_write(fuse_req_t req, fuse_ino_t i, const char *b, size_t s, off_t o, struct fuse_file_info *fi) {
  (void)i; (void)b; (void)s; (void)o; (void)fi;
  fuse_reply_err(req, EROFS);
}
static void als_setxattr(fuse_req_t req, fuse_ino_t i, const char *n, const char *v, size_t s, int f) {
  (void)i; (void)n; (void)v; (void)s; (void)f;
  fuse_reply_err(req, EROFS);
}
static void als_removexattr(fuse_req_t req, fuse_ino_t i, const char *n) { (void)i; (void)n; fuse_reply_err(req, EROFS); }

const struct fuse_lowlevel_ops als_ll_ops = {
  .init = als_init,
  .lookup = als_lookup,
  .forget = als_forget,
  .forget_multi = als_forget_multi,
  .getattr = als_getattr,
  .readlink = als_readlink,
  .getxattr = als_getxattr,
  .listxattr = als_listxattr,
  .statfs = als_statfs,
  .opendir = als_opendir,
  .readdir = als_readdir,
  .readdirplus = als_readdirplus,
  .releasedir = als_releasedir,
  .open = als_open,
  .read = als_read,
  .release = als_release,
  .create = als_create,
  .mknod = als_mknod,
  .rmdir = als_rmdir,
  .mkdir = als_mkdir,
  .symlink = als_symlink,
  .link = als_link,
  .rename = als_rename,
  .unlink = erofs_name,
  .setattr = als_setattr,
  .write = als_write,
  .setxattr = als_setxattr,
  .removexattr = als_removexattr,
};
