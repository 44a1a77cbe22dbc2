/**
 * The native backend's cached-read path over a REAL mount: layer files whose chunk objects are in
 * the object directory are read by C (pread, or FUSE passthrough when root), each object hashed once
 * per process and trusted while its identity is unchanged; a corrupt or replaced object is never
 * served (JS serves the verified bytes instead). Runs on the native backend only (it is about C).
 */
import { createHash } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { digestHex } from '../../src/core/digest.js';
import { asByteString } from '../../src/formats/byte-string.js';
import type { ServedLayerView } from '../../src/fuse/layer-provider.js';
import { BIG, KEY1, lowerLayer } from './fixtures.js';
import { probe, run, tempMount, type TempMount } from './helpers/mount-fixture.js';
import { buildStandInLayer, keyOf, StandInProvider } from './helpers/stand-in-provider.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Write every chunk object of `layer` under `dir` the way the object store names them. */
async function fillObjects(layer: ServedLayerView, dir: string): Promise<Map<string, string>> {
  const paths = new Map<string, string>(); // file path → first chunk's object path
  for (const [path, node] of layer.index.walk()) {
    if (node.type !== 'reg') continue;
    for (const c of node.chunks) {
      const hex = digestHex(c.digest);
      const p = join(dir, 'sha256', hex.slice(0, 2), hex.slice(2));
      await mkdir(join(dir, 'sha256', hex.slice(0, 2)), { recursive: true });
      await writeFile(p, await layer.readFile(node, path, c.fileOffset, c.size));
      if (!paths.has(path)) paths.set(path, p);
    }
  }
  return paths;
}

/** Drop the kernel's page cache of one file (so the next read reaches the daemon). */
const dropFileCache = (path: string) =>
  run('python3', ['-c', 'import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nos.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)', path]);

