/**
 * Corrupted bytes from the registry. A real registry cannot corrupt bytes on demand, so a FAKE sits
 * between the store and the real docker-registry (support/flip-proxy.ts) and inverts one byte inside
 * one compressed chunk. The REAL daemon must answer EIO for reads that need that chunk, log one JSON
 * line naming layer, file and chunk digest, and cache NOTHING: once the proxy passes bytes through
 * unchanged, the very same read returns the right bytes, and every object in the state dir still
 * hashes to its name.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probe, val } from './support/commands.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { leakedMounts, RealDaemon, writeRegistriesConf } from './support/daemon.js';
import { startFlipProxy, type FlipProxy } from './support/flip-proxy.js';
import { CHUNK, estargzChunkSpans, L1_FILES, L2_FILES, pushTestImage, refElem, sha256hex, type TestImage } from './support/images.js';

let reg: RegistryHandle;
let proxy: FlipProxy;
let dir: string;
let daemon: RealDaemon | undefined;
let img: TestImage;

const v = val;

/** Every object file under the state dir's object store, with whether its bytes hash to its name. */
async function objects(stateDir: string): Promise<{ name: string; ok: boolean }[]> {
  const root = join(stateDir, 'objects', 'sha256');
  const out: { name: string; ok: boolean }[] = [];
  for (const shard of await readdir(root).catch(() => [] as string[])) {
    for (const rest of await readdir(join(root, shard))) {
      const hex = createHash('sha256').update(await readFile(join(root, shard, rest))).digest('hex');
      out.push({ name: shard + rest, ok: hex === shard + rest });
    }
  }
  return out;
}

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFlipProxy(reg.url);
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-it-flip-'));
  img = await pushTestImage(reg);
  const conf = await writeRegistriesConf(join(dir, 'registries.conf'), [reg.host, proxy.host]);
  daemon = await RealDaemon.start({ dir: join(dir, 'd'), registriesConf: conf, extraArgs: ['--read-timeout-ms', '20000'] });
});

afterAll(async () => {
  if (daemon) {
    const r = await daemon.stop();
    expect(r).toMatchObject({ code: 0, unmountedByDaemon: true });
  }
  await proxy?.stop();
  await reg?.stop();
  if (dir) {
    expect(await leakedMounts([dir])).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  }
});

describe('a corrupted chunk from the registry (byte-flipping fake proxy)', () => {
  const cases = [
    {
      what: 'zstd:chunked',
      layer: () => ({ key: img.l2.tocDigest, blob: img.l2.blobDigest }),
      file: 'z/flip.bin',
      data: L2_FILES['z/flip.bin'],
      // the second chunk's zstd frame
      span: () => img.l2.chunkFrames.get('z/flip.bin')![1]!,
    },
    {
      what: 'eStargz (gzip)',
      layer: () => ({ key: img.l1.tocDigest, blob: img.l1.blobDigest }),
      file: 'big/cold-c.bin',
      data: L1_FILES['big/cold-c.bin'],
      span: () => estargzChunkSpans(img.l1, './big/cold-c.bin')[1]!,
    },
  ];

  for (const c of cases) {
    it(`${c.what}: EIO and one log line naming layer, file and chunk; nothing cached; pass-through then reads correctly`, async () => {
      const d = daemon!;
      const { key, blob } = c.layer();
      const L = join(d.mnt, refElem(`${proxy.host}/${img.repo}:${img.tag}`), key);
      // Resolve the layer (TOC) through the honest proxy first: only chunk bytes are corrupted.
      proxy.flipAt = undefined;
      expect((await probe([{ op: 'stat', path: join(L, 'diff', c.file) }])).map(v)[0]).toMatchObject({ size: c.data.length });

      const span = c.span();
      proxy.blob = blob;
      proxy.flipAt = span.offset + 1000; // inside the chunk's compressed bytes, past the frame/member header
      const flippedBefore = proxy.flipped;
      const logFrom = d.stderr.length;
      const bad = (await probe([{ op: 'read', path: join(L, 'diff', c.file) }, { op: 'read', path: join(L, 'diff', c.file) }])).map(v);
      expect(bad).toEqual(['EIO', 'EIO']);
      expect(proxy.flipped).toBeGreaterThan(flippedBefore); // the corruption really reached the store

      const wantChunk = 'sha256:' + sha256hex(c.data.subarray(CHUNK, 2 * CHUNK));
      const lines = d.stderr.slice(logFrom).split('\n').filter((l) => l.includes('"event":"fuse.read_failed"')).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines) expect(l).toMatchObject({ layer: key, path: c.file, chunk: wantChunk });

      // Nothing bad was kept, on disk or in memory.
      const objs = await objects(d.stateDir);
      expect(objs.filter((o) => !o.ok)).toEqual([]);
      expect(objs.map((o) => 'sha256:' + o.name)).not.toContain(wantChunk);

      proxy.flipAt = undefined;
      const flippedAtSwitch = proxy.flipped;
      const good = (await probe([{ op: 'read', path: join(L, 'diff', c.file) }])).map(v);
      expect(good[0].sha256).toBe(sha256hex(c.data));
      expect(proxy.flipped).toBe(flippedAtSwitch);
      expect((await objects(d.stateDir)).filter((o) => !o.ok)).toEqual([]);
    });
  }
});
