/**
 * The raw native binding (native/, through its one loader in src/fuse/native-backend.ts) over a
 * REAL FUSE mount: table checks, layer nodes answered in C, and a JS side that misbehaves — a
 * dispatcher that throws (EIO), one that never answers (the C deadline answers ETIMEDOUT) — never
 * wedge the mount. Syscalls come from child processes (the JS thread serves the mount).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { podmanRootlessRanges, rangeIdMap } from '../../src/fuse/id-map.js';
import { encodeLayerTable } from '../../src/fuse/layer-table.js';
import { loadNative } from '../../src/fuse/native-backend.js';
import type { NativeHandle } from '../../native/index.js';
import { KEY1, LOWER, CAP } from '../fuse/fixtures.js';
import { buildStandInLayer } from '../fuse/helpers/stand-in-provider.js';
import { probe, run, waitUnmounted } from '../fuse/helpers/mount-fixture.js';

const n = loadNative();
const DIR = 0o040755;
const layer = buildStandInLayer(KEY1, LOWER, { chunkSize: 64 * 1024 });
const table = encodeLayerTable(layer.index);

/** getxattr(2) with an explicit buffer size, from a child process: [ret, errno name]. */
async function getxattrSized(path: string, name: string, size: number): Promise<string> {
  const py = `import ctypes,os,sys\nlibc=ctypes.CDLL(None,use_errno=True)\nbuf=ctypes.create_string_buffer(max(1,${size}))\nr=libc.getxattr(sys.argv[1].encode(),sys.argv[2].encode(),buf if ${size} else None,${size})\nprint(r if r>=0 else os.strerror(ctypes.get_errno()))`;
  const r = await run('python3', ['-c', py, path, name]);
  return r.stdout.trim();
}

describe('table checks', () => {
  it('accepts an encoded layer and rejects truncated, out-of-range and unsorted tables', () => {
    expect(n.checkTable(table)).toBeNull();
    expect(n.checkTable(table.subarray(0, table.length - 1))).toMatch(/length/);
    const badChild = Buffer.from(table);
    // node 0's child_first (offset 32 + 64) pointing past the dirents
    badChild.writeUInt32LE(0xffff_fff0, 32 + 64);
    expect(n.checkTable(badChild)).toMatch(/children out of range/);
    const badParent = Buffer.from(table);
    badParent.writeUInt32LE(0xffff_ffff, 32 + 88 + 44);
    expect(n.checkTable(badParent)).toMatch(/parent out of range/);
    const magic = Buffer.from(table);
    magic.writeUInt32LE(0, 0);
    expect(n.checkTable(magic)).toMatch(/magic/);
  });

  it('a root store publishes the index\'s own buffer; a mapped (rootless) store a checked copy with its ids and xattrs', () => {
    expect(table).toBe(layer.index.table);
    const ranges = podmanRootlessRanges(1000, [{ start: 100_000, count: 65_536 }]);
    const mapped = encodeLayerTable(layer.index, rangeIdMap(ranges, ranges));
    expect(mapped).not.toBe(layer.index.table);
    expect(n.checkTable(mapped)).toBeNull();
    // node 0 (the root, uid 0 in the layer) is shown as the user; xattr records still in range
    expect(mapped.readUInt32LE(32 + 4)).toBe(1000);
    expect(mapped.readUInt32LE(16)).toBeLessThanOrEqual(layer.index.table.readUInt32LE(16));
  });
});

