#!/usr/bin/env node
// `npm run bench`: runs every benchmark, one after the other (they measure time: never in
// parallel), and writes bench/results/results.md (a markdown table) and bench/results/results.svg
// (a bar chart of every ratio, drawn here as SVG text).
//
//   npm run bench                   everything
//   npm run bench -- e2e fuse       only benchmarks whose path contains one of the words
//
// Benchmarks: bench/e2e/{large-image,reads,cold-read,pull,runs}.ts, bench/sources/range-reads.ts, bench/fuse/*.ts and
// bench/formats/*.{mjs,js,ts} when present. `.ts` files run with `npx vite-node`, the others with
// node. Figures come from stdout: lines `RESULT {json}` (bench/e2e/report.ts: value, baseline,
// ratio = value / baseline, both measured in the same run) and, for benchmarks printing prose,
// every "ratio <what> <number>" / "ratio <what>  <number>" found in a line.
// Root, /dev/fuse and (for e2e) the podman 5 chroot are needed; `npm run build` runs first.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT = join(ROOT, 'bench', 'results');
const filters = process.argv.slice(2);
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 45 * 60_000);

function list(dir, exts) {
  const d = join(ROOT, 'bench', dir);
  if (!existsSync(d)) return [];
  return readdirSync(d)
    .filter((f) => exts.some((e) => f.endsWith(e)) && !f.endsWith('.d.ts'))
    .sort()
    .map((f) => join('bench', dir, f));
}

// bench/e2e holds helpers too: only these are entry points
const E2E_ENTRIES = ['bench/e2e/large-image.ts', 'bench/e2e/reads.ts', 'bench/e2e/cold-read.ts', 'bench/e2e/pull.ts', 'bench/e2e/runs.ts', 'bench/e2e/fleet.ts'];
const benches = [
  ...E2E_ENTRIES.filter((f) => existsSync(join(ROOT, f))),
  ...['bench/sources/range-reads.ts'].filter((f) => existsSync(join(ROOT, f))),
  ...list('fuse', ['.ts', '.mjs', '.js']),
  // toc-layers.ts is a helper of inspect-extract.mjs (it needs a layer argument), not an entry point
  ...list('formats', ['.ts', '.mjs', '.js']).filter((f) => !f.endsWith('toc-layers.ts')),
  // the robustness section: hostile corpus, soak, kill -9 (bench/robustness/*.ts; helpers start with _)
  ...list('robustness', ['.ts']).filter((f) => !f.split('/').pop().startsWith('_')),
].filter((f) => filters.length === 0 || filters.some((w) => f.includes(w)));

function run(file) {
  const argv = file.endsWith('.ts') ? ['npx', ['vite-node', file]] : [process.execPath, [file]];
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(argv[0], argv[1], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => {
      stdout += b;
      process.stdout.write(b);
    });
    child.stderr.on('data', (b) => {
      stderr += b;
      process.stderr.write(b);
    });
    const timer = setTimeout(() => {
      stderr += `\n[bench/run.mjs: killed after ${TIMEOUT_MS} ms]`;
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }, TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ file, code: code ?? 128, signal, stdout, stderr, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

/** Figures from one benchmark's stdout. */
function figures(r) {
  const out = [];
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('RESULT ')) {
      try {
        out.push({ source: r.file, ...JSON.parse(line.slice(7)) });
      } catch {
        /* not ours */
      }
      continue;
    }
    // prose: "… ratio client/curl 1.23", "ratio fuse daemon-warm / local page-cache   0.412"
    const re = /ratio\s+(.+?)\s+(\d+(?:\.\d+)?)(?=\s|$|,)/g;
    let m;
    while ((m = re.exec(line))) {
      const prefix = line.slice(0, m.index).replace(/[,:]\s*$/, '').trim();
      out.push({ source: r.file, group: relative('bench', r.file), name: `${prefix ? prefix + ' — ' : ''}ratio ${m[1]}`, ratio: Number(m[2]) });
    }
  }
  return out;
}

const fmt = (v, unit) => {
  if (v === undefined || v === null) return '';
  if (unit === 'B') return v >= 1024 * 1024 ? `${(v / 1024 / 1024).toFixed(1)} MiB` : `${(v / 1024).toFixed(1)} KiB`;
  return `${v}${unit ? ' ' + unit : ''}`;
};
const esc = (s) => String(s).replace(/\|/g, '\\|');

