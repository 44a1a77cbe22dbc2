/**
 * The native backend's bookkeeping over a REAL mount (the auditor's items in docs/native.md):
 *  - an access policy the kernel cannot enforce is checked on every path walk, never skipped
 *    because the kernel cached an entry a permitted caller looked up first;
 *  - control nodes (`<ref>`, `<key>`, `info`, `blob`) are remembered only while the kernel holds
 *    them (FORGET reaches JS), so looking up endless names does not grow the daemon;
 *  - a layer the tree drops gives its slot back once the kernel forgot its ids, and the slot number
 *    is reused (the 65,535-slot bound is never reached by churn), while a file still open in it
 *    keeps reading right;
 *  - reads C answers from cache objects reach the cache's eviction clock, so eviction does not drop
 *    the hottest layer's chunks first.
 * Runs on the native backend only (it is about what C and its JS side remember).
 */
import { existsSync } from 'node:fs';
import { access, chmod, mkdtemp, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkCache } from '../../src/cache/chunk-cache.js';
import { Eviction } from '../../src/cache/eviction.js';
import { MetadataStore } from '../../src/cache/metadata-store.js';
import { ObjectStore } from '../../src/cache/object-store.js';
import { LayerCatalog } from '../../src/catalog/catalog.js';
import { digestHex, sha256Of, type Digest } from '../../src/core/digest.js';
import { refToBase64 } from '../../src/sources/reference.js';
import { AccessPolicy } from '../../src/fuse/access-policy.js';
import { tempDir } from '../cache/support/tmp.js';
import { LayoutSource } from '../catalog/support/layout-source.js';
import { buildEStargz, prand } from '../helpers/writers/estargz.js';
import { KEY1, lowerLayer } from './fixtures.js';
import { run, tempMount, type TempMount } from './helpers/mount-fixture.js';
import { buildStandInLayer, keyOf, StandInProvider } from './helpers/stand-in-provider.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `f` until it holds (or `ms` passed): for what the kernel does asynchronously (FORGET). */
async function eventually(f: () => boolean, ms = 10_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (!f()) {
    if (Date.now() > until) return false;
    await sleep(20);
  }
  return true;
}

/**
 * Run `script` (sh, with args) in a memory cgroup of its own; `reclaim()` then frees that cgroup's
 * memory: the dentries and inodes its lookups created go (they are charged to it), so the kernel
 * FORGETs them — without touching any other mount's caches (unlike drop_caches).
 */
async function inCgroup(script: string, args: readonly string[], after: (reclaim: () => Promise<void>) => Promise<void>): Promise<void> {
  const cg = await mkdtemp('/sys/fs/cgroup/memory/lazy-als-test-');
  try {
    const r = await run('sh', ['-c', `echo $$ > "$0/cgroup.procs" && ${script}`, cg, ...args]);
    expect(r.code, r.stderr).toBe(0);
    await after(async () => {
      const e = await run('sh', ['-c', 'echo 0 > "$0/memory.force_empty"', cg]);
      if (e.code !== 0) throw new Error(`memory.force_empty: ${e.stderr}`);
    });
  } finally {
    await rmdir(cg);
  }
}

/** `cat path` as the real user nobody (65534), no supplementary groups: stdout, or the error text. */
async function catAsNobody(path: string): Promise<{ code: number | null; out: string }> {
  const r = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'cat', path]);
  return { code: r.code, out: r.code === 0 ? r.stdout : r.stderr };
}

