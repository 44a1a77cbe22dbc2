/**
 * Both FUSE backends side by side (issue 10's table), each figure a ratio to a baseline measured in
 * the same run on the same ext4 filesystem:
 *   - find+stat of a 6.7k-entry layer, kernel caches dropped / warm ÷ the same tree extracted on ext4
 *   - re-read of a 64 MiB file (1 MiB chunks), page cache warm ÷ ext4 warm; after drop_caches (served
 *     from the store's cache) ÷ ext4 cold; the same for a 64 MiB single-object file (passthrough)
 *   - 4 KiB random reads at QD1 on a cached file, IOPS ÷ the ext4 copy (kernel caches dropped)
 *   - small cached files open+read+close, warm, files/s ÷ ext4
 *   - daemon peak RSS after 10 layers × 10k files are indexed and resolved by the mount
 * The catalog is a stand-in that keeps verified chunks in memory (fuse-native reads them from there)
 * and writes them as objects to an object directory, as the real chunk cache does (the native backend
 * reads those in C). One child process per backend, so RSS is per backend. Needs root (drop_caches).
 *
 *   npx vite-node bench/fuse/backends.ts            both backends (native twice: passthrough, no-open)
 *   BENCH_BACKEND=native npx vite-node bench/fuse/backends.ts      (or fuse-native, native-noopen)
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BufferBlob } from '../../src/core/blob.js';
import { digestHex, sha256Of, type Digest } from '../../src/core/digest.js';
import { silentLogger } from '../../src/core/log.js';
import type { ChunkRef, LayerNode, RawEntry } from '../../src/formats/model.js';
import { buildLayerIndex } from '../../src/formats/overlay-view.js';
import { asByteString } from '../../src/formats/byte-string.js';
import type { LayerProvider, ServedLayerView } from '../../src/fuse/layer-provider.js';
import { alsMountSettings, DEFAULTS } from '../../src/daemon/config.js';
import { mountAls, type BackendName } from '../../src/fuse/mount-als.js';
import { report } from '../e2e/report.js';

const MiB = 1024 * 1024;
const DIRS = 66;
const FILES = 100;
const SMALL = 4096;
const BIG = 64 * MiB;

function sh(cmd: string, args: string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(Number(process.hrtime.bigint() - t0) / 1e6) : reject(new Error(`${cmd} exited ${code}`))));
  });
}

function py(code: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn('python3', ['-c', code, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.on('close', (c) => (c === 0 ? resolve(Number(out.trim())) : reject(new Error(`python3 exited ${c}`))));
  });
}

// sync first: drop_caches only drops clean pages, and the ext4 copy was just written (a dirty
// baseline file stays in the page cache, and its "cold" reads are page-cache hits).
const dropCaches = async () => {
  await sh('sync', []);
  await writeFile('/proc/sys/vm/drop_caches', '3').catch(() => undefined);
};

/** IOPS of 4 KiB random reads at QD1 (fadvise RANDOM; each block at most once). */
const RANDOM_QD1 = `import os,random,sys,time
fd=os.open(sys.argv[1],os.O_RDONLY); size=os.fstat(fd).st_size
os.posix_fadvise(fd,0,0,os.POSIX_FADV_RANDOM)
blocks=random.Random(1).sample(range(size//4096), 3000)
t=time.perf_counter()
for b in blocks: os.pread(fd,4096,b*4096)
print(len(blocks)/(time.perf_counter()-t))`;

/** files/s of open+read+close over every file of a tree, warm: the best of 3 passes after a first
 *  one (the machine is shared: the best pass is the least disturbed one, for store and ext4 alike). */
const SMALL_FILES = `import os,sys,time
paths=[os.path.join(r,f) for r,_,fs in os.walk(sys.argv[1]) for f in fs]
def run():
  t=time.perf_counter()
  for p in paths:
    fd=os.open(p,os.O_RDONLY); os.read(fd,65536); os.close(fd)
  return time.perf_counter()-t
run(); print(len(paths)/min(run() for _ in range(3)))`;

function entry(name: string, type: RawEntry['type'], size = 0, chunks: ChunkRef[] = []): RawEntry {
  return { name: asByteString(name), type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size, mtimeSec: 1_704_067_200, mtimeNsec: 0, devMajor: 0, devMinor: 0, xattrs: new Map(), chunks };
}

/** Chunks of `data` (at `blobOff` in the blob) of at most `chunk` bytes. */
function chunksOf(data: Buffer, blobOff: number, chunk: number): ChunkRef[] {
  const out: ChunkRef[] = [];
  for (let off = 0; off < data.length; off += chunk) {
    const size = Math.min(chunk, data.length - off);
    out.push({ digest: sha256Of(data.subarray(off, off + size)), fileOffset: off, size, span: { offset: blobOff + off, end: blobOff + off + size, innerOffset: 0 } });
  }
  return out;
}

