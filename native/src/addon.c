/* N-API surface of the native server (types in ../index.d.ts). The JS thread only mounts,
 * publishes tables and answers pending requests; FUSE threads never wait for it. */
#include "als.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CHECK(call)                                                         \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      napi_throw_error(env, "ENATIVE", "napi call failed: " #call);        \
      return NULL;                                                          \
    }                                                                       \
  } while (0)

struct als_handle {
  struct als_fs *fs;
  atomic_int loop_done;
  int closed;
};

static struct als_handle *handle_of(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, "EINVAL", "not a native mount handle");
    return NULL;
  }
  return p;
}

static napi_value bool_value_of(napi_env env, int b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

static int get_prop_double(napi_env env, napi_value obj, const char *key, double *out) {
  napi_value v;
  napi_valuetype t;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok || t != napi_number) return -1;
  return napi_get_value_double(env, v, out) == napi_ok ? 0 : -1;
}

static char *get_prop_string(napi_env env, napi_value obj, const char *key) {
  napi_value v;
  napi_valuetype t;
  size_t len = 0;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok || t != napi_string) return NULL;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (s && napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok) { free(s); return NULL; }
  return s;
}

static int get_prop_bool(napi_env env, napi_value obj, const char *key) {
  napi_value v;
  bool b = false;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return 0;
  if (napi_get_value_bool(env, v, &b) != napi_ok) return 0;
  return b;
}

static void attr_from_js(napi_env env, napi_value o, struct stat *st);

/* --- JS calls --------------------------------------------------------------------------------- */

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  struct als_pending *p = data;
  struct als_handle *h = context;
  if (env == NULL || cb == NULL) { /* tearing down: the pending list is failed at unmount */
    als_pending_unref(p);
    return;
  }
  napi_value argv[12], undef;
  napi_get_undefined(env, &undef);
  double nums[] = {(double)p->id, (double)p->op, (double)p->nodeid, (double)p->a, (double)p->b, (double)p->c, (double)p->d,
                   (double)p->uid, (double)p->gid, (double)p->pid, (double)p->plus};
  for (int i = 0; i < 11; i++) napi_create_double(env, nums[i], &argv[i]);
  argv[11] = undef;
  if (p->name) {
    void *dst;
    if (napi_create_buffer_copy(env, p->name_len, p->name, &dst, &argv[11]) != napi_ok) argv[11] = undef;
  }
  napi_status st = napi_call_function(env, undef, cb, 12, argv, NULL);
  if (st != napi_ok) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    if (p->req) {
      struct als_pending *q = als_pending_take(h->fs, p->id);
      if (q) {
        fuse_reply_err(q->req, EIO);
        als_pending_unref(q);
      }
    }
  }
  als_pending_unref(p);
}

static void *loop_main(void *arg) {
  struct als_handle *h = arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  if (cfg) {
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    fuse_loop_cfg_set_idle_threads(cfg, 4);
    fuse_loop_cfg_set_max_threads(cfg, 32);
    fuse_session_loop_mt(h->fs->se, cfg);
    fuse_loop_cfg_destroy(cfg);
  }
  atomic_store(&h->loop_done, 1);
  return NULL;
}

