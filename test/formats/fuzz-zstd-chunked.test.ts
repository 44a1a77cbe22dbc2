/**
 * Property tests for the zstd:chunked reader. Two threat models:
 *  1. untrusted bytes under a pinned TOC digest (flips, truncation, splices, insertions anywhere in
 *     the blob): every file reads back as exactly its original bytes or fails with a LazyAlsError;
 *  2. an authentic but lying TOC (the TOC / tar-split edited, then its checksum recomputed, as a
 *     malicious image author could): opening and reading may fail only with LazyAlsError, and any
 *     bytes returned hash to the chunk digests the TOC committed to and fill the file's size.
 * Never a TypeError/RangeError, never a hang (bounded runs, per-test timeout).
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BufferBlob } from '../../src/core/blob.js';
import { LazyAlsError } from '../../src/core/errors.js';
import { readVerifiedChunks } from '../../src/formats/chunk-reader.js';
import type { LayerIndex, LayerNode } from '../../src/formats/model.js';
import { normalizeEntryPath } from '../../src/formats/overlay-view.js';
import { openZstdChunked } from '../../src/formats/zstd-chunked/index.js';
import { buildZstdChunked, pseudoRandomBytes, type TocJson, type ZstdChunkedEntry, type ZstdChunkedOptions } from '../helpers/writers/zstd-chunked.js';
import { asByteString } from '../../src/formats/byte-string.js';

const ENTRIES: ZstdChunkedEntry[] = [
  { name: 'd/', type: 'dir', mode: 0o755 },
  { name: 'd/a', type: 'reg', mode: 0o644, mtime: 1_700_000_000, mtimeNsec: 5, data: Buffer.concat([pseudoRandomBytes(3000, 1), Buffer.alloc(2048), pseudoRandomBytes(700, 2)]), xattrs: { 'user.x': 'y' } },
  { name: 'd/b', type: 'reg', data: Buffer.from('hello world\n') },
  { name: 'd/l', type: 'symlink', linkName: 'a' },
  { name: 'd/h', type: 'hardlink', linkName: 'd/a' },
  { name: 'd/.wh.gone', type: 'reg' },
  { name: 'e', type: 'reg' },
  { name: 'c', type: 'reg', data: pseudoRandomBytes(2500, 3) },
];
const BASE_OPTS: ZstdChunkedOptions[] = [{ chunkSize: 1000, holes: true }, {}];
const ORIGINAL = new Map(ENTRIES.filter((e) => e.type === 'reg').map((e) => [normalizeEntryPath(asByteString(e.name)), e.data ?? Buffer.alloc(0)]));
for (const e of ENTRIES) if (e.type === 'hardlink') ORIGINAL.set(normalizeEntryPath(asByteString(e.name)), ORIGINAL.get(normalizeEntryPath(asByteString(e.linkName!)))!);
const BASES = BASE_OPTS.map((o) => buildZstdChunked(ENTRIES, o));

function rethrowUnlessTyped(e: unknown): void {
  if (!(e instanceof LazyAlsError)) throw e;
}

async function openOrNull(blob: Buffer, annotations: Record<string, string>): Promise<LayerIndex | null> {
  try {
    return (await openZstdChunked(new BufferBlob(blob, 'fuzz'), { descriptor: { annotations } })).index;
  } catch (e) {
    rethrowUnlessTyped(e);
    return null;
  }
}

/** Read every regular file; `check` sees the bytes of each successful read. */
async function readAll(index: LayerIndex, blob: Buffer, check: (path: string, data: Buffer[], node: LayerNode) => void): Promise<void> {
  const b = new BufferBlob(blob, 'fuzz');
  for (const [path, node] of index.walk()) {
    if (node.type !== 'reg') continue;
    try {
      const parts = await readVerifiedChunks(b, { compression: 'zstd', blobName: 'fuzz' }, node.chunks.map((chunk) => ({ chunk, entry: path })));
      check(path, parts, node);
    } catch (e) {
      rethrowUnlessTyped(e);
    }
  }
}

const sha = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

type ByteOp =
  | { kind: 'flip'; pos: number; xor: number }
  | { kind: 'truncate'; len: number }
  | { kind: 'splice'; src: number; dst: number; len: number }
  | { kind: 'insert'; pos: number; bytes: Uint8Array };

