#!/usr/bin/env node
// Bench: `lazy-als inspect` and `lazy-als extract` of a ≥ 500 MiB layer — plain (tar, gzip, zstd)
// and TOC (zstd:chunked, eStargz) — against GNU `tar -x` fed by `cat` / `gzip -dc` / `zstd -dc`
// on the same blob (goal: extract/tar ≤ 1.43, i.e. ≥ 0.7 of tar's speed).
//
// Run (root, after `npm run build`):
//   node bench/formats/inspect-extract.mjs [--mib 600] [--runs 3] [--only tar+zstd,estargz] [--keep] [--no-inspect]
// (--no-inspect: time extract and tar -x only, as issue 11's row needs; `npm run bench -- issue11`)
// Generates in $BENCH_DIR (default /var/tmp/lazy-als-bench): a tar of /usr/share (+ /usr/lib when
// small) (GNU tar, PAX) topped up with incompressible random files until it reaches --mib MiB, then
// gzip -1 and zstd -3 of it, and (bench/formats/toc-layers.ts, via vite-node) the same entries as
// zstd:chunked (64 KiB chunks) and gzip eStargz (4 MiB chunks) written by test/helpers/writers.
// Each run times inspect, extract and tar -x back to back (after a sync each, so one's writeback
// does not land on the next); the figures are medians over the runs, and the ratio is the median
// of the per-run ratios (the VM is shared and noisy: adjacent measurements compare best).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

const args = process.argv.slice(2);
const opt = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
if (args.includes('--help')) {
  console.log('usage: node bench/formats/inspect-extract.mjs [--mib 600] [--runs 3] [--only KIND,...] [--keep] [--no-inspect]\nkinds: tar tar+gzip tar+zstd zstd:chunked estargz');
  process.exit(0);
}
const mib = Number(opt('--mib') ?? 0) || 600;
const runs = Number(opt('--runs') ?? 0) || 3;
const only = opt('--only')?.split(',');
const keep = args.includes('--keep');
const noInspect = args.includes('--no-inspect');
const dir = process.env.BENCH_DIR ?? '/var/tmp/lazy-als-bench';
const repo = new URL('../..', import.meta.url).pathname;
const bin = new URL('../../bin/lazy-als.js', import.meta.url).pathname;

function sh(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed: ${r.stderr}`);
}
function timed(label, fn) {
  const t = process.hrtime.bigint();
  fn();
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  return s;
}

mkdirSync(dir, { recursive: true });
const tar = join(dir, `layer-${mib}.tar`);
if (!existsSync(tar)) {
  const src = join(dir, 'src');
  rmSync(src, { recursive: true, force: true });
  mkdirSync(join(src, 'random'), { recursive: true });
  const usr = ['usr/share', 'usr/lib'];
  // Estimate what /usr contributes, then add random files (1–16 MiB) for the rest.
  const usrBytes = Number(execFileSync('du', ['-sb', '--apparent-size', ...usr.map((u) => '/' + u)], { encoding: 'utf8' }).trim().split('\n').reduce((a, l) => a + Number(l.split('\t')[0]), 0));
  let need = Math.max(mib * 2 ** 20 - Math.min(usrBytes, mib * 2 ** 20 * 0.7), 50 * 2 ** 20);
  const useUsr = usrBytes < mib * 2 ** 20 * 0.7 ? usr : ['usr/share'];
  for (let i = 0; need > 0; i++) {
    const n = Math.min(need, (1 + (i % 16)) * 2 ** 20);
    writeFileSync(join(src, 'random', `r${i}.bin`), randomBytes(n));
    need -= n;
  }
  sh('tar', ['--format=pax', '-cf', tar, '-C', '/', ...useUsr, '-C', src, 'random']);
  rmSync(src, { recursive: true, force: true });
}
const want = (kind) => !only || only.includes(kind);
if (want('tar+gzip') && !existsSync(tar + '.gz')) sh('sh', ['-c', `gzip -1 -c "${tar}" > "${tar}.gz"`]);
if (want('tar+zstd') && !existsSync(tar + '.zst')) sh('zstd', ['-q', '-3', '-T0', '-f', tar, '-o', tar + '.zst']);

// the TOC blobs take minutes to write: only when a TOC kind is measured
const wantToc = want('zstd:chunked') || want('estargz');
if (wantToc && !existsSync(tar + '.toc-layers.json')) {
  sh('npx', ['vite-node', 'bench/formats/toc-layers.ts', tar], { cwd: repo });
}
const toc = wantToc ? JSON.parse(readFileSync(tar + '.toc-layers.json', 'utf8')) : undefined;

const size = (p) => (existsSync(p) ? (statSync(p).size / 2 ** 20).toFixed(0) + ' MiB' : '-');
console.log(`layer: ${tar} (${size(tar)}), gzip ${size(tar + '.gz')}, zstd ${size(tar + '.zst')}, zstd:chunked ${size(tar + '.zstd-chunked')}, eStargz ${size(tar + '.estargz')}; ${runs} runs`);
const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const kinds = [
  ['tar', tar, `cat "${tar}"`, []],
  ['tar+gzip', tar + '.gz', `gzip -dc "${tar}.gz"`, []],
  ['tar+zstd', tar + '.zst', `zstd -dc "${tar}.zst"`, []],
  ['zstd:chunked', tar + '.zstd-chunked', `zstd -dc "${tar}.zstd-chunked"`, ['--toc-digest', toc?.['zstd-chunked'].tocDigest]],
  ['estargz', tar + '.estargz', `gzip -dc "${tar}.estargz"`, ['--toc-digest', toc?.estargz.tocDigest]],
].filter(([kind]) => !only || only.includes(kind));
const out = join(dir, 'out');
const ref = join(dir, 'ref');
const clean = () => {
  rmSync(out, { recursive: true, force: true });
  rmSync(ref, { recursive: true, force: true });
  execFileSync('sync');
};
for (const [kind, blob, decomp, extra] of kinds) {
  const r = { inspect: [], extract: [], gnu: [], ratio: [], both: [] };
  for (let i = 0; i < runs; i++) {
    clean();
    const inspect = noInspect ? Number.NaN : timed('inspect', () => sh(process.execPath, [bin, 'inspect', '--json', ...extra, blob]));
    clean();
    const extract = timed('extract', () => sh(process.execPath, [bin, 'extract', ...extra, blob, out]));
    clean();
    mkdirSync(ref);
    const gnu = timed('tar -x', () => sh('sh', ['-c', `${decomp} | tar -x --xattrs --xattrs-include='*' --numeric-owner -C "${ref}" -f -`]));
    r.inspect.push(inspect);
    r.extract.push(extract);
    r.gnu.push(gnu);
    r.ratio.push(extract / gnu);
    r.both.push((inspect + extract) / gnu);
  }
  clean();
  const f = (xs) => median(xs).toFixed(2);
  console.log(
    `${kind.padEnd(12)} inspect ${f(r.inspect)}s  extract ${f(r.extract)}s  tar -x ${f(r.gnu)}s  ratio extract/tar ${f(r.ratio)}  (inspect+extract)/tar ${f(r.both)}` +
      `  [runs extract/tar: ${r.ratio.map((x) => x.toFixed(2)).join(' ')}]`,
  );
}
if (!keep) rmSync(dir, { recursive: true, force: true });