describe('native backend: what the mount remembers', () => {
  let m: TempMount | undefined;
  afterEach(async () => {
    await m?.close();
    m = undefined;
  });

  it('a policy the kernel cannot enforce (two non-root uids) is checked on every walk, also after root resolved the layer', async () => {
    // 60001 and 60002 may resolve; nobody (65534) may not. Two non-root uids: no directory mode
    // expresses that, so the control dirs are 0755 and the daemon's check is the only gate.
    const policy = AccessPolicy.fromConfig({ resolveUids: [60001, 60002], resolveGids: [], daemonUid: 0 });
    expect(policy.kernelEnforceable).toBe(false);
    m = await tempMount(new StandInProvider().add(lowerLayer()), { backend: 'native', policy });
    await chmod(m.dir, 0o755);
    const file = join(m.mnt, KEY1, 'diff', 'etc', 'base.txt');
    // root resolves the layer first (what podman does): the kernel now holds `<key>/diff`
    const asRoot = await run('cat', [file]);
    expect(asRoot).toMatchObject({ code: 0, stdout: 'hello from base layer\n' });
    // nobody walks the same path: the `diff` entry must not come from the kernel's cache
    const first = await catAsNobody(file);
    expect(first.code, first.out).not.toBe(0);
    expect(first.out).toMatch(/Permission denied/);
    // and again (a negative answer is not cached either), while root still reads it
    expect((await catAsNobody(join(m.mnt, KEY1, 'info'))).out).toMatch(/Permission denied/);
    expect((await catAsNobody(file)).out).toMatch(/Permission denied/);
    expect(await run('cat', [file])).toMatchObject({ code: 0, stdout: 'hello from base layer\n' });
  });

  it('control nodes are remembered only while the kernel holds them (FORGET reaches JS)', async () => {
    m = await tempMount(new StandInProvider().add(lowerLayer()), { backend: 'native' });
    const stats = () => m!.mount.backendStats() as { controlNodes: number; control_forgets: number };
    // Every well-formed `<key>` name is a directory: any process can make the daemon learn one.
    const names = Array.from({ length: 300 }, (_, i) => `sha256:${digestHex(sha256Of(Buffer.from(`name ${i}`)))}`);
    await inCgroup('m="$1"; shift; for n in "$@"; do stat -c %F "$m/$n" >/dev/null || exit 1; done', [m.mnt, ...names], async (reclaim) => {
      // Unserved names are answered with entry timeout 0, so some mounts FORGET them at once (audit H2);
      // in any case reclaiming the lookups' memory must bring the count back.
      await reclaim();
      expect(await eventually(() => stats().controlNodes < 10), JSON.stringify(stats())).toBe(true);
    });
    expect(stats().control_forgets).toBeGreaterThanOrEqual(300);
    // forgotten nodes are learnt again on the next walk, and what they lead to still works
    expect(await run('cat', [join(m.mnt, KEY1, 'diff', 'etc', 'base.txt')])).toMatchObject({ code: 0, stdout: 'hello from base layer\n' });
    expect((await run('stat', ['-c', '%F', join(m.mnt, names[0]!)])).stdout).toBe('directory\n');
  });

  it('dropped layers give their slots back once the kernel forgot them; a file held open in one keeps reading', async () => {
    const provider = new StandInProvider();
    const keys = Array.from({ length: 24 }, (_, i) => keyOf(`churn ${i}`));
    keys.forEach((k, i) => provider.add(buildStandInLayer(k, [{ name: 'f.txt', content: `layer ${i}\n` }, { name: 'd' }, { name: 'd/g', content: 'x'.repeat(100_000 + i) }])));
    // 2 layers kept by the tree, 4 slots in C: without slot reuse the 5th layer could not be served.
    m = await tempMount(provider, { backend: 'native', maxLayers: 2, maxLayerSlots: 4 });
    const stats = () => m!.mount.backendStats() as { slots: number; slots_freed: number; layers: number };
    const file = (i: number, name = 'f.txt') => join(m!.mnt, keys[i]!, 'diff', name);
    // A reader that holds layer 0's big file open while the tree drops layer 0, then reads it.
    const flag = join(m.dir, 'go');
    const held = run('sh', ['-c', 'exec 3<"$0" && touch "$1.open"; while [ ! -e "$1" ]; do sleep 0.05; done; cat <&3 | sha256sum', file(0, 'd/g'), flag]);
    expect(await eventually(() => existsSync(`${flag}.open`))).toBe(true);
    for (let i = 0; i < keys.length; i++) {
      const r = await run('cat', [file(i)]);
      expect(r, `layer ${i}`).toMatchObject({ code: 0, stdout: `layer ${i}\n` });
      // the kernel forgets the dropped layers' ids shortly after the tree drops them
      expect(await eventually(() => stats().slots <= 3), `slots after layer ${i}: ${JSON.stringify(stats())}`).toBe(true);
    }
    expect(stats().slots_freed).toBeGreaterThanOrEqual(keys.length - 3);
    expect(stats().layers).toBeLessThanOrEqual(2);
    await writeFile(flag, '');
    const h = await held;
    expect(h.stdout.split('\n')[0]).toBe(`${digestHex(sha256Of(Buffer.from('x'.repeat(100_000))))}  -`);
  });

  it('reads C serves from cache objects reach the eviction clock: gc drops the cold layer, not the hot one', async () => {
    const dir = await tempDir('lazy-als-native-evict-');
    const src = await LayoutSource.create(join(dir, 'layout'));
    const BIG = prand(300_000, 'hot');
    const SMALL = prand(5000, 'cold');
    const esgz = buildEStargz(
      [
        { name: 'hot', type: 'reg', data: BIG },
        { name: 'cold', type: 'reg', data: SMALL },
      ],
      { chunkSize: 1 << 20 },
    );
    const REF = 'localhost:5000/evict:1';
    await src.addImage(REF, [{ blob: esgz.blob, diffId: esgz.diffId, annotations: { 'containerd.io/snapshot/stargz/toc.digest': esgz.tocDigest, 'io.containers.estargz.uncompressed-size': String(esgz.uncompressedSize) } }]);
    const state = join(dir, 'state');
    const blobStore = await ObjectStore.open({ dir: join(state, 'objects'), tmpDir: join(state, 'tmp', 'objects') });
    // Access times above the objects' real mtimes (gc orders by the later of the two).
    const T = Date.now() + 3_600_000;
    let clock = T + 1000;
    const eviction = await Eviction.open({ store: blobStore, maxBytes: 1 << 30, flushIntervalMs: 0, now: () => clock });
    const chunkCache = new ChunkCache({ store: blobStore, eviction });
    const catalog = new LayerCatalog({ source: src, metadata: await MetadataStore.open({ stateDir: state }), chunkCache, blobStore, eviction });
    try {
      m = await tempMount(catalog, { backend: 'native' });
      const D = join(m.mnt, refToBase64(REF), esgz.tocDigest, 'diff');
      const objectOf = (d: Digest) => join(state, 'objects', 'sha256', digestHex(d).slice(0, 2), digestHex(d).slice(2));
      const hot = objectOf(sha256Of(BIG));
      const cold = objectOf(sha256Of(SMALL));
      const sum = async (p: string) => (await run('sha256sum', [p])).stdout.split(' ')[0];
      // t=1000 the hot file is fetched (through JS), t=2000 the cold one
      expect(await sum(join(D, 'hot'))).toBe(digestHex(sha256Of(BIG)));
      await chunkCache.drain();
      clock = T + 2000;
      expect(await sum(join(D, 'cold'))).toBe(digestHex(sha256Of(SMALL)));
      await chunkCache.drain();
      await access(hot);
      await access(cold);
      // Then each is read again with its page cache dropped, so C serves it from its object: hot at
      // t=3000 (C opens the object), cold at t=4000, hot at t=5000 (C's open fd of it, if it keeps one).
      const viaC = async (name: string, at: number, digest: Digest): Promise<void> => {
        clock = T + at;
        await run('python3', ['-c', 'import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nos.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)', join(D, name)]);
        const before = (m!.mount.backendStats() as { cached_reads: number }).cached_reads;
        expect(await sum(join(D, name))).toBe(digestHex(digest));
        expect((m!.mount.backendStats() as { cached_reads: number }).cached_reads).toBeGreaterThan(before);
        m!.mount.flushCachedReads!();
      };
      await viaC('hot', 3000, sha256Of(BIG));
      await viaC('cold', 4000, sha256Of(SMALL));
      await viaC('hot', 5000, sha256Of(BIG));
      // Keep only as many bytes as the hot object: the least recently used go first.
      await eviction.gc({ targetBytes: BIG.length });
      await expect(access(hot)).resolves.toBeUndefined();
      await expect(access(cold)).rejects.toThrow(/ENOENT/);
    } finally {
      await m?.close();
      m = undefined;
      await chunkCache.drain();
      await catalog.close();
      await src.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a drop listener that throws (e.g. an addon older than the JS) does not turn rmdir into EIO', async () => {
    const provider = new StandInProvider().add(lowerLayer());
    m = await tempMount(provider, { backend: 'native' });
    expect(await run('cat', [join(m.mnt, KEY1, 'diff', 'etc', 'base.txt')])).toMatchObject({ code: 0 });
    m.mount.tree.setDropListener(() => {
      throw new TypeError('n.unpublish is not a function');
    });
    const r = await run('rmdir', [join(m.mnt, KEY1)]);
    expect(r.stderr).toMatch(/No such file or directory/);
    expect(provider.releases).toEqual([[undefined, KEY1]]);
    expect(m.log.lines.some((l) => l['event'] === 'fuse.drop_listener_failed')).toBe(true);
  });
});