/* mount({mountpoint, options, objectsDir?, layerTimeoutSec, controlTimeoutSec, missTimeoutMs, debug?}, dispatch) */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) { napi_throw_type_error(env, "EINVAL", "mount(options, dispatch)"); return NULL; }
  struct als_handle *h = calloc(1, sizeof *h);
  struct als_fs *fs = calloc(1, sizeof *fs);
  if (!h || !fs) { free(h); free(fs); napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  h->fs = fs;
  fs->mountpoint = get_prop_string(env, argv[0], "mountpoint");
  char *opts = get_prop_string(env, argv[0], "options");
  fs->objdir = get_prop_string(env, argv[0], "objectsDir");
  double lt = 3600, ct = 1, mt = 60000;
  get_prop_double(env, argv[0], "layerTimeoutSec", &lt);
  get_prop_double(env, argv[0], "controlTimeoutSec", &ct);
  get_prop_double(env, argv[0], "missTimeoutMs", &mt);
  fs->layer_timeout = lt;
  fs->ctl_timeout = ct;
  fs->miss_timeout_ms = mt > 0 ? (uint64_t)mt : 60000;
  int debug = get_prop_bool(env, argv[0], "debug");
  double max_slots = ALS_MAX_SLOTS;
  get_prop_double(env, argv[0], "maxSlots", &max_slots);
  napi_value root;
  napi_valuetype rt;
  if (napi_get_named_property(env, argv[0], "rootAttr", &root) == napi_ok && napi_typeof(env, root, &rt) == napi_ok && rt == napi_object) {
    attr_from_js(env, root, &fs->root_attr);
  } else {
    fs->root_attr.st_mode = S_IFDIR | 0755;
    fs->root_attr.st_nlink = 2;
  }
  fs->root_attr.st_ino = FUSE_ROOT_ID;
  /* Passthrough needs CAP_SYS_ADMIN in the initial namespace; rootless it would only be refused. */
  fs->passthrough_wanted = get_prop_bool(env, argv[0], "passthrough") && geteuid() == 0;
  pthread_mutex_init(&fs->slot_mu, NULL);
  pthread_mutex_init(&fs->pmu, NULL);
  als_fdc_init(&fs->fdc);
  pthread_cond_init(&fs->pcv, NULL);
  if (!fs->mountpoint || !opts) {
    free(opts);
    napi_throw_type_error(env, "EINVAL", "mountpoint and options are required strings");
    return NULL;
  }
  napi_value name;
  CHECK(napi_create_string_utf8(env, "lazy-als-fuse", NAPI_AUTO_LENGTH, &name));
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, h, call_js, &fs->tsfn) != napi_ok) {
    free(opts);
    napi_throw_error(env, "ENATIVE", "cannot create the threadsafe function");
    return NULL;
  }
  /* init() sets conn->max_read to 1 MiB, which libfuse requires to equal the mount option. */
  char *all = malloc(strlen(opts) + 32);
  if (!all) { free(opts); napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  sprintf(all, "%s%smax_read=%u", opts, opts[0] ? "," : "", 1u << 20);
  free(opts);
  opts = all;
  char *args_v[] = {"lazy-als", "-o", opts, debug ? "-d" : NULL, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(debug ? 4 : 3, args_v);
  struct fuse_lowlevel_ops ops; /* server.c's handlers, each inside an epoch (slots.c) */
  als_guarded_ops(&ops);
  fs->se = fuse_session_new(&args, &ops, sizeof ops, fs);
  free(opts);
  if (!fs->se) {
    napi_release_threadsafe_function(fs->tsfn, napi_tsfn_abort);
    napi_throw_error(env, "FUSE_MOUNT", "fuse_session_new failed (bad mount options?)");
    return NULL;
  }
  if (fuse_session_mount(fs->se, fs->mountpoint) != 0) {
    fuse_session_destroy(fs->se);
    napi_release_threadsafe_function(fs->tsfn, napi_tsfn_abort);
    napi_throw_error(env, "FUSE_MOUNT", "fuse_session_mount failed");
    return NULL;
  }
  if (fs->passthrough_wanted && fuse_session_custom_io(fs->se, &als_passthrough_io, fuse_session_fd(fs->se)) != 0)
    fs->passthrough_wanted = 0; /* the default session I/O stays: pread for every read */
  if (pthread_create(&fs->timer_thread, NULL, als_timer_main, fs) == 0) fs->timer_started = 1;
  if (als_slots_start(fs, max_slots > 0 && max_slots <= ALS_MAX_SLOTS ? (unsigned)max_slots : ALS_MAX_SLOTS) != 0) {
    fuse_session_unmount(fs->se);
    fuse_session_destroy(fs->se);
    napi_throw_error(env, "FUSE_MOUNT", "cannot start the slot thread");
    return NULL;
  }
  if (pthread_create(&fs->loop_thread, NULL, loop_main, h) != 0) {
    fuse_session_unmount(fs->se);
    fuse_session_destroy(fs->se);
    napi_throw_error(env, "FUSE_MOUNT", "cannot start the FUSE thread");
    return NULL;
  }
  fs->loop_started = 1;
  napi_value ext;
  CHECK(napi_create_external(env, h, NULL, NULL, &ext));
  return ext;
}

/* publish(handle, table: Buffer, inoBase) → slot */
static napi_value js_publish(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h = handle_of(env, argv[0]);
  if (!h) return NULL;
  void *data;
  size_t len;
  double base;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok || napi_get_value_double(env, argv[2], &base) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "publish(handle, Buffer, inoBase)");
    return NULL;
  }
  const char *err;
  struct lt_table *t = lt_table_new(data, len, &err);
  if (!t) { napi_throw_error(env, "EBADTABLE", err); return NULL; }
  uint32_t slot = als_slot_add(h->fs, t, 0, (uint64_t)base, &err);
  if (slot == 0) { lt_table_free(t); napi_throw_error(env, "ENOSPC", err); return NULL; }
  napi_value out;
  CHECK(napi_create_uint32(env, slot, &out));
  return out;
}

