import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BufferBlob } from '../../src/core/blob.js';
import { LazyAlsError } from '../../src/core/errors.js';
import { readVerifiedChunks } from '../../src/formats/chunk-reader.js';
import { openEStargz, openEStargzZstd } from '../../src/formats/estargz/index.js';
import type { LayerIndex } from '../../src/formats/model.js';
import { buildEStargz, prand, sampleEntries, type EStargzFixture, type EStargzWriterOptions } from '../helpers/writers/estargz.js';

/**
 * Property: whatever happens to the bytes of a valid blob, opening it with the right TOC digest and
 * reading every file either yields exactly the original content of every file, or throws a typed
 * LazyAlsError. Never a TypeError/RangeError, never wrong bytes, never a hang.
 */
interface Base {
  readonly label: string;
  readonly fx: EStargzFixture;
  readonly zstd: boolean;
  readonly footer: number;
  readonly files: Map<string, Buffer>;
  readonly paths: string[];
}

async function readAll(index: LayerIndex, blob: Buffer): Promise<Map<string, Buffer>> {
  const b = new BufferBlob(blob, 'fuzz');
  const out = new Map<string, Buffer>();
  for (const [path, node] of index.walk()) {
    if (node.type !== 'reg') continue;
    const parts = await readVerifiedChunks(b, { compression: index.compression, blobName: 'fuzz' }, node.chunks.map((chunk) => ({ chunk, entry: path })));
    out.set(path, Buffer.concat(parts));
  }
  return out;
}

async function openAndRead(blob: Buffer, base: Base): Promise<{ paths: string[]; files: Map<string, Buffer> }> {
  const open = base.zstd ? openEStargzZstd : openEStargz;
  const { index } = await open(new BufferBlob(blob, 'fuzz'), { expectedTocDigest: base.fx.tocDigest });
  return { paths: [...index.walk()].map(([p]) => p), files: await readAll(index, blob) };
}

async function makeBase(label: string, opts: EStargzWriterOptions): Promise<Base> {
  const entries = sampleEntries();
  entries.push({ name: 'chunked', type: 'reg', data: prand(40_000, 'fuzz-chunked') });
  const fx = buildEStargz(entries, { chunkSize: 16 * 1024, ...opts });
  const zstd = opts.compression === 'zstd';
  const base = { label, fx, zstd, footer: zstd ? 48 : opts.legacy ? 47 : 51, files: new Map(), paths: [] };
  const r = await openAndRead(fx.blob, base);
  return { ...base, files: r.files, paths: r.paths };
}

type Region = 'footer' | 'toc' | 'payload' | 'any';
type Mutation =
  | { kind: 'flip'; region: Region; at: number; xor: number }
  | { kind: 'truncate'; region: Region; at: number }
  | { kind: 'splice'; region: Region; at: number; del: number; ins: Uint8Array };

function regionRange(base: Base, size: number, r: Region): [number, number] {
  const tocStart = base.zstd ? base.fx.tocOffset - 8 : base.fx.tocOffset;
  const footerStart = Math.max(0, size - base.footer);
  switch (r) {
    case 'footer':
      return [footerStart, size];
    case 'toc':
      return [Math.min(tocStart, footerStart), footerStart];
    case 'payload':
      return [0, Math.min(tocStart, size)];
    case 'any':
      return [0, size];
  }
}

function apply(base: Base, muts: readonly Mutation[]): Buffer {
  let b = Buffer.from(base.fx.blob);
  for (const m of muts) {
    const [lo, hi] = regionRange(base, b.length, m.region);
    if (hi <= lo) continue;
    const pos = lo + Math.floor(m.at * (hi - lo));
    if (m.kind === 'flip') b[Math.min(pos, b.length - 1)]! ^= m.xor;
    else if (m.kind === 'truncate') b = b.subarray(0, pos);
    else b = Buffer.concat([b.subarray(0, pos), Buffer.from(m.ins), b.subarray(Math.min(b.length, pos + m.del))]);
  }
  return b;
}

const region = fc.constantFrom<Region>('footer', 'toc', 'payload', 'any');
const at = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('flip' as const), region, at, xor: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), region, at }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('splice' as const), region, at, del: fc.nat({ max: 64 }), ins: fc.uint8Array({ maxLength: 64 }),
    }),
  },
);

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no outcome within ${ms} ms (hang)`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

describe('eStargz readers under random corruption', () => {
  it('return the exact original content or a typed error, never anything else', async () => {
    const bases = await Promise.all([
      makeBase('gzip', {}),
      makeBase('gzip-inner', { minChunkSize: 32 * 1024 }),
      makeBase('legacy', { legacy: true }),
      makeBase('zstd', { compression: 'zstd' }),
    ]);
    let typed = 0;
    let intact = 0;
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: bases.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), async (bi, muts) => {
        const base = bases[bi]!;
        const bad = apply(base, muts);
        let result: Awaited<ReturnType<typeof openAndRead>>;
        try {
          result = await withTimeout(openAndRead(bad, base), 5000);
        } catch (e) {
          if (!(e instanceof LazyAlsError)) throw e;
          typed++;
          return;
        }
        intact++;
        expect(result.paths).toEqual(base.paths);
        expect(result.files.size).toBe(base.files.size);
        for (const [p, data] of base.files) expect(result.files.get(p)?.equals(data), p).toBe(true);
      }),
      { numRuns: 200, seed: 0x5eed, endOnFailure: true },
    );
    // Both outcomes must actually occur, or the property is vacuous.
    expect(typed).toBeGreaterThan(0);
    expect(intact).toBeGreaterThan(0);
  }, 60_000);
});
