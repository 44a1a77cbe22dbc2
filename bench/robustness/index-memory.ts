/**
 * Robustness benchmark, part 4: what a layer index costs. For each indexed shape (eStargz TOC,
 * zstd:chunked TOC + tar-split, plain tar+gzip) a layer of N ordinary entries (test/helpers/many-entries.ts)
 * is opened in its own child process (test/helpers/index-memory-child.mjs, the built dist/): peak RSS
 * over the process's RSS before the open, bytes kept per entry after GC (JS heap + array buffers: the
 * index table), time. Baseline: the same child on a 1,000-entry layer of the same shape, same run.
 * Writes bench/results/robustness-index-memory.md and one RESULT line per shape.
 *
 *   npx vite-node bench/robustness/index-memory.ts [--entries 99000]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { manyEntriesLayer, type ManyKind } from '../../test/helpers/many-entries.js';
import { log, report } from '../e2e/report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const arg = process.argv.indexOf('--entries');
// 99,000: with the root, implied parents and the eStargz landmark still under max_entries (100,000)
const N = arg > 0 ? Number(process.argv[arg + 1]) : 99_000;

interface Child {
  error?: string;
  baseKiB: number;
  peakKiB: number;
  keptBytes: number;
  nodes: number;
  tableKiB: number;
  seconds: number;
}

const dir = mkdtempSync('/tmp/lazy-als-index-memory-bench-');
/** `worker`: open as the daemon does, in the capped index worker (default max_index_heap_bytes); else in-process. */
function run(kind: ManyKind, n: number, worker: boolean): Child {
  const l = manyEntriesLayer(kind, n);
  const file = join(dir, `${kind}-${n}`);
  writeFileSync(file, l.blob);
  const args = ['--expose-gc', join(ROOT, 'test/helpers/index-memory-child.mjs'), file, l.tocDigest ?? '-', l.mediaType ?? '-', ...(worker ? ['--worker'] : [])];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 600_000 });
  rmSync(file);
  if (r.status !== 0) return { error: r.stderr.slice(-300), baseKiB: 0, peakKiB: 0, keptBytes: 0, nodes: 0, tableKiB: 0, seconds: 0 };
  return JSON.parse(r.stdout) as Child;
}

const rows: string[] = [];
try {
  for (const kind of ['estargz', 'tar+gzip', 'zstd-chunked'] as const) {
    const base = run(kind, 1_000, false);
    const big = run(kind, N, false);
    if (big.error !== undefined) {
      rows.push(`| ${kind} | ${N} | refused: ${big.error.replace(/\|/g, '\\|').slice(0, 160)} | | | | | |`);
      log(`${kind}: ${big.error}`);
      continue;
    }
    const w = run(kind, N, true);
    const wPeak = w.error !== undefined ? `refused: ${w.error.slice(0, 80)}` : `${((w.peakKiB - w.baseKiB) / 1024).toFixed(0)} MiB, ${w.seconds.toFixed(2)} s`;
    const perEntry = (big.keptBytes - base.keptBytes) / (big.nodes - base.nodes);
    const peak = (big.peakKiB - big.baseKiB) / 1024;
    rows.push(`| ${kind} | ${big.nodes} | ${peak.toFixed(0)} MiB | ${((big.peakKiB - big.baseKiB) * 1024 / big.nodes).toFixed(0)} B | ${perEntry.toFixed(0)} B | ${big.tableKiB} KiB | ${big.seconds.toFixed(2)} s | ${wPeak} |`);
    log(`${kind}: ${big.nodes} nodes, peak +${peak.toFixed(0)} MiB, kept ${perEntry.toFixed(0)} B/entry, ${big.seconds.toFixed(2)} s; in the index worker: ${wPeak}`);
    if (w.error === undefined) {
      report({ group: 'robustness', name: `index peak RSS over base, index worker: ${kind}, ${w.nodes} entries`, value: (w.peakKiB - w.baseKiB) * 1024, unit: 'B', baseline: (big.peakKiB - big.baseKiB) * 1024, baselineName: 'same layer built in-process' });
    }
    report({ group: 'robustness', name: `index peak RSS over base: ${kind}, ${big.nodes} entries`, value: (big.peakKiB - big.baseKiB) * 1024, unit: 'B', baseline: Math.max(1, (base.peakKiB - base.baseKiB) * 1024), baselineName: `same, ${base.nodes} entries` });
  }
  const md = [
    '# Robustness: what a layer index costs',
    '',
    `\`npx vite-node bench/robustness/index-memory.ts\`: each layer opened in its own child process (\`test/helpers/index-memory-child.mjs\`).`,
    'Peak = VmHWM over the RSS before the open; kept = JS heap + array buffers after GC over the same before the open, per entry the slope',
    'against a 1,000-entry layer of the same shape (fixed costs cancel out); table = the flat index table (the native backend serves from it).',
    'The first columns build in-process; the last opens the same layer as the daemon does, in the index worker (capped heap,',
    '`max_index_heap_bytes` default): its peak over base and time.',
    '',
    '| shape | nodes | peak over base | peak per entry | kept per entry | table | time | index worker: peak over base, time |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
  writeFileSync(join(ROOT, 'bench/results/robustness-index-memory.md'), md);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