/* alias(handle, slot, inoBase) → a new slot over the same table (the same layer under another ref). */
static napi_value js_alias(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h = handle_of(env, argv[0]);
  if (!h) return NULL;
  uint32_t from;
  double base;
  if (napi_get_value_uint32(env, argv[1], &from) != napi_ok || napi_get_value_double(env, argv[2], &base) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "alias(handle, publishedSlot, inoBase)");
    return NULL;
  }
  const char *err = NULL;
  uint32_t slot = als_slot_add(h->fs, NULL, from, (uint64_t)base, &err);
  if (slot == 0) { napi_throw_error(env, from > 0 && from < ALS_MAX_SLOTS && strstr(err, "too many") ? "ENOSPC" : "EINVAL", err); return NULL; }
  napi_value out;
  CHECK(napi_create_uint32(env, slot, &out));
  return out;
}

/* unpublish(handle, slot, parentNodeid, name: Buffer): JS no longer serves the layer of `slot`. The
 * slot keeps answering the ids the kernel holds and is freed once it forgot them (slots.c); the
 * kernel is asked to drop the entry parent/name (the layer's `diff`) so unused ids are forgotten. */
static napi_value js_unpublish(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h = handle_of(env, argv[0]);
  if (!h) return NULL;
  uint32_t slot = 0;
  double parent = 0;
  void *name = NULL;
  size_t len = 0;
  if (argc < 4 || napi_get_value_uint32(env, argv[1], &slot) != napi_ok || napi_get_value_double(env, argv[2], &parent) != napi_ok ||
      napi_get_buffer_info(env, argv[3], &name, &len) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "unpublish(handle, slot, parentNodeid, name)");
    return NULL;
  }
  return bool_value_of(env, !h->closed && als_slot_retire(h->fs, slot, (uint64_t)parent, name, len) == 0);
}

/* slotReleased(handle, slot): JS has forgotten a freed slot (SLOT_FREED): its number may be reused. */
static napi_value js_slot_released(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h = handle_of(env, argv[0]);
  if (!h) return NULL;
  uint32_t slot = 0;
  if (napi_get_value_uint32(env, argv[1], &slot) == napi_ok && !h->closed) als_slot_release_number(h->fs, slot);
  return NULL;
}

/* takeUsed(handle) → Buffer of 32-byte sha256 digests of the chunk objects C served since the last
 * call (each once), for the cache's eviction clock. */
