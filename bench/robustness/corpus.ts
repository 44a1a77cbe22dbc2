/**
 * Robustness benchmark, part 1: the generated hostile corpus (test/helpers/hostile.ts) run through
 * `lazy-als inspect` (every chunk verified) one input at a time, each in its own child process under
 * /usr/bin/time, recording peak RSS, wall time and outcome. The baseline is the same command on an
 * ordinary small layer, measured in the same run. Writes bench/results/robustness-corpus.md and one
 * RESULT line per input (value = peak RSS, baseline = the ordinary layer's peak RSS).
 *
 *   npx vite-node bench/robustness/corpus.ts [--scale 0.05]     (default 1: the full-size corpus)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostileCorpus, inspectMeasured as runInspect, materialize } from '../../test/helpers/hostile.js';
import { buildEStargz, sampleEntries } from '../../test/helpers/writers/estargz.js';
import { log, report } from '../e2e/report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const scaleArg = process.argv.indexOf('--scale');
const scale = scaleArg > 0 ? Number(process.argv[scaleArg + 1]) : 1;

export interface Row {
  name: string;
  what: string;
  blobBytes: number;
  rssKiB: number;
  seconds: number;
  outcome: string;
  ok: boolean;
}

const dir = mkdtempSync(join('/tmp', 'lazy-als-robustness-'));
try {
  const base = buildEStargz(sampleEntries());
  const baseFile = join(dir, 'baseline.estargz');
  writeFileSync(baseFile, base.blob);
  const baseRun = runInspect(baseFile, {});
  log(`baseline inspect: ${baseRun.rssKiB} KiB, ${baseRun.seconds} s (${baseRun.line})`);
  const rows: Row[] = [];
  for (const h of hostileCorpus(scale)) {
    const file = join(dir, h.name);
    const blobBytes = materialize(h, file);
    const r = runInspect(file, h);
    const outcome = r.code === 0 ? 'served' : 'refused';
    const row: Row = {
      name: h.name, what: h.what, blobBytes, rssKiB: r.rssKiB, seconds: r.seconds,
      outcome: r.code === 0 ? 'served' : r.line.slice(0, 160), ok: outcome === h.expect,
    };
    rows.push(row);
    rmSync(file);
    log(`${h.name}: ${(r.rssKiB / 1024).toFixed(0)} MiB, ${r.seconds} s, ${row.outcome}`);
    report({ group: 'robustness', name: `peak RSS: inspect ${h.name}`, value: r.rssKiB * 1024, unit: 'B', baseline: baseRun.rssKiB * 1024, baselineName: 'inspect of an ordinary layer', note: row.outcome.slice(0, 60) });
  }
  const md = [
    '# Robustness: hostile corpus through `lazy-als inspect`',
    '',
    `Scale ${scale}; each input in its own process (\`/usr/bin/time\`); baseline (an ordinary eStargz layer): ${(baseRun.rssKiB / 1024).toFixed(0)} MiB, ${baseRun.seconds} s.`,
    '',
    '| input | what | blob | peak RSS | time | outcome | as expected |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.name} | ${r.what} | ${(r.blobBytes / 1024).toFixed(0)} KiB | ${(r.rssKiB / 1024).toFixed(0)} MiB | ${r.seconds} s | ${r.outcome.replace(/\|/g, '\\|')} | ${r.ok ? 'yes' : '**no**'} |`),
    '',
  ].join('\n');
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/robustness-corpus.md'), md);
  process.stdout.write(md);
  if (rows.some((r) => !r.ok)) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
