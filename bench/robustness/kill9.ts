/**
 * Robustness benchmark, part 3: kill -9 during fetch, ROUNDS times (default 20), on one state dir.
 * Each round: with the daemon down, drop a random part of the chunk cache (as eviction would), so
 * the next reads fetch, and flip a byte in one cached object; start the daemon; 8 readers read whole files; after a random 5–200 ms the
 * daemon (and fuse's auto_unmount helper) get SIGKILL, mid-fetch; restart on the same state dir and
 * read EVERY byte of every file, comparing with the source. Any wrong byte, or a read error after
 * the restart (the registry is up), fails the run. Bytes read before the kill must be right too.
 *
 *   KILL9_ROUNDS=3 npx vite-node bench/robustness/kill9.ts
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { log, report } from '../e2e/report.js';
import { startLive, type ServedFile } from './_live.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ROUNDS = Number(process.env.KILL9_ROUNDS ?? 20);

async function filesUnder(d: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
    const p = join(d, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

const live = await startLive('lazy-als-kill9-');
let seed = 424242;
const rand = (n: number): number => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
};
const rows: { round: number; dropped: number; killAfterMs: number; beforeOk: number; beforeFailed: number; wrongBefore: number; verified: number; wrongAfter: number; errorsAfter: number }[] = [];
const problems: string[] = [];
try {
  const mnt = live.daemon.mnt;
  const check = (f: ServedFile, b: Buffer): boolean => b.equals(f.want);
  await live.daemon.stop();
  for (let round = 1; round <= ROUNDS; round++) {
    // Evict (daemon down): a random half of the cached objects.
    const objs = await filesUnder(join(live.daemon.stateDir, 'objects'));
    let dropped = 0;
    for (const p of objs) {
      if (rand(2) === 0 && (await stat(p)).size > 0) {
        await rm(p, { force: true });
        dropped++;
      }
    }
    // ... and flip a byte of one object that stays (a torn or rotted cache file must never be served).
    const kept = (await filesUnder(join(live.daemon.stateDir, 'objects')));
    if (kept.length > 0) {
      const victim = kept[rand(kept.length)]!;
      const b = await readFile(victim);
      if (b.length > 0) {
        const at = rand(b.length);
        b[at] = (b[at] ?? 0) ^ 0xff;
        await writeFile(victim, b);
      }
    }
    await live.daemon.start();
    const killAfterMs = 5 + rand(200);
    let beforeOk = 0;
    let beforeFailed = 0;
    let wrongBefore = 0;
    const readers = Array.from({ length: 8 }, (_, i) => {
      const f = live.files[(round + i) % live.files.length]!;
      return readFile(join(mnt, f.rel)).then(
        (b) => {
          if (check(f, b)) beforeOk++;
          else {
            wrongBefore++;
            problems.push(`round ${round}: wrong bytes before the kill: ${f.rel}`);
          }
        },
        () => beforeFailed++,
      );
    });
    await new Promise((r) => setTimeout(r, killAfterMs));
    await live.daemon.kill9({ helpers: true });
    await Promise.all(readers);
    await live.daemon.forceUnmount();
    await live.daemon.start();
    let verified = 0;
    let wrongAfter = 0;
    let errorsAfter = 0;
    for (const f of live.files) {
      try {
        const b = await readFile(join(mnt, f.rel));
        if (check(f, b)) verified += b.length;
        else {
          wrongAfter++;
          problems.push(`round ${round}: wrong bytes after restart: ${f.rel}`);
        }
      } catch (e) {
        errorsAfter++;
        problems.push(`round ${round}: ${f.rel}: ${(e as Error).message}`);
      }
    }
    await live.daemon.stop();
    rows.push({ round, dropped, killAfterMs, beforeOk, beforeFailed, wrongBefore, verified, wrongAfter, errorsAfter });
    log(`round ${round}: dropped ${dropped} objects, kill after ${killAfterMs} ms (${beforeOk} reads done, ${beforeFailed} cut), after restart ${verified} bytes verified, ${wrongAfter} wrong, ${errorsAfter} errors`);
  }
  const wrong = rows.reduce((a, r) => a + r.wrongBefore + r.wrongAfter, 0);
  const errs = rows.reduce((a, r) => a + r.errorsAfter, 0);
  const verified = rows.reduce((a, r) => a + r.verified, 0);
  report({ group: 'robustness', name: `kill -9 during fetch ×${ROUNDS}: files wrong or failing after restart`, value: wrong + errs, unit: '', note: `${(verified / 2 ** 20).toFixed(0)} MiB compared byte for byte` });
  const md = [
    '# Robustness: kill -9 during fetch',
    '',
    `${ROUNDS} rounds on one state dir: drop part of the cache (daemon down), start, 8 readers of whole files, SIGKILL of the daemon and its auto_unmount helper after a random delay, restart, every byte of every file (${live.files.length} files, three layers) compared with the source.`,
    '',
    '| round | objects dropped | kill after | reads done / cut before kill | wrong before | bytes verified after restart | wrong after | errors after |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.round} | ${r.dropped} | ${r.killAfterMs} ms | ${r.beforeOk} / ${r.beforeFailed} | ${r.wrongBefore} | ${r.verified} | ${r.wrongAfter} | ${r.errorsAfter} |`),
    '',
    `Total: ${wrong} wrong, ${errs} errors after restart, ${(verified / 2 ** 20).toFixed(1)} MiB verified.`,
    ...problems.slice(0, 10).map((p) => `- ${p}`),
    '',
  ].join('\n');
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/robustness-kill9.md'), md);
  process.stdout.write(md);
  if (wrong > 0 || errs > 0) process.exitCode = 1;
} finally {
  await live.close();
}