static napi_value js_take_used(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h = handle_of(env, argv[0]);
  if (!h) return NULL;
  size_t cap = 65536; /* per call; the rest stays marked for the next one */
  uint8_t *buf = h->closed ? NULL : malloc(cap * 32);
  size_t n = buf ? als_take_used(h->fs, buf, cap) : 0;
  napi_value out;
  void *dst;
  napi_status st = napi_create_buffer_copy(env, n * 32, buf ? (const void *)buf : (const void *)"", &dst, &out);
  free(buf);
  CHECK(st);
  return out;
}

/* quarantine(handle, slot): the layer does not match its blob. Every slot over its table answers
 * EIO to open and read from now on, its passthrough backing ids are closed (files already open in
 * passthrough are not revoked: see docs/native.md), and the kernel drops the file pages it cached
 * for them (from the slot thread: dropping pages waits for page locks that reads waiting on JS may hold). */
static napi_value js_quarantine(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h = handle_of(env, argv[0]);
  if (!h) return NULL;
  uint32_t slot;
  struct als_fs *fs = h->fs;
  const struct als_slot *s = NULL;
  unsigned ep = als_enter(fs);
  if (napi_get_value_uint32(env, argv[1], &slot) == napi_ok && slot > 0 && slot < ALS_MAX_SLOTS) {
    s = atomic_load_explicit(&fs->slots[slot], memory_order_acquire);
  }
  if (!s) {
    als_leave(fs, ep);
    napi_throw_type_error(env, "EINVAL", "quarantine(handle, slot)");
    return NULL;
  }
  struct lt_table *t = s->t;
  atomic_store(&t->quarantined, 1);
  if (!h->closed) als_quarantine_backing(fs, t);
  uint32_t n_slots;
  pthread_mutex_lock(&fs->slot_mu);
  n_slots = fs->next_slot;
  pthread_mutex_unlock(&fs->slot_mu);
  for (uint32_t k = 1; k < n_slots && k < ALS_MAX_SLOTS && !h->closed; k++) {
    const struct als_slot *o = atomic_load_explicit(&fs->slots[k], memory_order_acquire);
    if (!o || o->t != t) continue;
    for (uint32_t i = 0; i < t->n_nodes; i++) {
      if ((t->nodes[i].mode & S_IFMT) != S_IFREG) continue;
      /* unknown to the kernel (never looked up) is -ENOENT: nothing cached, nothing to do */
      als_queue_inval_inode(fs, ((uint64_t)k << ALS_SLOT_SHIFT) | (uint64_t)(i + 1));
    }
  }
  als_leave(fs, ep);
  napi_value out;
  CHECK(napi_get_boolean(env, true, &out));
  return out;
}

/* --- replies ---------------------------------------------------------------------------------- */

static struct als_pending *take_arg(napi_env env, napi_value *argv, struct als_handle **hp) {
  struct als_handle *h = handle_of(env, argv[0]);
  if (!h) return NULL;
  *hp = h;
  double id;
  if (napi_get_value_double(env, argv[1], &id) != napi_ok) return NULL;
  if (h->closed) return NULL;
  return als_pending_take(h->fs, (uint64_t)id);
}

static napi_value bool_value(napi_env env, int b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

static void attr_from_js(napi_env env, napi_value o, struct stat *st) {
  double v;
  memset(st, 0, sizeof *st);
  if (get_prop_double(env, o, "mode", &v) == 0) st->st_mode = (mode_t)v;
  if (get_prop_double(env, o, "uid", &v) == 0) st->st_uid = (uid_t)v;
  if (get_prop_double(env, o, "gid", &v) == 0) st->st_gid = (gid_t)v;
  if (get_prop_double(env, o, "size", &v) == 0) st->st_size = (off_t)v;
  if (get_prop_double(env, o, "nlink", &v) == 0) st->st_nlink = (nlink_t)v;
  if (get_prop_double(env, o, "ino", &v) == 0) st->st_ino = (ino_t)v;
  if (get_prop_double(env, o, "rdev", &v) == 0) st->st_rdev = (dev_t)v;
  st->st_blksize = 4096;
  st->st_blocks = (st->st_size + 511) / 512;
  if (get_prop_double(env, o, "mtime", &v) == 0) {
    st->st_mtim.tv_sec = (time_t)(v / 1000);
    st->st_mtim.tv_nsec = (long)((v - (double)st->st_mtim.tv_sec * 1000) * 1e6);
    if (st->st_mtim.tv_nsec < 0) st->st_mtim.tv_nsec = 0;
  }
  st->st_atim = st->st_mtim;
  st->st_ctim = st->st_mtim;
}

/* replyErr(handle, id, errno) → answered? */
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h;
  struct als_pending *p = take_arg(env, argv, &h);
  if (!p) return bool_value(env, 0);
  int32_t e = EIO;
  napi_get_value_int32(env, argv[2], &e);
  if (e <= 0 || e > 4095) e = EIO;
  fuse_reply_err(p->req, e);
  als_pending_unref(p);
  return bool_value(env, 1);
}