interface Built {
  readonly view: ServedLayerView;
  readonly files: Map<string, Buffer>;
}

/** An uncompressed layer whose chunks are all "cached": in memory, and as objects under `objects`. */
async function buildLayer(label: string, spec: [string, Buffer | undefined, number][], objects: string | undefined): Promise<Built> {
  const raw: RawEntry[] = [];
  const parts: Buffer[] = [];
  const files = new Map<string, Buffer>();
  const chunks = new Map<Digest, Buffer>();
  let off = 0;
  for (const [name, data, chunk] of spec) {
    if (!data) {
      raw.push(entry(name, 'dir'));
      continue;
    }
    const cs = chunksOf(data, off, chunk);
    cs.forEach((c) => chunks.set(c.digest, data.subarray(c.fileOffset, c.fileOffset + c.size)));
    raw.push(entry(name, 'reg', data.length, cs));
    parts.push(data);
    files.set(name, data);
    off += data.length;
  }
  const key = sha256Of(Buffer.from(label));
  const blob = new BufferBlob(Buffer.concat(parts), key);
  const index = buildLayerIndex(raw, { format: 'tar', compression: 'none', blobSize: blob.size, blobName: key }, { hideEstargzArtefacts: false });
  if (objects) {
    for (const [d, b] of chunks) {
      const hex = digestHex(d);
      await mkdir(join(objects, 'sha256', hex.slice(0, 2)), { recursive: true });
      await writeFile(join(objects, 'sha256', hex.slice(0, 2), hex.slice(2)), b);
    }
  }
  const view: ServedLayerView = {
    key, keyKind: 'toc', index, blobSize: blob.size,
    info: Buffer.from(JSON.stringify({ 'toc-digest': key, 'diff-size': -1, compression: 0 }) + '\n'),
    async readFile(node: LayerNode, _path: string, offset: number, length: number): Promise<Buffer> {
      const end = Math.min(node.size, offset + length);
      const out: Buffer[] = [];
      for (const c of node.chunks) {
        if (c.fileOffset >= end || c.fileOffset + c.size <= offset) continue;
        out.push(chunks.get(c.digest)!.subarray(Math.max(0, offset - c.fileOffset), Math.min(c.size, end - c.fileOffset)));
      }
      return out.length === 1 ? out[0]! : Buffer.concat(out);
    },
    readBlob: (o, l) => blob.read(o, l),
  };
  return { view, files };
}

/** 'native' mounts as the daemon does (passthrough when root); 'native-noopen' with passthrough off (the
 *  kernel's no-open instead: what a rootless daemon gets). */
type Variant = BackendName | 'native-noopen';