describe('native backend: cached reads in C', () => {
  let m: TempMount | undefined;
  afterEach(async () => {
    await m?.close();
    m = undefined;
  });

  it('reads cached objects in C, hashing each once per mount; corrupt or replaced objects are never served', async () => {
    const layer = lowerLayer();
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native' });
    const objects = join(m.dir, 'objects');
    await m.close();
    const paths = await fillObjects(layer, objects);
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native', objectsDir: objects });
    const D = join(m.mnt, KEY1, 'diff');
    const stats = () =>
      m!.mount.backendStats() as { cached_reads: number; verified_objects: number; verify_failures: number; passthrough_opens: number; passthrough: boolean; object_opens: number };

    const first = await probe([{ op: 'read', path: join(D, 'big.bin') }, { op: 'read', path: join(D, 'etc', 'base.txt') }]);
    expect(first[0]!.ok && first[0]!.value.sha256).toBe(sha(BIG));
    expect(first[1]!.ok && first[1]!.value.text).toBe('hello from base layer\n');
    const s1 = stats();
    expect(s1.verified_objects).toBe(Math.ceil(BIG.length / (64 * 1024)) + 1); // 5 chunks of big.bin + base.txt
    expect(s1.passthrough).toBe(process.getuid?.() === 0); // on by default when root (none of these files is a candidate)
    expect(s1.cached_reads).toBeGreaterThan(0);
    expect(s1.object_opens).toBe(s1.verified_objects); // each object opened by path once

    // Again, with the page cache dropped: served from the objects, not hashed again, and through
    // the fds kept open (not opened by path again).
    await dropFileCache(join(D, 'big.bin'));
    const again = await probe([{ op: 'read', path: join(D, 'big.bin') }]);
    expect(again[0]!.ok && again[0]!.value.sha256).toBe(sha(BIG));
    expect(stats().verified_objects).toBe(s1.verified_objects);
    expect(stats().cached_reads).toBeGreaterThan(s1.cached_reads);
    expect(stats().object_opens).toBe(s1.object_opens);

    // An object the store evicts (unlinks) is not served from a kept fd: C sees it unlinked, closes
    // it (its disk space is freed), finds no object by path, and JS serves the read.
    const evicted = paths.get('etc/base.txt')!;
    const { unlink, readlink, readdir } = await import('node:fs/promises');
    const kept = async () => {
      const links = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(join('/proc/self/fd', fd)).catch(() => '')));
      return links.filter((l) => l.startsWith(evicted)).length;
    };
    expect(await kept()).toBe(1);
    await unlink(evicted);
    await dropFileCache(join(D, 'etc', 'base.txt'));
    const misses = (m.mount.backendStats() as { misses: number }).misses;
    const gone = await probe([{ op: 'read', path: join(D, 'etc', 'base.txt') }]);
    expect(gone[0]!.ok && gone[0]!.value.text).toBe('hello from base layer\n');
    expect((m.mount.backendStats() as { misses: number }).misses).toBeGreaterThan(misses);
    expect(await kept()).toBe(0);

    // An object replaced behind our back (new inode) is hashed again, found corrupt, not served.
    const obj = paths.get('big.bin')!;
    const bad = Buffer.from(BIG.subarray(0, 64 * 1024));
    bad[100] = (bad[100] ?? 0) ^ 0xff;
    await writeFile(obj + '.tmp', bad);
    await rename(obj + '.tmp', obj);
    await dropFileCache(join(D, 'big.bin'));
    const third = await probe([{ op: 'read', path: join(D, 'big.bin') }]);
    expect(third[0]!.ok && third[0]!.value.sha256).toBe(sha(BIG));
    expect(stats().verify_failures).toBeGreaterThanOrEqual(1);
  });

  it('a quarantined layer is not served from its cached objects: C answers EIO to open and read, also for pages the kernel had cached', async () => {
    const layer = lowerLayer();
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native' });
    const objects = join(m.dir, 'objects');
    await m.close();
    await fillObjects(layer, objects);
    // The stand-in layer as the catalog's ServedLayer behaves: quarantine() fires onQuarantine once.
    const cbs: (() => void)[] = [];
    let bad = false;
    const view: ServedLayerView = {
      ...layer,
      readFile: (...a) => (bad ? Promise.reject(Object.assign(new Error('quarantined'), { code: 'LAYER_QUARANTINED' })) : layer.readFile(...a)),
      onQuarantine: (cb) => void cbs.push(cb),
    };
    m = await tempMount(new StandInProvider().add(view), { backend: 'native', objectsDir: objects });
    const D = join(m.mnt, KEY1, 'diff');
    const before = await probe([{ op: 'read', path: join(D, 'big.bin') }]);
    expect(before[0]!.ok && before[0]!.value.sha256).toBe(sha(BIG)); // served by C from the objects, now in the page cache
    const cached = (m.mount.backendStats() as { cached_reads: number }).cached_reads;
    expect(cached).toBeGreaterThan(0);
    expect(cbs.length).toBe(1); // the backend registered when it published the table
    bad = true;
    cbs[0]!();
    const after = await probe([{ op: 'read', path: join(D, 'big.bin') }, { op: 'read', path: join(D, 'etc', 'base.txt') }]);
    for (const r of after) expect(r.ok ? 'served' : r.code).toBe('EIO');
    expect((m.mount.backendStats() as { cached_reads: number }).cached_reads).toBe(cached);
    // the tree (lookups, stat) stays: only bytes are refused
    const st = await probe([{ op: 'stat', path: join(D, 'big.bin') }]);
    expect(st[0]!.ok).toBe(true);
  });

  it('a quarantined layer dropped from the tree (rmdir) and looked up again gets a new table that is flagged too: EIO, not its cached objects', async () => {
    const layer = lowerLayer();
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native' });
    const objects = join(m.dir, 'objects');
    await m.close();
    await fillObjects(layer, objects);
    // As the catalog's ServedLayer: onQuarantine fires once (callbacks spliced), `quarantined` stays set,
    // and the provider returns the same layer object on every lookup.
    const cbs: (() => void)[] = [];
    let reason: Error | undefined;
    const view: ServedLayerView = {
      ...layer,
      readFile: (...a) => (reason ? Promise.reject(Object.assign(new Error('quarantined'), { code: 'LAYER_QUARANTINED' })) : layer.readFile(...a)),
      onQuarantine: (cb) => void (reason ? queueMicrotask(cb) : cbs.push(cb)),
      get quarantined() {
        return reason;
      },
    };
    const provider = new StandInProvider().add(view);
    m = await tempMount(provider, { backend: 'native', objectsDir: objects });
    const D = join(m.mnt, KEY1, 'diff');
    const before = await probe([{ op: 'read', path: join(D, 'big.bin') }]);
    expect(before[0]!.ok && before[0]!.value.sha256).toBe(sha(BIG));
    expect(cbs.length).toBe(1);
    const lookups = provider.lookups;
    reason = new Error('layer does not match its blob');
    for (const cb of cbs.splice(0)) cb();
    // c/storage releases the layer (the ALS protocol's rmdir): the tree drops it, its table is unpublished.
    const r = await run('rmdir', [join(m.mnt, KEY1)]);
    expect(r.stderr).toMatch(/No such file or directory/);
    const cached = (m.mount.backendStats() as { cached_reads: number }).cached_reads;
    // Looked up again: a new table over the same (quarantined) layer object.
    const after = await probe([{ op: 'read', path: join(D, 'big.bin') }, { op: 'read', path: join(D, 'etc', 'base.txt') }]);
    for (const x of after) expect(x.ok ? 'served' : x.code).toBe('EIO');
    expect((m.mount.backendStats() as { cached_reads: number }).cached_reads).toBe(cached);
    expect(provider.lookups).toBeGreaterThan(lookups); // resolved (and its table published) again
  });

  it('passthrough (root): a fully cached single-object file of ≥ 1 MiB is read by the kernel from its object', async () => {
    if (process.getuid?.() !== 0) return; // passthrough needs CAP_SYS_ADMIN; rootless it falls back to pread
    const data = Buffer.alloc(2 * 1024 * 1024, 7);
    const layer = buildStandInLayer(keyOf('passthrough'), [{ name: './', mode: 0o755 }, { name: 'one.bin', content: data }], { chunkSize: 4 * 1024 * 1024 });
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native' });
    const objects = join(m.dir, 'objects');
    await m.close();
    await fillObjects(layer, objects);
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native', objectsDir: objects, passthrough: true });
    const r = await probe([{ op: 'read', path: join(m.mnt, layer.key, 'diff', 'one.bin') }]);
    expect(r[0]!.ok && r[0]!.value.sha256).toBe(sha(data));
    const st = m.mount.backendStats() as { passthrough: boolean; passthrough_opens: number; cached_reads: number };
    expect(st.passthrough).toBe(true);
    expect(st.passthrough_opens).toBe(1);
    expect(st.cached_reads).toBe(0); // no READ reached the daemon
  });

  it('passthrough (root) and quarantine: new opens answer EIO; a file already open in passthrough keeps reading (the kernel cannot revoke it; docs/native.md)', async () => {
    if (process.getuid?.() !== 0) return;
    const data = Buffer.alloc(2 * 1024 * 1024, 9);
    const base = buildStandInLayer(keyOf('passthrough-quarantine'), [{ name: './', mode: 0o755 }, { name: 'one.bin', content: data }], { chunkSize: 4 * 1024 * 1024 });
    m = await tempMount(new StandInProvider().add(base), { backend: 'native' });
    const objects = join(m.dir, 'objects');
    await m.close();
    await fillObjects(base, objects);
    const cbs: (() => void)[] = [];
    const view: ServedLayerView = { ...base, onQuarantine: (cb) => void cbs.push(cb) };
    m = await tempMount(new StandInProvider().add(view), { backend: 'native', objectsDir: objects, passthrough: true });
    const f = join(m.mnt, base.key, 'diff', 'one.bin');
    const { open } = await import('node:fs/promises');
    const held = await open(f, 'r'); // a running container's mapped binary
    try {
      expect((m.mount.backendStats() as { passthrough_opens: number }).passthrough_opens).toBe(1);
      cbs[0]!();
      const again = await probe([{ op: 'read', path: f }]);
      expect(again[0]!.ok ? 'served' : again[0]!.code).toBe('EIO');
      const b = Buffer.alloc(4096);
      const { bytesRead } = await held.read(b, 0, b.length, 1024 * 1024);
      expect(bytesRead).toBe(b.length); // not revoked: documented, not wished away
      expect(b.equals(data.subarray(1024 * 1024, 1024 * 1024 + 4096))).toBe(true);
    } finally {
      await held.close();
    }
  });

  it('passthrough: a file still open from before its object was cached opens again (the kernel refuses mixed I/O modes on one inode)', async () => {
    if (process.getuid?.() !== 0) return;
    // What podman hit with busybox: the first exec opens the binary before it is cached (cached
    // mode, READs to the daemon) and keeps it mapped; the next exec of it found the object cached
    // and asked for passthrough, which the kernel answers with EIO while a cached-mode file is open.
    const data = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
    const base = buildStandInLayer(keyOf('passthrough-mixed'), [{ name: './', mode: 0o755 }, { name: 'bin', content: data }], { chunkSize: 4 * 1024 * 1024 });
    m = await tempMount(new StandInProvider().add(base), { backend: 'native' });
    const objects = join(m.dir, 'objects');
    await m.close();
    // The stand-in catalog fills the object store on the first read, as the real chunk cache does.
    const layer: ServedLayerView = {
      ...base,
      async readFile(node, path, offset, length, signal) {
        const out = await base.readFile(node, path, offset, length, signal);
        const hex = digestHex(node.chunks[0]!.digest);
        await mkdir(join(objects, 'sha256', hex.slice(0, 2)), { recursive: true });
        await writeFile(join(objects, 'sha256', hex.slice(0, 2), hex.slice(2)), await base.readFile(node, path, 0, node.size));
        return out;
      },
    };
    await mkdir(objects, { recursive: true });
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native', objectsDir: objects, passthrough: true });
    const file = join(m.mnt, layer.key, 'diff', 'bin');
    const script = `import hashlib,os,sys
def all(fd):
  out=b''
  while True:
    b=os.pread(fd,1<<20,len(out))
    if not b: return out
    out+=b
first=os.open(sys.argv[1],os.O_RDONLY)
a=all(first)
try:
  second=os.open(sys.argv[1],os.O_RDONLY)
  b=all(second)
  os.close(second)
except OSError as e:
  b=('error '+str(e.errno)).encode()
os.close(first)
third=os.open(sys.argv[1],os.O_RDONLY)
c=all(third)
print(hashlib.sha256(a).hexdigest(), hashlib.sha256(b).hexdigest() if not b.startswith(b'error') else b.decode().replace(' ','-'), hashlib.sha256(c).hexdigest())`;
    const r = await run('python3', ['-c', script, file]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split(' ')).toEqual([sha(data), sha(data), sha(data)]);
    const st = m.mount.backendStats() as { passthrough: boolean; misses: number };
    expect(st.passthrough).toBe(true);
    expect(st.misses).toBeGreaterThan(0); // the first read really went to the catalog
  });

  /** ops C counted while `script` (python) ran. */
  const opsDuring = async (script: string, args: readonly string[]): Promise<number> => {
    const before = (m!.mount.backendStats() as { ops: number }).ops;
    const r = await run('python3', ['-c', script, ...args]);
    expect(r.stderr).toBe('');
    return (m!.mount.backendStats() as { ops: number }).ops - before;
  };
  /** open+read+close of argv[1], argv[2] times */
  const OPEN_ONE = `import os,sys
for _ in range(int(sys.argv[2])):
  fd=os.open(sys.argv[1],os.O_RDONLY); os.read(fd,1<<20); os.close(fd)`;
  /** open+read+close of the files argv[2:] (relative to argv[1], from inside it: no walk from the mountpoint) */
  const OPEN_IN = `import os,sys
os.chdir(sys.argv[1])
for p in sys.argv[2:]:
  fd=os.open(p,os.O_RDONLY); os.read(fd,1<<20); os.close(fd)`;

  it('warm opens by absolute path cost one round trip each, not two (the root attributes are cached for a second)', async () => {
    const layer = lowerLayer();
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native' });
    const objects = join(m.dir, 'objects');
    await m.close();
    await fillObjects(layer, objects);
    // Passthrough on (root) or off: either way an open of a cached file costs at most an OPEN (and a
    // RELEASE, sent without waiting); with the root's attributes uncached, each walk from the
    // mountpoint also cost a GETATTR of the root.
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native', objectsDir: objects, passthrough: true });
    const file = join(m.mnt, layer.key, 'diff', 'etc', 'base.txt');
    await opsDuring(OPEN_ONE, [file, '1']);
    expect(await opsDuring(OPEN_ONE, [file, '200'])).toBeLessThan(2.5 * 200);
  });

  it('without passthrough the kernel opens layer files itself (no-open: no round trip per open); control files still read', async () => {
    const layer = lowerLayer();
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native' });
    const objects = join(m.dir, 'objects');
    await m.close();
    await fillObjects(layer, objects);
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native', objectsDir: objects, passthrough: false });
    const D = join(m.mnt, layer.key, 'diff');
    const files = [...layer.index.walk()].filter(([, n]) => n.type === 'reg').map(([p]) => p);
    expect(files.length).toBeGreaterThan(3);
    await opsDuring(OPEN_IN, [D, ...files]); // first pass: lookups, reads, and the one OPEN answered ENOSYS
    expect((m.mount.backendStats() as { no_open: boolean }).no_open).toBe(true);
    // Second pass: nothing reaches the daemon (at most the root's GETATTR of the chdir); with OPEN
    // it was an OPEN and a RELEASE per file.
    expect(await opsDuring(OPEN_IN, [D, ...files])).toBeLessThanOrEqual(1);
    // The control files now open without us too (fh 0): JS opens them per read.
    const info = await probe([{ op: 'read', path: join(m.mnt, layer.key, 'info') }]);
    expect(info[0]!.ok && info[0]!.value.text).toBe(layer.info.toString());
  });

  it('kept object fds: the next chunk is prefetched when a read starts a chunk; the fd of an evicted object nobody reads is closed', async () => {
    const layer = lowerLayer();
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native' });
    const objects = join(m.dir, 'objects');
    await m.close();
    await fillObjects(layer, objects);
    m = await tempMount(new StandInProvider().add(layer), { backend: 'native', objectsDir: objects });
    const file = join(m.mnt, layer.key, 'diff', 'big.bin');
    const node = layer.index.lookup(asByteString('big.bin'));
    if (!node || node.type !== 'reg' || node.chunks.length < 3) throw new Error('fixture: big.bin should have several chunks');
    const objectOf = (i: number) => {
      const hex = digestHex(node.chunks[i]!.digest);
      return join(objects, 'sha256', hex.slice(0, 2), hex.slice(2));
    };
    const residentPages = async (path: string) => Number((await run('fincore', ['--bytes', '--noheadings', '--output', 'PAGES', path])).stdout.trim());
    const until = async (cond: () => Promise<boolean>, what: string) => {
      for (let i = 0; i < 200 && !(await cond()); i++) await new Promise((r) => setTimeout(r, 100));
      expect(await cond(), what).toBe(true);
    };
    // Verify every object once (a whole read), then drop all page caches involved (written just
    // now: dirty pages would stay, hence the fsync).
    expect((await probe([{ op: 'read', path: file }]))[0]!.ok).toBe(true);
    const dropAll = `import os,sys
for p in sys.argv[1:]:
  fd=os.open(p,os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)`;
    await run('python3', ['-c', dropAll, file, ...node.chunks.map((_, i) => objectOf(i))]);
    expect(await residentPages(objectOf(1))).toBe(0);
    // 4 KiB at the start of chunk 0, no readahead on our side: C reads chunk 0 and asks for chunk 1.
    const r = await run('python3', ['-c', `import os,sys
fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_RANDOM); os.pread(fd,4096,0)`, file]);
    expect(r.stderr).toBe('');
    await until(async () => (await residentPages(objectOf(1))) > 0, 'chunk 1 prefetched');
    expect(await residentPages(objectOf(2))).toBe(0); // only the next one
    // Evict chunk 2's object (kept open since the whole read) without reading it again: the timer
    // thread closes the idle fd so its disk space is freed.
    const { unlink, readlink, readdir } = await import('node:fs/promises');
    const evicted = objectOf(2);
    const held = async () => {
      const links = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(join('/proc/self/fd', fd)).catch(() => '')));
      return links.filter((l) => l.startsWith(evicted)).length;
    };
    expect(await held()).toBe(1);
    await unlink(evicted);
    await until(async () => (await held()) === 0, 'the evicted object closed');
  });
});
