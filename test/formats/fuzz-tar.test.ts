import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { gzipSync } from 'node:zlib';
import { BufferBlob } from '../../src/core/blob.js';
import { sha256Of } from '../../src/core/digest.js';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { readVerifiedChunks } from '../../src/formats/chunk-reader.js';
import { FormatError } from '../../src/formats/errors.js';
import { openPlainLayer } from '../../src/formats/tar/index.js';
import { TarScanner } from '../../src/formats/tar/tar-scanner.js';
import { buildTar, type TarEntry } from '../helpers/writers/tar.js';
import { toText, type ByteString } from '../../src/formats/byte-string.js';

// Small limits so hostile extensions hit them quickly; runs are seeded by fast-check and bounded.
const LIMITS = { ...DEFAULT_LIMITS, maxTarHeaderExtBytes: 4096, maxEntries: 200, maxPathBytes: 1024 };
const RUNS = 150;

const nameArb = fc
  .array(fc.stringMatching(/^[a-zA-Z0-9_.ü-]{1,20}$/).filter((s) => s !== '.' && s !== '..' && !s.startsWith('.wh.')), { minLength: 1, maxLength: 4 })
  .map((parts) => parts.join('/'));

const entryArb: fc.Arbitrary<TarEntry> = fc.oneof(
  fc.record({
    name: nameArb,
    type: fc.constant('reg' as const),
    data: fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)),
    mode: fc.integer({ min: 0, max: 0o7777 }),
    uid: fc.integer({ min: 0, max: 5_000_000 }),
    mtime: fc.integer({ min: 0, max: 2 ** 33 - 1 }),
    xattrs: fc.dictionary(fc.stringMatching(/^user\.[a-z]{1,8}$/), fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)), { maxKeys: 2 }),
  }),
  fc.record({ name: nameArb, type: fc.constant('symlink' as const), linkName: fc.stringMatching(/^[a-z/.]{1,150}$/) }),
  fc.record({ name: nameArb, type: fc.constantFrom('char' as const, 'block' as const), devMajor: fc.integer({ min: 0, max: 4095 }), devMinor: fc.integer({ min: 0, max: 2 ** 20 - 1 }) }),
  fc.record({ name: nameArb, type: fc.constantFrom('fifo' as const, 'dir' as const) }),
);

/** Scan with random push sizes; returns a comparable summary. */
function scanSummary(tar: Buffer, seed: number): unknown[] {
  const s = new TarScanner(LIMITS);
  const out: { name: string; type: string; data: Buffer[]; rest: unknown }[] = [];
  let i = 0;
  let step = (seed % 997) + 1;
  while (i < tar.length) {
    for (const ev of s.push(tar.subarray(i, i + step))) {
      if (ev.kind === 'entry') out.push({ name: ev.entry.name, type: ev.entry.type, data: [], rest: ev.entry });
      else if (ev.kind === 'data') out[out.length - 1]!.data.push(Buffer.from(ev.data));
    }
    i += step;
    step = ((step * 31 + 7) % 1500) + 1;
  }
  s.finish();
  return out.map((o) => ({ ...o, data: Buffer.concat(o.data) }));
}

/** Outcome of opening a (possibly mutated) blob: a FormatError code, or a self-consistent index. */
async function outcome(blob: Buffer): Promise<string> {
  try {
    const { index } = await openPlainLayer(new BufferBlob(blob), { limits: LIMITS });
    if (index.compression === 'none') {
      for (const [path, n] of index.walk()) {
        if (n.type !== 'reg' || n.size === 0) continue;
        const datas = await readVerifiedChunks(new BufferBlob(blob), { compression: 'none', blobName: 'fuzz' }, n.chunks.map((chunk) => ({ chunk, entry: path })));
        expect(Buffer.concat(datas).length).toBe(n.size);
      }
    }
    return 'ok';
  } catch (e) {
    if (!(e instanceof FormatError)) throw e; // anything else (TypeError, RangeError, …) is a bug
    return e.code;
  }
}