/* replyEntry(handle, id, nodeid, attr | null, timeoutSec): nodeid ≥ 2^32 is a layer node (attr from its table).
 * timeoutSec is the entry and attr timeout for either kind. */
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h;
  struct als_pending *p = take_arg(env, argv, &h);
  if (!p) return bool_value(env, 0);
  double nodeid = 0, timeout = h->fs->ctl_timeout;
  napi_get_value_double(env, argv[2], &nodeid);
  napi_get_value_double(env, argv[4], &timeout);
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = (fuse_ino_t)nodeid;
  e.generation = 1;
  uint64_t slot = (uint64_t)e.ino >> ALS_SLOT_SHIFT;
  struct als_fs *fs = h->fs;
  struct als_slot *s = NULL;
  unsigned ep = als_enter(fs);
  if (slot != 0) {
    s = slot < ALS_MAX_SLOTS ? atomic_load_explicit(&fs->slots[slot], memory_order_acquire) : NULL;
    uint64_t low = (uint64_t)e.ino & 0xffffffffu;
    int gone = 0;
    if (s) {
      /* A slot JS retired meanwhile may still be held by the kernel (then one more id is fine);
       * one already queued for freeing must not be handed out again: the walk retries (ESTALE). */
      pthread_mutex_lock(&fs->slot_mu);
      gone = s->queued;
      if (!gone) als_slot_hold(fs, s);
      pthread_mutex_unlock(&fs->slot_mu);
    }
    if (!s || gone || low == 0 || low > s->t->n_nodes) {
      if (s && !gone) als_slot_forget(fs, s, 1);
      als_leave(fs, ep);
      fuse_reply_err(p->req, !s || gone ? ESTALE : EIO);
      als_pending_unref(p);
      return bool_value(env, 0);
    }
    als_fill_attr(s, (uint32_t)(low - 1), &e.attr);
    /* JS says how long: the layer's timeout, or 0 when every lookup must reach the access check. */
  } else {
    attr_from_js(env, argv[3], &e.attr);
  }
  e.attr_timeout = timeout;
  e.entry_timeout = timeout;
  int sent = fuse_reply_entry(p->req, &e) == 0;
  if (!sent && s) als_slot_forget(fs, s, 1); /* the kernel did not take the id */
  als_leave(fs, ep);
  als_pending_unref(p);
  return bool_value(env, sent); /* JS counts control ids the kernel holds by this */
}

/* replyAttr(handle, id, attr, timeoutSec) */
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h;
  struct als_pending *p = take_arg(env, argv, &h);
  if (!p) return bool_value(env, 0);
  double timeout = h->fs->ctl_timeout;
  napi_get_value_double(env, argv[3], &timeout);
  struct stat st;
  attr_from_js(env, argv[2], &st);
  fuse_reply_attr(p->req, &st, timeout);
  als_pending_unref(p);
  return bool_value(env, 1);
}

