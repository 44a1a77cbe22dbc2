/**
 * 32 parallel readers of one cold 8 MiB file (1 MiB eStargz chunks) through the REAL daemon's
 * mount: every reader gets the right bytes, and the real registry's access log shows the store
 * fetched each compressed chunk exactly once — the bytes it sent to `lazy-als/…` for that blob
 * after the layer was resolved (TOC and footer reads happen before and are counted separately)
 * add up to exactly the chunks' compressed extents.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cmd as run, probe } from './support/commands.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { accessSince, logMark, storeBlobGets } from './support/access-log.js';
import { leakedMounts, RealDaemon, writeRegistriesConf } from './support/daemon.js';
import { estargzChunkSpans, L1_FILES, pushTestImage, refElem, sha256hex, type TestImage } from './support/images.js';

let reg: RegistryHandle;
let dir: string;
let daemon: RealDaemon | undefined;
let img: TestImage;

beforeAll(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-it-par-'));
  img = await pushTestImage(reg);
  const conf = await writeRegistriesConf(join(dir, 'registries.conf'), [reg.host]);
  daemon = await RealDaemon.start({ dir: join(dir, 'd'), registriesConf: conf });
});

afterAll(async () => {
  if (daemon) {
    const r = await daemon.stop();
    expect(r).toMatchObject({ code: 0, unmountedByDaemon: true });
  }
  await reg?.stop();
  if (dir) {
    expect(await leakedMounts([dir])).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  }
});

describe('parallel cold reads', () => {
  it('32 readers of one cold multi-chunk file get identical correct bytes; each chunk is fetched once', async () => {
    const d = daemon!;
    const L = join(d.mnt, refElem(`${reg.host}/${img.repo}:${img.tag}`), img.l1.tocDigest);
    const file = join(L, 'diff', 'big', 'parallel.bin');
    const want = L1_FILES['big/parallel.bin'];
    const start = logMark(reg.logPath);
    const st = (await probe([{ op: 'stat', path: file }]))[0]!;
    expect(st.ok && st.value.size).toBe(want.length);
    const tocReads = storeBlobGets(accessSince(reg.logPath, start), img.l1.blobDigest);
    expect(tocReads.length).toBeGreaterThan(0); // footer + TOC, while resolving the layer

    const mark = logMark(reg.logPath);
    const runs = await Promise.all(Array.from({ length: 32 }, () => run('sha256sum', [file])));
    for (const r of runs) {
      expect(r.code).toBe(0);
      expect(r.stdout.split(' ')[0]).toBe(sha256hex(want));
    }

    const spans = estargzChunkSpans(img.l1, './big/parallel.bin');
    expect(spans).toHaveLength(8);
    const gets = storeBlobGets(accessSince(reg.logPath, mark), img.l1.blobDigest);
    expect(gets.length).toBeGreaterThan(0);
    for (const g of gets) expect(g.status).toBe(206);
    const fetched = gets.reduce((s, g) => s + g.bytes, 0);
    expect(fetched).toBe(spans.reduce((s, c) => s + (c.end - c.offset), 0));
    // No other blob was touched by these reads.
    expect(accessSince(reg.logPath, mark).filter((r) => r.path.includes('/blobs/') && !r.path.includes(img.l1.blobDigest))).toEqual([]);
  });
});