describe('tar scanner fuzz', () => {
  it('round-trip: any generated archive scans back exactly, for any push sizes', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 8 }), fc.nat(), fc.boolean(), (entries, seed, eof) => {
        const tar = buildTar(entries, { eof });
        const got = scanSummary(tar, seed) as { name: string; type: string; data: Buffer; rest: { uid: number; mode: number; linkName?: string; devMajor: number; xattrs: Map<string, Buffer> } }[];
        expect(got.map((g) => [toText(g.name as ByteString), g.type])).toEqual(entries.map((e) => [e.name, e.type]));
        entries.forEach((e, i) => {
          const g = got[i]!;
          expect(g.data.equals(e.type === 'reg' ? e.data ?? Buffer.alloc(0) : Buffer.alloc(0))).toBe(true);
          if (e.uid !== undefined) expect(g.rest.uid).toBe(e.uid);
          if (e.mode !== undefined) expect(g.rest.mode).toBe(e.mode);
          if (e.linkName !== undefined) expect(toText(g.rest.linkName as ByteString)).toBe(e.linkName);
          if (e.devMajor !== undefined) expect(g.rest.devMajor).toBe(e.devMajor);
          for (const [k, v] of Object.entries(e.xattrs ?? {})) expect(g.rest.xattrs.get(k)).toEqual(Buffer.from(v));
        });
      }),
      { numRuns: RUNS },
    );
  });

  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 600 }) }),
    fc.record({ kind: fc.constant('octal' as const), at: fc.nat(), digit: fc.constantFrom(0x30, 0x37, 0x20, 0, 0x80, 0xff, 0x39) }),
  );

  interface Mutation {
    kind: string;
    at: number;
    xor?: number;
    bytes?: Uint8Array;
    digit?: number;
  }

  function mutate(b: Buffer, ms: readonly Mutation[]): Buffer {
    let out = Buffer.from(b);
    for (const m of ms) {
      if (out.length === 0) break;
      const at = m.at % out.length;
      if (m.kind === 'flip') out[at]! ^= m.xor!;
      else if (m.kind === 'truncate') out = out.subarray(0, at);
      else if (m.kind === 'insert') out = Buffer.concat([out.subarray(0, at), Buffer.from(m.bytes!), out.subarray(at)]);
      else {
        // Hit numeric header fields on purpose (size/mtime/uid...), with a valid checksum, so the
        // parser is exercised past the checksum check.
        const block = Math.floor(at / 512) * 512;
        if (block + 512 > out.length) continue;
        out[block + 100 + (at % 245)] = m.digit!;
        out.fill(0x20, block + 148, block + 156);
        let sum = 0;
        for (let i = block; i < block + 512; i++) sum += out[i]!;
        out.write(sum.toString(8).padStart(6, '0') + '\0 ', block + 148, 'latin1');
      }
    }
    return out;
  }

  it('mutated tars: a consistent index or a typed FormatError, never a crash or hang', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(entryArb, { minLength: 1, maxLength: 6 }), fc.array(mutation, { minLength: 1, maxLength: 3 }), async (entries, ms) => {
        const tar = buildTar(entries);
        await outcome(mutate(tar, ms));
      }),
      { numRuns: RUNS },
    );
  });

  it('mutated gzip: typed error or success; with the true digest, a changed blob is always rejected', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(entryArb, { minLength: 1, maxLength: 5 }), fc.array(mutation, { minLength: 1, maxLength: 2 }), async (entries, ms) => {
        const gz = gzipSync(buildTar(entries));
        const bad = mutate(gz, ms);
        await outcome(bad);
        if (!bad.equals(gz)) {
          const r = await openPlainLayer(new BufferBlob(bad), { limits: LIMITS, descriptor: { digest: sha256Of(gz) } }).then(
            () => 'ok',
            (e: unknown) => (e instanceof FormatError ? e.code : `untyped ${String(e)}`),
          );
          expect(r).not.toBe('ok');
          expect(r).not.toMatch(/^untyped/);
        }
      }),
      { numRuns: RUNS },
    );
  });
});
