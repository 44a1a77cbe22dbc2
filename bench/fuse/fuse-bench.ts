/**
 * FUSE-side benchmarks over a real mount (the catalog replaced by an in-memory stand-in that keeps
 * verified chunks, as the real chunk cache does):
 *   1. sequential read of one big file through the mount vs the same bytes from a local file in
 *      page cache (daemon warm; first pass = kernel cold for the mount, second = kernel_cache hit);
 *   2. find+stat walk of a 20k-entry layer (200 dirs × 100 files), cold then warm, µs per entry;
 *   3. daemon RSS with 10 layers × 10k files indexed and resolved by the mount.
 * Clients are child processes (dd, find): this process's JS thread serves the mount.
 *
 *   npx vite-node bench/fuse/fuse-bench.ts
 *   BENCH_SEQ_MIB=512 npx vite-node bench/fuse/fuse-bench.ts
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BufferBlob } from '../../src/core/blob.js';
import { sha256Of, type Digest } from '../../src/core/digest.js';
import { silentLogger } from '../../src/core/log.js';
import { readVerifiedChunks } from '../../src/formats/chunk-reader.js';
import type { ChunkRef, LayerNode, RawEntry } from '../../src/formats/model.js';
import { buildLayerIndex } from '../../src/formats/overlay-view.js';
import type { LayerProvider, ServedLayerView } from '../../src/fuse/layer-provider.js';
import { alsMountSettings, DEFAULTS } from '../../src/daemon/config.js';
import { mountAls } from '../../src/fuse/mount-als.js';
import { asByteString } from '../../src/formats/byte-string.js';

const SEQ_MIB = Number(process.env['BENCH_SEQ_MIB'] ?? 256);
const CHUNK = 1024 * 1024;

function sh(cmd: string, args: string[]): Promise<{ ms: number; out: string }> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let n = 0;
    let out = '';
    p.stdout.on('data', (b: Buffer) => {
      n += b.length;
      if (out.length < 4096) out += b.toString();
    });
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${cmd} exited ${code}`));
      resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, out: out + (n > 4096 ? `…(${n} bytes)` : '') });
    });
  });
}

function entry(name: string, type: RawEntry['type'], size = 0, chunks: ChunkRef[] = []): RawEntry {
  return { name: asByteString(name), type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size, mtimeSec: 1_704_067_200, mtimeNsec: 0, devMajor: 0, devMinor: 0, xattrs: new Map(), chunks };
}

/** A layer whose chunks are verified once and then kept (what the chunk cache does for the real catalog). */
function layer(key: Digest, raw: RawEntry[], blobBytes: Buffer): ServedLayerView {
  const blob = new BufferBlob(blobBytes, key);
  const index = buildLayerIndex(raw, { format: 'tar', compression: 'none', blobSize: blob.size, blobName: key }, { hideEstargzArtefacts: false });
  const verified = new Map<string, Buffer>();
  return {
    key, keyKind: 'toc', index, blobSize: blob.size,
    info: Buffer.from(JSON.stringify({ 'toc-digest': key, 'diff-size': -1, compression: 0 }) + '\n'),
    async readFile(node: LayerNode, path: string, offset: number, length: number): Promise<Buffer> {
      const end = Math.min(node.size, offset + length);
      const parts: Buffer[] = [];
      for (const c of node.chunks) {
        if (c.fileOffset >= end || c.fileOffset + c.size <= offset) continue;
        let b = verified.get(c.digest);
        if (!b) {
          b = (await readVerifiedChunks(blob, { compression: 'none', blobName: key }, [{ chunk: c, entry: path }]))[0]!;
          verified.set(c.digest, b);
        }
        parts.push(b.subarray(Math.max(0, offset - c.fileOffset), Math.min(c.size, end - c.fileOffset)));
      }
      return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    },
    readBlob: (o, l) => blob.read(o, l),
  };
}

function bigFileLayer(data: Buffer): ServedLayerView {
  const chunks: ChunkRef[] = [];
  for (let off = 0; off < data.length; off += CHUNK) {
    const size = Math.min(CHUNK, data.length - off);
    chunks.push({ digest: sha256Of(data.subarray(off, off + size)), fileOffset: off, size, span: { offset: off, end: off + size, innerOffset: 0 } });
  }
  return layer(sha256Of(Buffer.from('bench-big')), [entry('big.bin', 'reg', data.length, chunks)], data);
}