const byteOp: fc.Arbitrary<ByteOp> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), len: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('splice' as const), src: fc.nat(), dst: fc.nat(), len: fc.integer({ min: 1, max: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('insert' as const), pos: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
);

function applyOp(b: Buffer, op: ByteOp): Buffer {
  if (b.length === 0) return b;
  switch (op.kind) {
    case 'flip': {
      const c = Buffer.from(b);
      c[op.pos % c.length]! ^= op.xor;
      return c;
    }
    case 'truncate':
      return b.subarray(0, op.len % b.length);
    case 'splice': {
      const c = Buffer.from(b);
      const src = op.src % c.length;
      const dst = op.dst % c.length;
      c.set(b.subarray(src, Math.min(src + op.len, src + c.length - dst)), dst);
      return c;
    }
    case 'insert': {
      const p = op.pos % b.length;
      return Buffer.concat([b.subarray(0, p), op.bytes, b.subarray(p)]);
    }
  }
}

describe('zstd:chunked fuzz', () => {
  it('untrusted bytes, pinned TOC: exact original content or a typed error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: BASES.length - 1 }), fc.array(byteOp, { minLength: 1, maxLength: 3 }), async (bi, ops) => {
        const base = BASES[bi]!;
        const blob = ops.reduce(applyOp, base.blob);
        const index = await openOrNull(blob, base.annotations);
        if (!index) return;
        await readAll(index, blob, (path, parts) => {
          expect(Buffer.concat(parts).equals(ORIGINAL.get(asByteString(path))!), path).toBe(true);
        });
      }),
      { numRuns: 200, seed: 0x5eed },
    );
  }, 20_000);

  const FIELDS = ['type', 'name', 'linkName', 'mode', 'size', 'uid', 'gid', 'modtime', 'devMajor', 'devMinor', 'xattrs', 'digest', 'offset', 'endOffset', 'chunkSize', 'chunkOffset', 'chunkDigest', 'chunkType'];
  const value = fc.oneof(
    fc.integer({ min: -3, max: 20_000 }),
    fc.constantFrom(0, 1, 511, 512, 1024, 2 ** 31, 2 ** 53, 2 ** 64, 1.5, -0, 1e3),
    fc.constantFrom('reg', 'chunk', 'dir', 'hardlink', 'symlink', 'zeros', '', 'd/a', '../x', '/abs', 'd', 'd/a/', 'sha256:' + 'f'.repeat(64), sha(Buffer.alloc(1000))),
    fc.constantFrom(null, true, [], {}, { 'user.x': '!!' }, '2023-11-14T22:13:20.999999999+14:00', '0001-01-01T00:00:00Z'),
  );
  type TocOp =
    | { kind: 'set'; entry: number; field: string; value: unknown }
    | { kind: 'copy'; from: number; to: number; field: string }
    | { kind: 'delete'; entry: number; field: string }
    | { kind: 'swap'; a: number; b: number }
    | { kind: 'dup'; entry: number }
    | { kind: 'remove'; entry: number };
  const field = fc.constantFrom(...FIELDS);
  const tocOp: fc.Arbitrary<TocOp> = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), entry: fc.nat(), field, value }),
    fc.record({ kind: fc.constant('copy' as const), from: fc.nat(), to: fc.nat(), field }),
    fc.record({ kind: fc.constant('delete' as const), entry: fc.nat(), field }),
    fc.record({ kind: fc.constant('swap' as const), a: fc.nat(), b: fc.nat() }),
    fc.record({ kind: fc.constant('dup' as const), entry: fc.nat() }),
    fc.record({ kind: fc.constant('remove' as const), entry: fc.nat() }),
  );
  function applyTocOp(toc: TocJson, op: TocOp): void {
    const es = toc.entries;
    if (es.length === 0) return;
    const at = (i: number) => es[i % es.length]!;
    switch (op.kind) {
      case 'set':
        at(op.entry)[op.field] = op.value;
        break;
      case 'copy':
        at(op.to)[op.field] = at(op.from)[op.field];
        break;
      case 'delete':
        delete at(op.entry)[op.field];
        break;
      case 'swap': {
        const a = op.a % es.length;
        const b = op.b % es.length;
        [es[a], es[b]] = [es[b]!, es[a]!];
        break;
      }
      case 'dup':
        es.splice(op.entry % es.length, 0, { ...at(op.entry) });
        break;
      case 'remove':
        es.splice(op.entry % es.length, 1);
        break;
    }
  }

  /** Any content that comes back must be what the (lying) TOC committed to, chunk by chunk. */
  const committed = (path: string, parts: Buffer[], node: LayerNode): void => {
    expect(parts.length).toBe(node.chunks.length);
    parts.forEach((p, i) => {
      expect(p.length).toBe(node.chunks[i]!.size);
      expect(sha(p), path).toBe(node.chunks[i]!.digest);
    });
    expect(parts.reduce((n, p) => n + p.length, 0)).toBe(node.size);
  };

  it('authentic but lying TOC object: typed errors or committed content', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: BASE_OPTS.length - 1 }), fc.array(tocOp, { minLength: 1, maxLength: 4 }), fc.boolean(), async (bi, ops, keepTs) => {
        const w = buildZstdChunked(ENTRIES, {
          ...BASE_OPTS[bi]!,
          mutateToc: (toc) => {
            for (const op of ops) applyTocOp(toc, op);
            if (!keepTs) delete toc.tarSplitDigest;
          },
        });
        const index = await openOrNull(w.blob, w.annotations);
        if (index) await readAll(index, w.blob, committed);
      }),
      { numRuns: 200, seed: 0xc0ffee },
    );
  }, 20_000);

  it('authentic but lying TOC / tar-split text: typed errors or committed content', async () => {
    const edit = fc.record({ pos: fc.nat(), del: fc.integer({ min: 0, max: 3 }), ins: fc.constantFrom('', '"', ',', '}', ']', '{', '[', ':', '0', '9', '-', 'A', '\\', ' ', 'null', '\\u0000', '\\ud800', 'é') });
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: BASE_OPTS.length - 1 }), fc.boolean(), fc.array(edit, { minLength: 1, maxLength: 3 }), async (bi, inTarSplit, edits) => {
        const mutate = (s: string): string =>
          edits.reduce((t, e) => {
            const p = e.pos % (t.length + 1);
            return t.slice(0, p) + e.ins + t.slice(p + e.del);
          }, s);
        const w = buildZstdChunked(ENTRIES, { ...BASE_OPTS[bi]!, ...(inTarSplit ? { transformTarSplit: mutate } : { transformManifestJson: mutate }) });
        const index = await openOrNull(w.blob, w.annotations);
        if (index) await readAll(index, w.blob, committed);
      }),
      { numRuns: 200, seed: 42 },
    );
  }, 20_000);
});
