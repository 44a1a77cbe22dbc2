/**
 * "Every byte ever served is served again after a restart, offline", at the cache level, against
 * the real daemon and a real registry:
 *
 *  - a verified chunk is on disk before it is served: a kill -9 right after the reads, with
 *    no settling, loses nothing that was read;
 *  - hole (`zeros`) chunks never need the source: an ELF-like file with zero runs reads offline;
 *  - once the cache is drained, the bytes a layer fetched from its source are a subset of the bytes
 *    it has on disk (status: fetchedBytes ≤ cachedBytes), read-ahead included.
 */
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/daemon/control-socket.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushImage } from '../helpers/registry-push.js';
import { prand } from '../helpers/writers/estargz.js';
import { buildZstdChunked, type ZstdChunkedBlob } from '../helpers/writers/zstd-chunked.js';
import { leakedMounts, RealDaemon, writeRegistriesConf } from './support/daemon.js';
import { MT_TAR_ZSTD, refElem } from './support/images.js';

const KIB = 1024;
/** Like an ELF binary: code, zero padding, more code, more padding. */
const ELF = Buffer.concat([prand(20_000, 'elf-a'), Buffer.alloc(16 * KIB), prand(30_000, 'elf-b'), Buffer.alloc(4 * KIB), prand(5000, 'elf-c')]);
const SEQ = prand(3 * 1024 * KIB, 'seq');
const READ = 128 * KIB; // one fuse-native READ

let reg: RegistryHandle;
let dir: string;
let layer: ZstdChunkedBlob;
let R: string;
/** 4 MiB chunks: a chunk's write takes long enough for a crash to land between reply and write. */
const BIG4 = prand(32 * 1024 * KIB, 'big4');
let layer4: ZstdChunkedBlob;
let R4: string;
const daemons: RealDaemon[] = [];

beforeAll(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-it-persist-'));
  layer = buildZstdChunked(
    [
      { name: 'bin/', type: 'dir', mode: 0o755 },
      { name: 'bin/elf', type: 'reg', data: ELF, mode: 0o755 },
      { name: 'big/', type: 'dir', mode: 0o755 },
      { name: 'big/seq.bin', type: 'reg', data: SEQ },
    ],
    { chunkSize: 64 * KIB, holes: true },
  );
  expect(JSON.stringify(layer.toc)).toContain('"zeros"'); // the fixture really has hole chunks
  await pushImage(reg, 'it/persist', 'v1', { layers: [{ bytes: layer.blob, mediaType: MT_TAR_ZSTD, diffId: layer.diffId, annotations: layer.annotations }] });
  R = refElem(`${reg.host}/it/persist:v1`);
  layer4 = buildZstdChunked(
    [
      { name: 'big4/', type: 'dir', mode: 0o755 },
      { name: 'big4/r.bin', type: 'reg', data: BIG4 },
    ],
    { chunkSize: 4 * 1024 * KIB },
  );
  await pushImage(reg, 'it/persist4', 'v1', { layers: [{ bytes: layer4.blob, mediaType: MT_TAR_ZSTD, diffId: layer4.diffId, annotations: layer4.annotations }] });
  R4 = refElem(`${reg.host}/it/persist4:v1`);
});

afterAll(async () => {
  for (const d of daemons) {
    await d.kill9({ helpers: true }).catch(() => undefined);
    await d.forceUnmount().catch(() => undefined);
  }
  await reg?.stop();
  if (dir) {
    expect(await leakedMounts([dir])).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  }
});

async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(length);
    const { bytesRead } = await fh.read(b, 0, length, offset);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

interface LayerStatus {
  key: string;
  fetchedBytes: number;
  cachedBytes: number;
}
async function layerStatus(d: RealDaemon): Promise<LayerStatus> {
  const r = await controlRequest(d.socket, 'GET', '/status');
  const layers = (r.body as { catalog: { layers: LayerStatus[] } }).catalog.layers;
  const l = layers.find((x) => x.key === layer.tocDigest);
  if (!l) throw new Error(`layer ${layer.tocDigest} not in status: ${JSON.stringify(layers)}`);
  return l;
}

async function startDaemon(name: string): Promise<RealDaemon> {
  const conf = await writeRegistriesConf(join(dir, `${name}.conf`), [reg.host]);
  const d = await RealDaemon.start({ dir: join(dir, name), registriesConf: conf });
  daemons.push(d);
  return d;
}

describe('served bytes are persisted', () => {
  it('fetched bytes ⊆ persisted bytes once drained (read-ahead included; holes are not fetched)', async () => {
    const d = await startDaemon('a');
    const base = join(d.mnt, R, layer.tocDigest, 'diff');
    expect(await readAt(join(base, 'bin/elf'), 0, ELF.length)).toEqual(ELF);
    // Sequential READs of a multi-chunk file: each miss reads ahead (chunks nobody asked for yet).
    for (const off of [0, READ, 5 * READ]) expect(await readAt(join(base, 'big/seq.bin'), off, READ)).toEqual(SEQ.subarray(off, off + READ));
    await d.settle();
    const st = await layerStatus(d);
    expect(st.fetchedBytes).toBeGreaterThan(0);
    expect(st.cachedBytes).toBeGreaterThanOrEqual(st.fetchedBytes);
    await d.stop();
  });

  it('a kill -9 right after the reads (no settling) loses nothing that was served; holes read offline', async () => {
    const d = await startDaemon('b');
    const base = join(d.mnt, R, layer.tocDigest, 'diff');
    const reads: [string, number, number, Buffer][] = [
      ['bin/elf', 0, READ, ELF],
      ['big/seq.bin', 0, READ, SEQ],
      ['big/seq.bin', 17 * READ, READ, SEQ],
    ];
    for (const [p, off, len, want] of reads) expect(await readAt(join(base, p), off, len)).toEqual(want.subarray(off, off + len));
    await d.kill9({ helpers: true });
    await reg.kill();
    try {
      await d.forceUnmount();
      await d.start();
      for (const [p, off, len, want] of reads) expect(await readAt(join(base, p), off, len)).toEqual(want.subarray(off, off + len));
      expect((await layerStatus(d)).fetchedBytes).toBe(0);
      expect(d.stderr).not.toContain('fuse.read_failed');
      await d.stop();
    } finally {
      await reg.restart();
    }
  });

  it('concurrent reads of 4 MiB chunks, kill -9 the moment they return: every served byte reads offline (audit H1)', async () => {
    const d = await startDaemon('c');
    const path = join(d.mnt, R4, layer4.tocDigest, 'diff', 'big4/r.bin');
    const offs = Array.from({ length: 8 }, (_, k) => k * 4 * 1024 * KIB + 12_345);
    const fh = await open(path, 'r');
    const got = await Promise.all(
      offs.map(async (o) => {
        const b = Buffer.alloc(1);
        await fh.read(b, 0, 1, o);
        return b[0];
      }),
    );
    // no await between the last reply and the crash: a reply sent before its chunk was written is lost
    await d.kill9({ helpers: true });
    await fh.close().catch(() => undefined);
    expect(got).toEqual(offs.map((o) => BIG4[o]));
    await reg.kill();
    try {
      await d.forceUnmount();
      await d.start();
      const fh2 = await open(path, 'r');
      try {
        for (const o of offs) {
          const b = Buffer.alloc(1);
          await fh2.read(b, 0, 1, o);
          expect(b[0]).toBe(BIG4[o]);
        }
      } finally {
        await fh2.close();
      }
      expect(d.stderr).not.toContain('fuse.read_failed');
      await d.stop();
    } finally {
      await reg.restart();
    }
  });
});