function markdown(results, figs, started) {
  const lines = [];
  lines.push('# lazy-als benchmarks', '');
  lines.push(`Run ${started.toISOString()} on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}.`);
  lines.push('RESULT figures (bench/e2e): ratio = value / baseline, both measured in the same run; for times and bytes below 1 means the store is faster / fetches less. Ratios parsed from prose output keep the meaning their benchmark prints (e.g. fuse-bench ratios are throughput ratios: higher is better).', '');
  lines.push('| benchmark | measurement | value | baseline | ratio |', '|---|---|---|---|---|');
  for (const f of figs) {
    lines.push(`| ${esc(f.group ?? f.source)} | ${esc(f.name)}${f.note ? ` (${esc(f.note)})` : ''} | ${fmt(f.value, f.unit)} | ${fmt(f.baseline, f.unit)} | ${f.ratio ?? ''} |`);
  }
  lines.push('', '## Runs', '', '| benchmark | exit | seconds |', '|---|---|---|');
  for (const r of results) lines.push(`| ${r.file} | ${r.code}${r.signal ? ` (${r.signal})` : ''} | ${r.seconds.toFixed(0)} |`);
  const failed = results.filter((r) => r.code !== 0);
  for (const r of failed) {
    lines.push('', `### ${r.file} failed`, '', '```', r.stderr.split('\n').slice(-25).join('\n'), '```');
  }
  return lines.join('\n') + '\n';
}

function xml(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Horizontal bars on a log2 axis centred on ratio 1 (left: below 1, right: above 1). */
function svg(figs) {
  const rows = figs.filter((f) => typeof f.ratio === 'number' && f.ratio > 0);
  const labelW = 620;
  const plotW = 420;
  const rowH = 22;
  const top = 48;
  const h = top + rows.length * rowH + 40;
  const w = labelW + plotW + 90;
  const maxLog = Math.max(1, ...rows.map((f) => Math.abs(Math.log2(f.ratio))));
  const scale = plotW / 2 / Math.ceil(maxLog);
  const cx = labelW + plotW / 2;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="10" y="20" font-size="15" font-weight="bold">lazy-als benchmarks: value / baseline (log scale; left of the line = below 1)</text>`);
  for (let k = -Math.ceil(maxLog); k <= Math.ceil(maxLog); k++) {
    const x = cx + k * scale;
    out.push(`<line x1="${x}" y1="${top - 8}" x2="${x}" y2="${top + rows.length * rowH}" stroke="${k === 0 ? '#333' : '#ddd'}"/>`);
    out.push(`<text x="${x}" y="${top - 12}" text-anchor="middle" fill="#555">${k >= 0 ? 2 ** k : '1/' + 2 ** -k}</text>`);
  }
  rows.forEach((f, i) => {
    const y = top + i * rowH;
    const l = Math.log2(f.ratio) * scale;
    const label = `${f.group ?? f.source}: ${f.name}`;
    const short = label.length > 100 ? label.slice(0, 97) + '…' : label;
    out.push(`<text x="${labelW - 8}" y="${y + 15}" text-anchor="end">${xml(short)}</text>`);
    out.push(`<rect x="${l < 0 ? cx + l : cx}" y="${y + 4}" width="${Math.max(1, Math.abs(l))}" height="${rowH - 8}" fill="${l < 0 ? '#3a7d44' : '#c0392b'}"/>`);
    out.push(`<text x="${l < 0 ? cx + 4 : cx + l + 4}" y="${y + 15}" fill="#000">${f.ratio}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

const started = new Date();
const b = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
if (b.status !== 0) {
  console.error('bench/run.mjs: npm run build failed');
  process.exit(1);
}
const results = [];
for (const f of benches) {
  console.error(`\n=== ${f} ===`);
  results.push(await run(f));
}
const figs = results.flatMap(figures);
mkdirSync(OUT, { recursive: true });
writeFileSync(join(OUT, 'results.md'), markdown(results, figs, started));
writeFileSync(join(OUT, 'results.svg'), svg(figs));
console.error(`\nbench/run.mjs: ${figs.length} figures from ${results.length} benchmarks → ${relative(ROOT, OUT)}/results.{md,svg}`);
process.exit(results.some((r) => r.code !== 0) ? 1 : 0);
