/**
 * What an index keeps per entry (issue 9 "≤ 200 MiB on any input", issue 10 "10 layers / 100k files
 * indexed in ≤ 100 MiB daemon RSS"). A child process (the built dist/, test/helpers/index-memory-child.mjs)
 * opens a layer of N ordinary entries — directories of small files, each its own chunk, some symlinks
 * and xattrs — in each indexed shape, keeps the index, and reports JS heap + array buffers after GC
 * over the same before the open.
 *
 * The bound comes from the budget: the daemon runs at ~55 MiB before it serves anything, so 100k
 * entries (over any number of layers) may keep at most ~45 MiB: 450 bytes per entry. The index as
 * a JS object graph kept ~770 bytes per entry of heap alone (plus the native backend's table); the
 * flat table keeps ~200 (eStargz, plain tar) to ~400 (zstd:chunked).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { manyEntriesLayer, type ManyKind } from '../helpers/many-entries.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BYTES_PER_ENTRY = 450;
const dir = mkdtempSync('/tmp/lazy-als-index-memory-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Report {
  error?: string;
  keptBytes: number;
  nodes: number;
  tableKiB: number;
}

function measure(kind: ManyKind, count: number): Report {
  const l = manyEntriesLayer(kind, count);
  const file = join(dir, `${kind}-${count}`);
  writeFileSync(file, l.blob);
  const r = spawnSync(process.execPath, ['--expose-gc', join(ROOT, 'test/helpers/index-memory-child.mjs'), file, l.tocDigest ?? '-', l.mediaType ?? '-'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  rmSync(file);
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as Report;
}

describe('index memory per entry', () => {
  // Per entry = the slope between two sizes, so fixed costs (a decoder module loaded on first use) cancel out.
  it.each([
    ['estargz', 20_000],
    ['tar+gzip', 20_000],
    ['zstd-chunked', 12_000],
  ] as const)('%s, %i entries: the kept index is within the per-entry budget', (kind, count) => {
    const small = measure(kind, 2_000);
    const big = measure(kind, count);
    for (const r of [small, big]) expect(r.error).toBeUndefined();
    expect(big.nodes).toBeGreaterThan(count); // every entry indexed (+ root and implied parents)
    const perEntry = (big.keptBytes - small.keptBytes) / (big.nodes - small.nodes);
    expect(perEntry).toBeGreaterThan(50); // the measurement sees the index at all (the table alone is ~170 B/entry)
    expect(perEntry).toBeLessThan(BYTES_PER_ENTRY);
  }, 180_000);
});