/* replyOpen(handle, id, fh, keepCache) */
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h;
  struct als_pending *p = take_arg(env, argv, &h);
  if (!p) return bool_value(env, 0);
  double fh = 0;
  bool keep = false;
  napi_get_value_double(env, argv[2], &fh);
  napi_get_value_bool(env, argv[3], &keep);
  struct fuse_file_info fi;
  memset(&fi, 0, sizeof fi);
  fi.fh = (uint64_t)fh;
  fi.keep_cache = keep;
  fi.noflush = 1;
  if (fuse_reply_open(p->req, &fi) == -ENOENT) {
    /* The opener was interrupted: JS must forget the handle. */
    als_pending_unref(p);
    return bool_value(env, 0);
  }
  als_pending_unref(p);
  return bool_value(env, 1);
}

/* replyData(handle, id, Buffer): at most the requested size is sent. */
static napi_value js_reply_data(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h;
  struct als_pending *p = take_arg(env, argv, &h);
  if (!p) return bool_value(env, 0);
  void *data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) {
    fuse_reply_err(p->req, EIO);
  } else {
    fuse_reply_buf(p->req, data, len < p->c ? len : (size_t)p->c);
  }
  als_pending_unref(p);
  return bool_value(env, 1);
}

/* replyDataV(handle, id, Buffer[]): the buffers one after the other, at most the requested size,
 * written from where they are (a read made of several chunks is not copied into one buffer first). */
#define ALS_MAX_IOV 256
static napi_value js_reply_data_v(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h;
  struct als_pending *p = take_arg(env, argv, &h);
  if (!p) return bool_value(env, 0);
  struct iovec iov[ALS_MAX_IOV];
  uint32_t n = 0;
  size_t left = (size_t)p->c;
  int cnt = 0, bad = napi_get_array_length(env, argv[2], &n) != napi_ok || n > ALS_MAX_IOV;
  for (uint32_t i = 0; !bad && i < n && left > 0; i++) {
    napi_value v;
    void *data = NULL;
    size_t len = 0;
    if (napi_get_element(env, argv[2], i, &v) != napi_ok || napi_get_buffer_info(env, v, &data, &len) != napi_ok) {
      bad = 1;
      break;
    }
    if (len == 0) continue;
    if (len > left) len = left;
    iov[cnt].iov_base = data;
    iov[cnt].iov_len = len;
    cnt++;
    left -= len;
  }
  if (bad) fuse_reply_err(p->req, EIO);
  else fuse_reply_iov(p->req, iov, cnt);
  als_pending_unref(p);
  return bool_value(env, 1);
}

/* replyDir(handle, id, entries: [name: Buffer, ino, mode][]): the slice from the request's offset that fits. */
static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h;
  struct als_pending *p = take_arg(env, argv, &h);
  if (!p) return bool_value(env, 0);
  uint32_t n = 0;
  napi_get_array_length(env, argv[2], &n);
  size_t size = p->c > (1u << 20) ? (1u << 20) : (size_t)p->c;
  char *buf = malloc(size ? size : 1);
  if (!buf) {
    fuse_reply_err(p->req, ENOMEM);
    als_pending_unref(p);
    return bool_value(env, 1);
  }
  size_t pos = 0;
  for (uint32_t i = (uint32_t)(p->b < n ? p->b : n); i < n; i++) {
    napi_value ent, v;
    if (napi_get_element(env, argv[2], i, &ent) != napi_ok) break;
    void *nm;
    size_t nl;
    double ino = 0, mode = 0;
    if (napi_get_element(env, ent, 0, &v) != napi_ok || napi_get_buffer_info(env, v, &nm, &nl) != napi_ok || nl == 0 || nl > 255) continue;
    if (napi_get_element(env, ent, 1, &v) == napi_ok) napi_get_value_double(env, v, &ino);
    if (napi_get_element(env, ent, 2, &v) == napi_ok) napi_get_value_double(env, v, &mode);
    char name[256];
    memcpy(name, nm, nl);
    name[nl] = 0;
    size_t used;
    if (p->plus) {
      struct fuse_entry_param e;
      memset(&e, 0, sizeof e); /* ino 0: attributes only, the kernel links nothing */
      e.attr.st_ino = (ino_t)ino;
      e.attr.st_mode = (mode_t)mode;
      used = fuse_add_direntry_plus(p->req, buf + pos, size - pos, name, &e, (off_t)i + 1);
    } else {
      struct stat st;
      memset(&st, 0, sizeof st);
      st.st_ino = (ino_t)ino;
      st.st_mode = (mode_t)mode;
      used = fuse_add_direntry(p->req, buf + pos, size - pos, name, &st, (off_t)i + 1);
    }
    if (used > size - pos) break;
    pos += used;
  }
  fuse_reply_buf(p->req, buf, pos);
  free(buf);
  als_pending_unref(p);
  return bool_value(env, 1);
}