describe('raw binding over a real mount', () => {
  let dir: string;
  let mnt: string;
  let h: NativeHandle;
  let slot = 0;
  const seen: { op: number; uid: number; name?: string }[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lazy-als-native-'));
    mnt = join(dir, 'mnt');
    await mkdir(mnt);
    h = n.mount({ mountpoint: mnt, options: 'auto_unmount,fsname=lazy-als-test', layerTimeoutSec: 60, controlTimeoutSec: 0, missTimeoutMs: 500 }, (id, op, nodeid, _a, _b, _c, _d, uid, _gid, _pid, _plus, name) => {
      const nm = name?.toString('latin1');
      seen.push({ op, uid, ...(nm !== undefined ? { name: nm } : {}) });
      const root = { mode: DIR, uid: 0, gid: 0, size: 0, nlink: 2, ino: 1, rdev: 0, mtime: 0 };
      if (op === 2) return void n.replyAttr(h, id, root, 0);
      if (op === 3) return void n.replyDir(h, id, [[Buffer.from('.'), 1, DIR], [Buffer.from('..'), 1, DIR], [Buffer.from('layer'), 7, DIR]]);
      if (op === 1 && nodeid === 1) {
        if (nm === 'slow') return; // never answered: the C deadline must
        if (nm === 'throw') throw new Error('dispatcher bug');
        if (nm === 'layer') {
          slot ||= n.publish(h, table, 1000);
          return void n.replyEntry(h, id, slot * 2 ** 32 + 1, null, 60); // the timeout JS gives is the one the kernel gets
        }
      }
      if (id !== 0) n.replyErr(h, id, 2);
    });
  });
  afterAll(async () => {
    if (h) await n.unmount(h, 0);
    if (mnt) await waitUnmounted(mnt).catch(() => run('fusermount3', ['-uz', mnt]));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers layer nodes from the table in C: lookup, stat, readdir, readlink, xattrs with ERANGE', async () => {
    const L = join(mnt, 'layer');
    const r = await probe([
      { op: 'stat', path: join(L, 'etc', 'base.txt') },
      { op: 'readdir', path: join(L, 'bin') },
      { op: 'readlink', path: join(L, 'bin', 'sh') },
      { op: 'lstat', path: join(L, 'dev', 'null') },
      { op: 'stat', path: join(L, 'nope') },
      { op: 'stat', path: join(L, 'bin', 'ping') },
      { op: 'stat', path: join(L, 'bin', 'hl') },
    ]);
    const v = r.map((x) => (x.ok ? x.value : x.code));
    expect(v[0].size).toBe(22);
    expect(v[1]).toEqual([{ name: 'hl', type: 'reg' }, { name: 'ping', type: 'reg' }, { name: 'sh', type: 'symlink' }]);
    expect(v[2]).toBe('/bin/busybox');
    expect(v[3].type).toBe('char');
    expect(v[4]).toBe('ENOENT');
    expect(v[5].ino).toBe(v[6].ino); // hardlinks share their node
    expect(v[5].mode & 0o7777).toBe(0o4755);
    const ping = join(L, 'bin', 'ping');
    expect(await getxattrSized(ping, 'security.capability', 0)).toBe(String(CAP.length));
    expect(await getxattrSized(ping, 'security.capability', CAP.length - 1)).toBe('Numerical result out of range');
    expect(await getxattrSized(ping, 'security.capability', CAP.length)).toBe(String(CAP.length));
    expect(await getxattrSized(ping, 'user.absent', 64)).toBe('No data available');
    // Nothing inside the layer reached JS: only the root and the `layer` lookup did.
    // (`layer` itself may be looked up again: anything dropping the kernel's dentries on this shared
    // machine, a bench's drop_caches, makes the kernel ask again.)
    const lookups = seen.filter((s) => s.op === 1).map((s) => s.name);
    expect(lookups.length).toBeGreaterThan(0);
    expect(new Set(lookups)).toEqual(new Set(['layer']));
  });

  it('a dispatcher that throws ⇒ EIO; one that never answers ⇒ ETIMEDOUT from C; the mount keeps serving', async () => {
    const r = await probe([
      { op: 'stat', path: join(mnt, 'throw') },
      { op: 'stat', path: join(mnt, 'slow') },
      { op: 'stat', path: join(mnt, 'layer', 'etc') },
      { op: 'stat', path: mnt },
    ]);
    expect(r.map((x) => (x.ok ? 'ok' : x.code))).toEqual(['EIO', 'ETIMEDOUT', 'ok', 'ok']);
    expect(n.stats(h).timeouts).toBeGreaterThanOrEqual(1);
    expect(n.stats(h).pending).toBe(0);
    // The caller's credentials reach JS (the trust policy decides on them).
    expect(seen.find((s) => s.name === 'slow')?.uid).toBe(process.getuid!());
  });
});
