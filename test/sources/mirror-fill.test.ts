/**
 * Reads through a REAL docker-registry in proxy mode (pull-through cache) in front of a REAL origin
 * registry. distribution's proxy answers a Range request for a blob it has not stored yet with the
 * whole blob streamed from the origin, once per request; the source's per-blob mirror gate makes a
 * cold, parallel, multi-range read of a blob cost the origin about one copy of it. Counted from the
 * origin's access log (bytes written per blob GET, whichever client: here only the proxy).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDigest } from '../../src/core/digest.js';
import { parseReference } from '../../src/sources/reference.js';
import { MirrorFillGate } from '../../src/sources/registry/mirror-fill.js';
import { parseRegistriesConf } from '../../src/sources/registry/registries-conf.js';
import type { RegistrySource } from '../../src/sources/registry/registry-source.js';
import { LogCursor, blobBytes } from '../e2e/registry-log.js';
import { pushBlob } from '../helpers/registry-push.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { testSource } from '../helpers/registry-source.js';

const MiB = 1024 * 1024;
const SIZE = 48 * MiB; // several 4 MiB pieces, and ranges split over parallel requests
const REPO = 'fill/blob';

let origin: RegistryHandle;
const mirrors: RegistryHandle[] = [];
const sources: RegistrySource[] = [];

beforeAll(async () => {
  origin = await startRegistry();
});

afterAll(async () => {
  await Promise.all(sources.map((s) => s.close()));
  for (const m of mirrors) await m.stop();
  await origin?.stop();
});

/** The proxy stores a blob in the background after answering: wait until the origin log stops growing. */
async function settled(cur: LogCursor): Promise<void> {
  let last = -1;
  for (let i = 0; i < 120; i++) {
    const n = cur.since().length;
    if (n === last) return;
    last = n;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** A cold read of a whole fresh blob through a fresh proxy, as read-ahead does it: 6 ranges at once. */
async function coldRead(gated: boolean): Promise<{ originBytes: number; fullCopies: number; ms: number }> {
  const mirror = await startRegistry({ proxyOf: origin.url });
  mirrors.push(mirror);
  const bytes = randomBytes(SIZE);
  const { digest } = await pushBlob(origin, REPO, bytes);
  const conf = `[[registry]]\nlocation = "${origin.host}"\ninsecure = true\n[[registry.mirror]]\nlocation = "${mirror.host}"\ninsecure = true\n`;
  const src = testSource({ registries: { registries: parseRegistriesConf(conf, 'test'), files: [] }, ...(gated ? {} : { mirrorFill: { maxWaitMs: 0 } }) });
  sources.push(src);
  const cur = new LogCursor(origin.logPath);
  const t0 = performance.now();
  const blob = await src.openBlob(parseReference(`${origin.host}/${REPO}:x`), parseDigest(digest, 'test'), SIZE);
  const piece = SIZE / 6;
  const ranges = Array.from({ length: 6 }, (_, i) => ({ offset: i * piece, length: piece }));
  const got = await Promise.all(ranges.map((r) => blob.read(r.offset, r.length)));
  expect(Buffer.concat(got).equals(bytes)).toBe(true);
  const ms = performance.now() - t0;
  await settled(cur);
  const gets = cur.since().filter((e) => e.kind === 'blob' && e.method === 'GET' && e.target === digest);
  return { originBytes: blobBytes(cur.since()).get(digest) ?? 0, fullCopies: gets.filter((e) => e.bytes === SIZE).length, ms };
}

describe('MirrorFillGate', () => {
  it('lets the first open of a blob go alone, the others after it, and keeps no entry once done', async () => {
    const gate = new MirrorFillGate();
    const order: string[] = [];
    let release!: () => void;
    const first = gate.once('k', async () => {
      order.push('first start');
      await new Promise<void>((r) => (release = r));
      order.push('first end');
      return 1;
    }, async () => 0);
    const second = gate.once('k', async () => 9, async () => {
      order.push('second');
      return 2;
    });
    const other = gate.once('other', async () => {
      order.push('other blob');
      return 3;
    }, async () => 0);
    await other;
    expect(gate.pending).toBe(1); // 'other' done and dropped, 'k' still open
    release();
    expect(await Promise.all([first, second])).toEqual([1, 2]);
    expect(order).toEqual(['first start', 'other blob', 'first end', 'second']);
    expect(gate.pending).toBe(0);
  });

  it('polls until the mirror says stored, gives up after maxWaitMs, and stops waiting for a mirror that never serves ranges', async () => {
    const gate = new MirrorFillGate({ firstDelayMs: 1, maxDelayMs: 2, maxWaitMs: 200 });
    let n = 0;
    expect(await gate.untilStored('m1', async () => ++n === 3)).toBe(true);
    expect(n).toBe(3);
    expect(await gate.untilStored('m1', async () => false)).toBe(false); // m1 served ranges before: still waited for
    let m2 = 0;
    expect(await gate.untilStored('m2', async () => {
      m2++;
      return false;
    })).toBe(false);
    expect(m2).toBeGreaterThan(0);
    const polled = m2;
    expect(await gate.untilStored('m2', async () => {
      m2++;
      return false;
    })).toBe(false); // never ranged: not waited for again
    expect(m2).toBe(polled);
    n = 0;
    expect(await gate.untilStored('m1', async () => ++n === 1)).toBe(true);
  });
});

describe('mirror gate: one cold read through a proxy-mode docker-registry', () => {
  it('makes the origin serve the blob about once; without the wait it serves it several times', async () => {
    const on = await coldRead(true);
    const off = await coldRead(false);
    console.log(
      `origin bytes / blob size: gated ${(on.originBytes / SIZE).toFixed(2)} (${on.fullCopies} whole copies, read ${on.ms.toFixed(0)} ms), ungated ${(off.originBytes / SIZE).toFixed(2)} (${off.fullCopies} whole copies, read ${off.ms.toFixed(0)} ms)`,
    );
    // Gated: the origin sends the whole blob once (the proxy's own store); the proxy's copy for our
    // first probe is cut short when we drop it (what it had in flight in socket buffers).
    expect(on.fullCopies).toBe(1);
    expect(on.originBytes).toBeLessThan(2 * SIZE);
    // Without the wait each parallel range makes the proxy stream the blob from the origin again
    // (from byte 0 to past the range's end, or whole).
    expect(off.originBytes).toBeGreaterThan(2 * SIZE);
  }, 240_000);
});