/* --- unmount ---------------------------------------------------------------------------------- */

struct unmount_work {
  struct als_handle *h;
  napi_async_work work;
  napi_deferred deferred;
  int conn_id;
  int joined;
};

static void run_fusermount(const char *mnt) {
  pid_t pid;
  char *argv[] = {"fusermount3", "-u", "-z", "-q", (char *)mnt, NULL};
  if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) == 0) {
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  }
}

static void unmount_execute(napi_env env, void *data) {
  (void)env;
  struct unmount_work *w = data;
  struct als_fs *fs = w->h->fs;
  fuse_session_exit(fs->se);
  if (umount2(fs->mountpoint, MNT_DETACH) != 0 && (errno == EPERM || errno == EACCES)) run_fusermount(fs->mountpoint);
  /* Give users of a detached mount a moment, then sever the connection so the loop returns. */
  for (int i = 0; i < 100 && !atomic_load(&w->h->loop_done); i++) usleep(10000);
  if (!atomic_load(&w->h->loop_done) && w->conn_id > 0) {
    char path[64];
    snprintf(path, sizeof path, "/sys/fs/fuse/connections/%d/abort", w->conn_id);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      (void)!write(fd, "1", 1);
      close(fd);
    }
    for (int i = 0; i < 300 && !atomic_load(&w->h->loop_done); i++) usleep(10000);
  }
  pthread_mutex_lock(&fs->pmu);
  fs->stopping = 1;
  pthread_cond_broadcast(&fs->pcv);
  pthread_mutex_unlock(&fs->pmu);
  if (fs->timer_started) pthread_join(fs->timer_thread, NULL);
  if (atomic_load(&w->h->loop_done)) {
    pthread_join(fs->loop_thread, NULL);
    w->joined = 1;
    als_slots_stop(fs); /* no FUSE thread left: nothing can be forgotten or invalidated any more */
  }
  als_fail_all_pending(fs, EIO);
  if (w->joined) {
    fuse_session_unmount(fs->se);
    fuse_session_destroy(fs->se);
  }
}

static void unmount_complete(napi_env env, napi_status status, void *data) {
  (void)status;
  struct unmount_work *w = data;
  struct als_handle *h = w->h;
  if (w->joined) {
    napi_release_threadsafe_function(h->fs->tsfn, napi_tsfn_abort);
    /* Every FUSE thread has ended: the tables can go. */
    if (!h->fs->slot_started) als_slots_free_all(h->fs);
    als_fdc_destroy(&h->fs->fdc); /* tables freed or not, no reader runs any more */
  } else {
    napi_unref_threadsafe_function(env, h->fs->tsfn); /* a FUSE thread is stuck: leave it, let node exit */
  }
  napi_value undef;
  napi_get_undefined(env, &undef);
  napi_resolve_deferred(env, w->deferred, undef);
  napi_delete_async_work(env, w->work);
  free(w);
}

