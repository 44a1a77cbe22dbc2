#!/usr/bin/env node
// `npm run bench`: runs benchmarks one after the other (they measure time: never in parallel) and
// writes a markdown report and an SVG bar chart of every ratio (drawn here as SVG text).
//
//   npm run bench                   everything → bench/results/results.{md,svg}
//   npm run bench -- issue11        issue 11's table (cold read, pull, pull+run, registry client,
//                                   large image over a slow link, extract, plain layer; ~20 min on an
//                                   idle machine) → bench/results/issue11.{md,svg}
//   npm run bench -- robustness     issue 9's robustness section (corpus, soak, kill -9, index memory)
//   npm run bench -- e2e fuse       only benchmarks whose path contains one of the words → results.{md,svg}
//   npm run bench -- --list [NAME]  print what would run, and exit
//
// Figures come from stdout: lines `RESULT {json}` and `SKIP {json}` (bench/e2e/report.ts: value,
// baseline, ratio = value / baseline, both measured in the same run; `row` names a row of issue
// 11's table in bench/goals.json, which holds its goal) and, for benchmarks printing prose, every
// "ratio <what> <number>" found in a line. Every report starts with issue 11's table side by side
// (lazy-als, reference store, goal, met / missed by N×).
// Root, /dev/fuse and (for e2e) the podman 5 chroot are needed; `npm run build` runs first.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT = join(ROOT, 'bench', 'results');
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 45 * 60_000);
const GOALS = JSON.parse(readFileSync(join(ROOT, 'bench', 'goals.json'), 'utf8')).issue11;

function list(dir, exts) {
  const d = join(ROOT, 'bench', dir);
  if (!existsSync(d)) return [];
  return readdirSync(d)
    .filter((f) => exts.some((e) => f.endsWith(e)) && !f.endsWith('.d.ts'))
    .sort()
    .map((f) => join('bench', dir, f));
}

// helpers living beside the entry points (not benchmarks themselves)
const HELPERS = new Set(['bench/formats/toc-layers.ts', 'bench/formats/tar-entries.ts']);
// bench/e2e holds helpers too: only these are entry points
const E2E_ENTRIES = ['bench/e2e/large-image.ts', 'bench/e2e/reads.ts', 'bench/e2e/cold-read.ts', 'bench/e2e/pull.ts', 'bench/e2e/plain-layer.ts', 'bench/e2e/runs.ts', 'bench/e2e/fleet.ts'];
const ALL = [
  ...E2E_ENTRIES.filter((f) => existsSync(join(ROOT, f))),
  ...['bench/sources/range-reads.ts'].filter((f) => existsSync(join(ROOT, f))),
  ...list('fuse', ['.ts', '.mjs', '.js']),
  ...list('formats', ['.ts', '.mjs', '.js']).filter((f) => !HELPERS.has(f)),
  // the robustness section (issue 9): hostile corpus, soak, kill -9, index memory (helpers start with _)
  ...list('robustness', ['.ts']).filter((f) => !f.split('/').pop().startsWith('_')),
].map((file) => ({ file }));

/**
 * Named subsets: each entry a benchmark with the environment / arguments that keep the subset
 * inside its time budget (durations: one run on the idle 2-vCPU VM; see bench/results/issue11.md).
 */
const SUBSETS = {
  issue11: [
    { file: 'bench/e2e/cold-read.ts', env: { BENCH_REPEAT: '3' } },
    { file: 'bench/e2e/pull.ts', env: { BENCH_REPEAT: '3' } },
    { file: 'bench/e2e/plain-layer.ts', env: { BENCH_REPEAT: '3' } },
    { file: 'bench/sources/range-reads.ts' },
    { file: 'bench/e2e/large-image.ts', env: { BENCH_LARGE_LINKS: 'slow' } },
    { file: 'bench/formats/inspect-extract.mjs', env: { BENCH_DIR: '/var/tmp/lazy-als-bench-issue11' }, args: ['--only', 'tar', '--mib', '300', '--runs', '3', '--no-inspect'] },
  ],
  robustness: ALL.filter((b) => b.file.startsWith('bench/robustness/')),
};

function select(argv) {
  const words = argv.filter((a) => !a.startsWith('--'));
  const named = words.filter((w) => w in SUBSETS);
  const filters = words.filter((w) => !(w in SUBSETS));
  const chosen = named.flatMap((n) => SUBSETS[n]);
  if (filters.length > 0 || named.length === 0) chosen.push(...ALL.filter((b) => filters.length === 0 || filters.some((w) => b.file.includes(w))));
  return { benches: chosen, name: named.length > 0 && filters.length === 0 ? named.join('+') : 'results' };
}

