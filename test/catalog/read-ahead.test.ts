import { describe, expect, it } from 'vitest';
import { ReadAhead } from '../../src/catalog/read-ahead.js';
import type { ChunkRef, LayerNode } from '../../src/formats/model.js';

const K = 1024;
const M = 1024 * 1024;

/** A regular-file node of `n` chunks of `size` bytes (only what ReadAhead looks at). */
function file(n: number, size: number): LayerNode {
  const chunks: ChunkRef[] = Array.from({ length: n }, (_, i) => ({
    digest: `sha256:${i.toString(16).padStart(64, '0')}` as ChunkRef['digest'],
    fileOffset: i * size,
    size,
    span: { offset: i * size, end: (i + 1) * size, innerOffset: 0 },
  }));
  return { type: 'reg', size: n * size, chunks } as unknown as LayerNode;
}

const bytes = (pieces: ChunkRef[][]): number => pieces.flat().reduce((s, c) => s + c.size, 0);

describe('ReadAhead', () => {
  it('a sequential reader gets a growing window, requested in pieces, each chunk once', () => {
    const ra = new ReadAhead({ minWindow: 1 * M, maxWindow: 8 * M, pieceBytes: 1 * M, maxInFlight: 64 * M });
    const node = file(256, 64 * K);
    const seen = new Set<string>();
    let total = 0;
    for (let off = 0; off < 16 * M; off += 128 * K) {
      const pieces = ra.plan(node, off, off + 128 * K, (c) => seen.has(c.digest));
      for (const p of pieces) {
        expect(bytes([p])).toBeLessThanOrEqual(1 * M);
        for (const c of p) {
          expect(seen.has(c.digest)).toBe(false);
          expect(c.fileOffset).toBeGreaterThanOrEqual(off + 128 * K); // ahead of the reader, never behind
          seen.add(c.digest);
        }
      }
      total += bytes(pieces);
      // the window ahead is at most maxWindow past the read
      const furthest = Math.max(0, ...[...seen].map((d) => parseInt(d.slice(7), 16) * 64 * K + 64 * K));
      expect(furthest).toBeLessThanOrEqual(off + 128 * K + 8 * M);
    }
    expect(total).toBeGreaterThan(8 * M); // it really read ahead
  });

  it('a sequential reader to EOF finds every chunk after the first read already requested (the tail too)', () => {
    const ra = new ReadAhead({ minWindow: 1 * M, maxWindow: 16 * M, pieceBytes: 2 * M, maxInFlight: 48 * M });
    const node = file(1024, 64 * K); // 64 MiB
    const requested = new Set<string>();
    const missed: number[] = [];
    for (let off = 0; off < 64 * M; off += 128 * K) {
      const covering = node.chunks.filter((c) => c.fileOffset < off + 128 * K && c.fileOffset + c.size > off);
      if (covering.some((c) => !requested.has(c.digest))) missed.push(off);
      covering.forEach((c) => requested.add(c.digest)); // the demand read
      for (const p of ra.plan(node, off, off + 128 * K, (c) => requested.has(c.digest))) {
        p.forEach((c) => requested.add(c.digest));
        ra.settle(bytes([p])); // fetched instantly
      }
    }
    expect(missed).toEqual([0]);
  });

  it('a random reader gets nothing ahead', () => {
    const ra = new ReadAhead({ minWindow: 1 * M, maxWindow: 8 * M, pieceBytes: 1 * M, maxInFlight: 64 * M });
    const node = file(256, 64 * K);
    for (const off of [5 * M, 1 * M, 12 * M, 3 * M + 64 * K, 9 * M, 2 * M]) {
      expect(ra.plan(node, off, off + 4 * K, () => false)).toEqual([]);
    }
  });

  it('bytes requested ahead and not settled stay under maxInFlight', () => {
    const ra = new ReadAhead({ minWindow: 4 * M, maxWindow: 32 * M, pieceBytes: 1 * M, maxInFlight: 3 * M });
    const node = file(1024, 64 * K);
    let asked = 0;
    const seen = new Set<string>();
    for (let off = 0; off < 8 * M; off += 128 * K) {
      asked += bytes(ra.plan(node, off, off + 128 * K, (c) => seen.has(c.digest)).map((p) => (p.forEach((c) => seen.add(c.digest)), p)));
      expect(ra.inFlightBytes).toBeLessThanOrEqual(3 * M);
    }
    expect(asked).toBe(ra.inFlightBytes);
    ra.settle(asked);
    expect(ra.inFlightBytes).toBe(0);
    expect(bytes(ra.plan(node, 8 * M, 8 * M + 128 * K, (c) => seen.has(c.digest)))).toBeGreaterThan(0);
  });
});