async function one(variant: Variant): Promise<void> {
  const backend: BackendName = variant === 'native-noopen' ? 'native' : variant;
  const dir = await mkdtemp('/var/tmp/lazy-als-bench-');
  const mnt = join(dir, 'mnt');
  const objects = join(dir, 'objects');
  const ext4 = join(dir, 'ext4');
  await mkdir(mnt);
  const spec: [string, Buffer | undefined, number][] = [];
  for (let d = 0; d < DIRS; d++) {
    spec.push([`d${d}/`, undefined, 0]);
    for (let f = 0; f < FILES; f++) spec.push([`d${d}/f${f}`, randomBytes(SMALL), MiB]);
  }
  spec.push(['big.bin', randomBytes(BIG), MiB], ['big1.bin', randomBytes(BIG), BIG]);
  const tree = await buildLayer('bench-backends-tree', spec, objects);
  for (const [name, data] of tree.files) {
    await mkdir(join(ext4, name, '..'), { recursive: true });
    await writeFile(join(ext4, name), data);
  }
  const layers = new Map<string, ServedLayerView>([[tree.view.key, tree.view]]);
  const provider: LayerProvider = { lookup: async (_r, k) => layers.get(k), use: () => undefined, release: () => undefined, cachedObjectsDir: objects };
  const m = await mountAls({ mountpoint: mnt, provider, logger: silentLogger, ...alsMountSettings(DEFAULTS.fuse), backend, ...(variant === 'native-noopen' ? { passthrough: false } : {}) });
  const fig = (name: string, value: number, baseline: number, unit: string, baselineName: string, note?: string) =>
    report({ group: 'fuse backends', name: `${variant}: ${name}`, value, baseline, unit, baselineName, ...(note ? { note } : {}) });
  try {
    const D = join(mnt, tree.view.key, 'diff');
    // Every chunk fetched and verified once (what a first run leaves behind).
    await sh('cat', [join(D, 'big.bin'), join(D, 'big1.bin')]);
    await py(SMALL_FILES, [D]);
    const entries = DIRS * FILES + DIRS + 3;
    await dropCaches();
    const fCold = await sh('find', [D, '-printf', '%s\n']);
    const fWarm = await sh('find', [D, '-printf', '%s\n']);
    await dropCaches();
    const eCold = await sh('find', [ext4, '-printf', '%s\n']);
    const eWarm = await sh('find', [ext4, '-printf', '%s\n']);
    fig(`find+stat ${entries} entries, caches dropped`, (fCold * 1000) / entries, (eCold * 1000) / entries, 'µs/entry', 'ext4 copy');
    fig(`find+stat ${entries} entries, warm`, (fWarm * 1000) / entries, (eWarm * 1000) / entries, 'µs/entry', 'ext4 copy');
    for (const name of ['big.bin', 'big1.bin']) {
      const what = name === 'big.bin' ? '64 MiB file (1 MiB chunks)' : '64 MiB single-object file';
      // Best of 3 (warm) / 2 (cold), store and ext4 alternating: the machine is shared, and the
      // fastest run is the least disturbed one.
      await sh('cat', [join(D, name)]);
      await sh('cat', [join(ext4, name)]);
      let fw = Infinity;
      let ew = Infinity;
      for (let i = 0; i < 3; i++) {
        fw = Math.min(fw, await sh('cat', [join(D, name)]));
        ew = Math.min(ew, await sh('cat', [join(ext4, name)]));
      }
      fig(`re-read of a ${what}, page cache warm`, fw, ew, 'ms', 'ext4 warm');
      let fc = Infinity;
      let ec = Infinity;
      for (let i = 0; i < 2; i++) {
        await dropCaches();
        fc = Math.min(fc, await sh('cat', [join(D, name)]));
        await dropCaches();
        ec = Math.min(ec, await sh('cat', [join(ext4, name)]));
      }
      fig(`read of a ${what} after drop_caches (store's cache)`, fc, ec, 'ms', 'ext4 cold');
    }
    for (const name of ['big.bin', 'big1.bin']) {
      const what = name === 'big.bin' ? '64 MiB file of 1 MiB chunks' : '64 MiB single-object file';
      let fr = 0;
      let er = 0;
      for (let i = 0; i < 2; i++) {
        await dropCaches();
        fr = Math.max(fr, await py(RANDOM_QD1, [join(D, name)]));
        await dropCaches();
        er = Math.max(er, await py(RANDOM_QD1, [join(ext4, name)]));
      }
      fig(`4 KiB random reads QD1 on a cached ${what}, caches dropped (IOPS, higher is better)`, fr, er, 'IOPS', 'local disk');
    }
    const fs = await py(SMALL_FILES, [join(D, 'd0', '..')]);
    const es = await py(SMALL_FILES, [ext4]);
    fig('small cached files open+read+close, warm (files/s, higher is better)', fs, es, 'files/s', 'ext4');
    // RSS: 10 more layers × 10k files, indexed and resolved through the mount.
    for (let i = 0; i < 10; i++) {
      const s: [string, Buffer | undefined, number][] = [];
      for (let d = 0; d < 100; d++) {
        s.push([`d${d}/`, undefined, 0]);
        for (let f = 0; f < 100; f++) s.push([`d${d}/f${f}`, Buffer.from(`${i}/${d}/${f}`), MiB]);
      }
      const l = await buildLayer(`bench-rss-${i}`, s, undefined);
      layers.set(l.view.key, l.view);
      await sh('stat', [join(mnt, l.view.key, 'diff', 'd0', 'f0')]);
    }
    const stats = m.backendStats();
    report({ group: 'fuse backends', name: `${variant}: daemon peak RSS, 11 layers / 106k files`, value: process.resourceUsage().maxRSS / 1024, unit: 'MiB', note: JSON.stringify(stats) });
  } finally {
    await m.unmount();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const only = process.env['BENCH_BACKEND'];
  if (only === 'native' || only === 'fuse-native' || only === 'native-noopen') return one(only);
  for (const b of ['fuse-native', 'native', 'native-noopen'] as const) {
    await new Promise<void>((resolve, reject) => {
      const p = spawn('npx', ['vite-node', fileURLToPath(import.meta.url)], { stdio: 'inherit', env: { ...process.env, BENCH_BACKEND: b } });
      p.on('close', (c) => (c === 0 ? resolve() : reject(new Error(`${b} bench exited ${c}`))));
    });
  }
}

main().then(
  () => setTimeout(() => process.exit(0), 200).unref(),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