/* unmount(handle, connId) → Promise<void>; idempotent per handle. */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h = handle_of(env, argv[0]);
  if (!h) return NULL;
  napi_value promise;
  napi_deferred deferred;
  CHECK(napi_create_promise(env, &deferred, &promise));
  if (h->closed) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, deferred, undef);
    return promise;
  }
  h->closed = 1;
  struct unmount_work *w = calloc(1, sizeof *w);
  if (!w) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  w->h = h;
  w->deferred = deferred;
  int32_t conn = 0;
  if (argc > 1) napi_get_value_int32(env, argv[1], &conn);
  w->conn_id = conn;
  napi_value name;
  CHECK(napi_create_string_utf8(env, "lazy-als-unmount", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_async_work(env, NULL, name, unmount_execute, unmount_complete, w, &w->work));
  CHECK(napi_queue_async_work(env, w->work));
  return promise;
}

/* stats(handle) → counters */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct als_handle *h = handle_of(env, argv[0]);
  if (!h) return NULL;
  struct als_stats *s = &h->fs->stats;
  napi_value o, v;
  CHECK(napi_create_object(env, &o));
#define STAT(field)                                                          \
  napi_create_double(env, (double)atomic_load(&s->field), &v);               \
  napi_set_named_property(env, o, #field, v);
  STAT(ops) STAT(misses) STAT(cached_reads) STAT(cached_bytes) STAT(verified_objects) STAT(verify_failures) STAT(timeouts)
  STAT(passthrough_opens) STAT(object_opens) STAT(control_forgets) STAT(slots_freed)
#undef STAT
  pthread_mutex_lock(&h->fs->slot_mu);
  napi_create_uint32(env, h->fs->live_slots, &v);
  pthread_mutex_unlock(&h->fs->slot_mu);
  napi_set_named_property(env, o, "slots", v);
  pthread_mutex_lock(&h->fs->pmu);
  unsigned pending = 0;
  for (struct als_pending *p = h->fs->phead; p; p = p->next) pending++;
  pthread_mutex_unlock(&h->fs->pmu);
  napi_create_uint32(env, pending, &v);
  napi_set_named_property(env, o, "pending", v);
  napi_get_boolean(env, atomic_load(&h->fs->passthrough), &v);
  napi_set_named_property(env, o, "passthrough", v);
  napi_get_boolean(env, atomic_load(&h->fs->no_open), &v);
  napi_set_named_property(env, o, "no_open", v);
  return o;
}

/* parseTable(Buffer) → null or the reason it is rejected (for tests of the encoder). */
static napi_value js_check_table(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) { napi_throw_type_error(env, "EINVAL", "checkTable(Buffer)"); return NULL; }
  const char *err;
  struct lt_table *t = lt_table_new(data, len, &err);
  napi_value out;
  if (t) {
    lt_table_free(t);
    napi_get_null(env, &out);
  } else {
    napi_create_string_utf8(env, err, NAPI_AUTO_LENGTH, &out);
  }
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
    {"publish", NULL, js_publish, NULL, NULL, NULL, napi_default, NULL},
    {"alias", NULL, js_alias, NULL, NULL, NULL, napi_default, NULL},
    {"unpublish", NULL, js_unpublish, NULL, NULL, NULL, napi_default, NULL},
    {"slotReleased", NULL, js_slot_released, NULL, NULL, NULL, napi_default, NULL},
    {"takeUsed", NULL, js_take_used, NULL, NULL, NULL, napi_default, NULL},
    {"quarantine", NULL, js_quarantine, NULL, NULL, NULL, napi_default, NULL},
    {"replyErr", NULL, js_reply_err, NULL, NULL, NULL, napi_default, NULL},
    {"replyEntry", NULL, js_reply_entry, NULL, NULL, NULL, napi_default, NULL},
    {"replyAttr", NULL, js_reply_attr, NULL, NULL, NULL, napi_default, NULL},
    {"replyOpen", NULL, js_reply_open, NULL, NULL, NULL, napi_default, NULL},
    {"replyData", NULL, js_reply_data, NULL, NULL, NULL, napi_default, NULL},
    {"replyDataV", NULL, js_reply_data_v, NULL, NULL, NULL, napi_default, NULL},
    {"replyDir", NULL, js_reply_dir, NULL, NULL, NULL, napi_default, NULL},
    {"unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL},
    {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
    {"checkTable", NULL, js_check_table, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