function treeLayer(label: string, dirs: number, files: number): ServedLayerView {
  const raw: RawEntry[] = [];
  for (let d = 0; d < dirs; d++) {
    raw.push(entry(`d${d}/`, 'dir'));
    for (let f = 0; f < files; f++) raw.push(entry(`d${d}/f${f}`, 'reg'));
  }
  return layer(sha256Of(Buffer.from(label)), raw, Buffer.alloc(0));
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'lazy-als-bench-'));
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const layers = new Map<string, ServedLayerView>();
  const provider: LayerProvider = { lookup: async (_r, k) => layers.get(k), use: () => undefined, release: () => undefined };
  const data = randomBytes(SEQ_MIB * 1024 * 1024);
  const big = bigFileLayer(data);
  layers.set(big.key, big);
  const tree = treeLayer('bench-tree', 200, 100);
  layers.set(tree.key, tree);
  const local = join(dir, 'local.bin');
  await writeFile(local, data);
  const m = await mountAls({ mountpoint: mnt, provider, logger: silentLogger, ...alsMountSettings(DEFAULTS.fuse) });
  try {
    const results: Record<string, string | number> = {};
    // 1. sequential
    const fusePath = join(mnt, big.key, 'diff', 'big.bin');
    await sh('dd', [`if=${fusePath}`, 'of=/dev/null', 'bs=1M', 'count=1', 'status=none']); // resolve the layer
    const l1 = await sh('dd', [`if=${local}`, 'of=/dev/null', 'bs=1M', 'status=none']);
    const lWarm = await sh('dd', [`if=${local}`, 'of=/dev/null', 'bs=1M', 'status=none']);
    const f1 = await sh('dd', [`if=${fusePath}`, 'of=/dev/null', 'bs=1M', 'status=none']); // verifies + keeps chunks
    const f2 = await sh('dd', [`if=${fusePath}`, 'of=/dev/null', 'bs=1M', 'status=none']); // kernel_cache hit
    await sh('sh', ['-c', `echo 1 > /proc/sys/vm/drop_caches`]).catch(() => undefined); // page cache only: daemon memory stays warm
    const f3 = await sh('dd', [`if=${fusePath}`, 'of=/dev/null', 'bs=1M', 'status=none']); // daemon warm, kernel cold
    const l3 = await sh('dd', [`if=${local}`, 'of=/dev/null', 'bs=1M', 'status=none']);
    const l4 = await sh('dd', [`if=${local}`, 'of=/dev/null', 'bs=1M', 'status=none']);
    const mibs = (ms: number): number => Math.round((SEQ_MIB / ms) * 1000);
    void l1;
    results['seq local page-cache MiB/s'] = mibs(Math.min(lWarm.ms, l4.ms));
    results['seq local after drop_caches MiB/s'] = mibs(l3.ms);
    results['seq fuse first pass (verify+cache) MiB/s'] = mibs(f1.ms);
    results['seq fuse daemon-warm, kernel-cold MiB/s'] = mibs(f3.ms);
    results['seq fuse kernel_cache re-read MiB/s'] = mibs(f2.ms);
    results['ratio fuse daemon-warm / local page-cache'] = +(Math.min(lWarm.ms, l4.ms) / f3.ms).toFixed(3);
    results['ratio fuse daemon-warm / local cold'] = +(l3.ms / f3.ms).toFixed(3);
    results['ratio fuse re-read / local page-cache'] = +(Math.min(lWarm.ms, l4.ms) / f2.ms).toFixed(3);
    // 2. find + stat walk
    const root = join(mnt, tree.key, 'diff');
    const n = 200 * 100 + 200 + 1;
    const w1 = await sh('find', [root, '-printf', '%s\n']);
    const w2 = await sh('find', [root, '-printf', '%s\n']);
    results['find+stat 20k cold µs/entry'] = +((w1.ms * 1000) / n).toFixed(2);
    results['find+stat 20k warm µs/entry'] = +((w2.ms * 1000) / n).toFixed(2);
    // 3. RSS with 10 layers × 10k files indexed and resolved
    layers.delete(big.key);
    layers.delete(tree.key);
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 10; i++) {
      const l = treeLayer(`rss-${i}`, 100, 100);
      layers.set(l.key, l);
      await sh('stat', ['-c', '%i', join(mnt, l.key, 'diff', 'd0', 'f0')]);
    }
    global.gc?.();
    const rss1 = process.memoryUsage().rss;
    results['RSS after 10 layers × 10k files (MiB)'] = Math.round(rss1 / 1024 / 1024);
    results['RSS growth for them (MiB)'] = Math.round((rss1 - rss0) / 1024 / 1024);
    results['bytes per indexed file (approx)'] = Math.round((rss1 - rss0) / 100_000);
    for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(48)} ${v}`);
  } finally {
    await m.unmount();
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  () => setTimeout(() => process.exit(0), 200).unref(),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
