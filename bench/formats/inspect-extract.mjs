#!/usr/bin/env node
// Bench: `lazy-als inspect` and `lazy-als extract` of a ≥ 500 MiB plain layer (tar, gzip, zstd)
// against GNU `tar -x` fed by `gunzip -c` / `zstd -dc` on the same blob.
//
// Run (root, after `npm run build`):  node bench/formats/inspect-extract.mjs [--mib 600] [--keep]
// Generates in $BENCH_DIR (default /tmp/lazy-als-bench): a tar of /usr/share + /usr/lib (GNU tar,
// PAX) topped up with incompressible random files until it reaches --mib MiB, then gzip -1 and
// zstd -3 of it. Prints seconds per run and the ratio lazy-als / tar (lower is better).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

const args = process.argv.slice(2);
const mib = Number(args[args.indexOf('--mib') + 1] ?? 0) || 600;
const keep = args.includes('--keep');
const dir = process.env.BENCH_DIR ?? '/tmp/lazy-als-bench';
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
if (!existsSync(tar + '.gz')) sh('sh', ['-c', `gzip -1 -c "${tar}" > "${tar}.gz"`]);
if (!existsSync(tar + '.zst')) sh('zstd', ['-q', '-3', '-T0', '-f', tar, '-o', tar + '.zst']);

const size = (p) => (statSync(p).size / 2 ** 20).toFixed(0) + ' MiB';
console.log(`layer: ${tar} (${size(tar)}), gzip ${size(tar + '.gz')}, zstd ${size(tar + '.zst')}`);
const rows = [];
for (const [kind, blob, decomp] of [
  ['tar', tar, `cat "${tar}"`],
  ['tar+gzip', tar + '.gz', `gzip -dc "${tar}.gz"`],
  ['tar+zstd', tar + '.zst', `zstd -dc "${tar}.zst"`],
]) {
  const out = join(dir, 'out');
  const ref = join(dir, 'ref');
  rmSync(out, { recursive: true, force: true });
  rmSync(ref, { recursive: true, force: true });
  execFileSync('sync');
  const inspect = timed('inspect', () => sh(process.execPath, [bin, 'inspect', '--json', blob], { stdio: ['ignore', 'ignore', 'pipe'] }));
  const extract = timed('extract', () => sh(process.execPath, [bin, 'extract', blob, out]));
  mkdirSync(ref);
  const gnu = timed('tar -x', () => sh('sh', ['-c', `${decomp} | tar -x --xattrs --xattrs-include='*' --numeric-owner -C "${ref}" -f -`]));
  rows.push({ kind, inspect, extract, gnu });
  console.log(`${kind.padEnd(9)} inspect ${inspect.toFixed(2)}s  extract ${extract.toFixed(2)}s  tar -x ${gnu.toFixed(2)}s  ratio extract/tar ${(extract / gnu).toFixed(2)}  (inspect+extract)/tar ${((inspect + extract) / gnu).toFixed(2)}`);
  rmSync(out, { recursive: true, force: true });
  rmSync(ref, { recursive: true, force: true });
}
if (!keep) rmSync(dir, { recursive: true, force: true });