function run(bench) {
  const { file, env = {}, args = [] } = bench;
  const argv = file.endsWith('.ts') ? ['npx', ['vite-node', file, ...(args.length ? ['--', ...args] : [])]] : [process.execPath, [file, ...args]];
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(argv[0], argv[1], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, ...env } });
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
      resolve({ file, env, args, code: code ?? 128, signal, stdout, stderr, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

/** Figures (RESULT lines, prose ratios) and skips (SKIP lines) from one benchmark's stdout. */
function parse(r) {
  const figs = [];
  const skips = [];
  for (const line of r.stdout.split('\n')) {
    for (const [tag, into] of [
      ['RESULT ', figs],
      ['SKIP ', skips],
    ]) {
      if (!line.startsWith(tag)) continue;
      try {
        into.push({ source: r.file, ...JSON.parse(line.slice(tag.length)) });
      } catch {
        /* not ours */
      }
    }
    if (line.startsWith('RESULT ') || line.startsWith('SKIP ')) continue;
    // prose: "… ratio client/curl 1.23", "ratio fuse daemon-warm / local page-cache   0.412"
    const re = /ratio\s+(.+?)\s+(\d+(?:\.\d+)?)(?=\s|$|,)/g;
    let m;
    while ((m = re.exec(line))) {
      const prefix = line.slice(0, m.index).replace(/[,:]\s*$/, '').trim();
      figs.push({ source: r.file, group: relative('bench', r.file), name: `${prefix ? prefix + ' — ' : ''}ratio ${m[1]}`, ratio: Number(m[2]), ...proseRow(r.file, prefix, m[1]) });
    }
  }
  return { figs, skips };
}

/** Issue-11 rows measured by benchmarks that print prose (bench/formats/inspect-extract.mjs). */
function proseRow(file, prefix, what) {
  if (file.endsWith('inspect-extract.mjs') && what === 'extract/tar' && /^tar\s/.test(prefix)) return withGoal('extract/plain-tar');
  return {};
}

function withGoal(row) {
  const g = GOALS.find((x) => x.row === row);
  return g ? { row, goal: g.goal } : {};
}

const fmt = (v, unit) => {
  if (v === undefined || v === null) return '';
  if (unit === 'B') return v >= 1024 * 1024 ? `${(v / 1024 / 1024).toFixed(1)} MiB` : `${(v / 1024).toFixed(1)} KiB`;
  return `${v}${unit ? ' ' + unit : ''}`;
};
const esc = (s) => String(s).replace(/\|/g, '\\|');

/** "met" / "missed by N×" for a ratio against its goal (lower is better for every issue-11 row). */
function verdict(f) {
  if (typeof f?.ratio !== 'number' || typeof f.goal !== 'number') return '';
  return f.ratio <= f.goal ? 'met' : `missed by ${(f.ratio / f.goal).toFixed(2)}×`;
}

const cell = (f) => (f ? `**${f.ratio}** (${fmt(f.value, f.unit)} ÷ ${fmt(f.baseline, f.unit)})`.replace(' ( ÷ )', '') : '');

/** Why a row has no figure: the benchmark's SKIP line, its failure, or that it did not run. */
function missing(row, subject, skips, results) {
  const s = skips.find((x) => x.row === row && (x.subject ?? 'lazy-als') === subject);
  if (s) return `not measured: ${esc(s.why)}`;
  if (subject === 'reference') return '—';
  const g = GOALS.find((x) => x.row === row);
  const r = results.find((x) => x.file === g?.bench);
  if (!r) return `not measured: ${g?.bench ?? 'no benchmark'} not run`;
  return r.code !== 0 ? `not measured: ${r.file} failed (exit ${r.code}, see below)` : `not measured: ${r.file} printed no figure for it`;
}

function issue11Table(figs, skips, results) {
  const lines = ['## Issue 11: cold path at wire speed, side by side', ''];
  lines.push('Each figure a ratio to a baseline measured in the same run (lower is better); goals from bench/goals.json; reference store = stargz-store.', '');
  lines.push('| figure | lazy-als | reference store | goal | verdict |', '|---|---|---|---|---|');
  for (const g of GOALS) {
    const ours = figs.find((f) => f.row === g.row && (f.subject ?? 'lazy-als') === 'lazy-als');
    const ref = figs.find((f) => f.row === g.row && f.subject === 'reference');
    const refCell = ref ? `${cell(ref)}${verdict(ref) ? ` — ${verdict(ref)}` : ''}` : missing(g.row, 'reference', skips, results);
    lines.push(`| ${esc(g.label)} | ${ours ? cell(ours) : missing(g.row, 'lazy-als', skips, results)} | ${refCell} | ≤ ${g.goal} | ${ours ? verdict(ours) : '—'} |`);
  }
  return lines;
}

function markdown(results, figs, skips, started, name) {
  const lines = [];
  lines.push(`# lazy-als benchmarks${name === 'results' ? '' : ` — ${name}`}`, '');
  lines.push(`Run ${started.toISOString()} on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}; load average at the start ${loadAtStart.map((x) => x.toFixed(1)).join(' ')}.`);
  lines.push('RESULT figures: ratio = value / baseline, both measured in the same run; for times and bytes below 1 means the store is faster / fetches less. Ratios parsed from prose output keep the meaning their benchmark prints (e.g. fuse-bench ratios are throughput ratios: higher is better).', '');
  lines.push(...issue11Table(figs, skips, results), '');
  lines.push('## All figures', '', '| benchmark | measurement | value | baseline | ratio | goal | verdict |', '|---|---|---|---|---|---|---|');
  for (const f of figs) {
    const name = `${f.subject === 'reference' ? '[reference store] ' : ''}${esc(f.name)}${f.note ? ` (${esc(f.note)})` : ''}`;
    lines.push(`| ${esc(f.group ?? f.source)} | ${name} | ${fmt(f.value, f.unit)} | ${fmt(f.baseline, f.unit)} | ${f.ratio ?? ''} | ${f.goal !== undefined ? `≤ ${f.goal}` : ''} | ${verdict(f)} |`);
  }
  lines.push('', '## Runs', '', '| benchmark | environment / arguments | exit | seconds |', '|---|---|---|---|');
  for (const r of results) {
    const how = [...Object.entries(r.env).map(([k, v]) => `${k}=${v}`), ...r.args].join(' ');
    lines.push(`| ${r.file} | ${esc(how)} | ${r.code}${r.signal ? ` (${r.signal})` : ''} | ${r.seconds.toFixed(0)} |`);
  }
  lines.push(`| total | | | ${results.reduce((n, r) => n + r.seconds, 0).toFixed(0)} |`);
  for (const r of results.filter((x) => x.code !== 0)) {
    lines.push('', `### ${r.file} failed`, '', '```', r.stderr.split('\n').slice(-25).join('\n'), '```');
  }
  return lines.join('\n') + '\n';
}

function xml(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Horizontal bars on a log2 axis centred on ratio 1 (left: below 1, right: above 1); goals as ticks. */
function svg(figs) {
  const rows = figs.filter((f) => typeof f.ratio === 'number' && f.ratio > 0);
  const labelW = 620;
  const plotW = 420;
  const rowH = 22;
  const top = 48;
  const h = top + rows.length * rowH + 40;
  const w = labelW + plotW + 90;
  const maxLog = Math.max(1, ...rows.map((f) => Math.abs(Math.log2(f.ratio))), ...rows.filter((f) => f.goal > 0).map((f) => Math.abs(Math.log2(f.goal))));
  const scale = plotW / 2 / Math.ceil(maxLog);
  const cx = labelW + plotW / 2;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="10" y="20" font-size="15" font-weight="bold">lazy-als benchmarks: value / baseline (log scale; left of the line = below 1; | = goal)</text>`);
  for (let k = -Math.ceil(maxLog); k <= Math.ceil(maxLog); k++) {
    const x = cx + k * scale;
    out.push(`<line x1="${x}" y1="${top - 8}" x2="${x}" y2="${top + rows.length * rowH}" stroke="${k === 0 ? '#333' : '#ddd'}"/>`);
    out.push(`<text x="${x}" y="${top - 12}" text-anchor="middle" fill="#555">${k >= 0 ? 2 ** k : '1/' + 2 ** -k}</text>`);
  }
  rows.forEach((f, i) => {
    const y = top + i * rowH;
    const l = Math.log2(f.ratio) * scale;
    const label = `${f.subject === 'reference' ? '[reference] ' : ''}${f.group ?? f.source}: ${f.name}`;
    const short = label.length > 100 ? label.slice(0, 97) + '…' : label;
    out.push(`<text x="${labelW - 8}" y="${y + 15}" text-anchor="end">${xml(short)}</text>`);
    out.push(`<rect x="${l < 0 ? cx + l : cx}" y="${y + 4}" width="${Math.max(1, Math.abs(l))}" height="${rowH - 8}" fill="${f.subject === 'reference' ? '#888' : l < 0 ? '#3a7d44' : '#c0392b'}"/>`);
    if (f.goal > 0) {
      const gx = cx + Math.log2(f.goal) * scale;
      out.push(`<line x1="${gx}" y1="${y + 1}" x2="${gx}" y2="${y + rowH - 1}" stroke="#1f4e9c" stroke-width="2"/>`);
    }
    out.push(`<text x="${l < 0 ? cx + 4 : cx + l + 4}" y="${y + 15}" fill="#000">${f.ratio}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

const { benches, name } = select(process.argv.slice(2));
if (process.argv.includes('--list')) {
  for (const b of benches) console.log([b.file, ...Object.entries(b.env ?? {}).map(([k, v]) => `${k}=${v}`), ...(b.args ?? [])].join(' '));
  process.exit(0);
}
const loadAtStart = loadavg();
const started = new Date();
const b = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
if (b.status !== 0) {
  console.error('bench/run.mjs: npm run build failed');
  process.exit(1);
}
const results = [];
for (const bench of benches) {
  console.error(`\n=== ${bench.file} ===`);
  results.push(await run(bench));
}
const parsed = results.map(parse);
const figs = parsed.flatMap((p) => p.figs);
const skips = parsed.flatMap((p) => p.skips);
mkdirSync(OUT, { recursive: true });
writeFileSync(join(OUT, `${name}.md`), markdown(results, figs, skips, started, name));
writeFileSync(join(OUT, `${name}.svg`), svg(figs));
console.error(`\nbench/run.mjs: ${figs.length} figures from ${results.length} benchmarks → ${relative(ROOT, OUT)}/${name}.{md,svg}`);
process.exit(results.some((r) => r.code !== 0) ? 1 : 0);
