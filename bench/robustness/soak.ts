/**
 * Robustness benchmark, part 2: soak. 64 concurrent readers over the three layers of a real image
 * through the real daemon's FUSE mount for SOAK_SECONDS (default 600): each reader opens a file
 * (FUSE drops the page cache on open, so every read reaches the daemon), reads a random range and
 * compares it with the source bytes. The daemon's RSS is sampled every second. Flat = the mean RSS
 * of the last minute within 10 % of the first minute after warm-up (the first 30 % of the run); any read error
 * or wrong byte fails the run.
 *
 *   SOAK_SECONDS=60 npx vite-node bench/robustness/soak.ts
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { log, report } from '../e2e/report.js';
import { rssOf, startLive } from './_live.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const READERS = Number(process.env.SOAK_READERS ?? 64);
// Warm-up: the memory tier of the chunk cache fills and V8 sizes its heap for 64 readers; over a
// 10-minute run RSS reaches its plateau within ~3 minutes (measured), so the first 30 % is warm-up.
const WARMUP = Math.floor(SECONDS * 0.3);
const WINDOW = Math.min(60, Math.floor((SECONDS - WARMUP) / 2));

const live = await startLive('lazy-als-soak-');
let reads = 0;
let bytes = 0;
let errors = 0;
let wrong = 0;
const firstErrors: string[] = [];
try {
  const mnt = live.daemon.mnt;
  const pid = live.daemon.pid!;
  const deadline = Date.now() + SECONDS * 1000;
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const reader = async (): Promise<void> => {
    const buf = Buffer.alloc(1024 * 1024);
    while (Date.now() < deadline) {
      const f = live.files[rand(live.files.length)]!;
      const off = rand(f.want.length);
      const len = Math.min(buf.length, f.want.length - off, 1 + rand(256 * 1024));
      try {
        const fh = await open(join(mnt, f.rel), 'r');
        try {
          const { bytesRead } = await fh.read(buf, 0, len, off);
          reads++;
          bytes += bytesRead;
          if (bytesRead !== len || !buf.subarray(0, len).equals(f.want.subarray(off, off + len))) {
            wrong++;
            if (firstErrors.length < 5) firstErrors.push(`wrong bytes: ${f.rel} @${off}+${len} (got ${bytesRead})`);
          }
        } finally {
          await fh.close();
        }
      } catch (e) {
        errors++;
        if (firstErrors.length < 5) firstErrors.push(`${f.rel}: ${(e as Error).message}`);
      }
    }
  };
  const samples: { t: number; rss: number }[] = [];
  const t0 = Date.now();
  const sampler = setInterval(() => {
    void rssOf(pid).then((rss) => samples.push({ t: (Date.now() - t0) / 1000, rss }));
  }, 1000);
  await Promise.all(Array.from({ length: READERS }, reader));
  clearInterval(sampler);
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const first = mean(samples.filter((s) => s.t >= WARMUP && s.t < WARMUP + WINDOW).map((s) => s.rss));
  const last = mean(samples.filter((s) => s.t >= SECONDS - WINDOW).map((s) => s.rss));
  const peak = Math.max(...samples.map((s) => s.rss));
  const drift = first > 0 ? last / first - 1 : NaN;
  // V8's old generation grows in a sawtooth between major GCs (~100-200 s here), so the window means
  // depend on the phase; the peaks of the two halves of the run show growth, if any, independently.
  const half = (lo: number, hi: number): number => Math.max(0, ...samples.filter((s) => s.t >= lo && s.t < hi).map((s) => s.rss));
  const peakGrowth = half(0, SECONDS / 2) > 0 ? half(SECONDS / 2, SECONDS + 1) / half(0, SECONDS / 2) - 1 : NaN;
  const flat = Math.abs(drift) <= 0.1;
  log(`soak ${SECONDS}s × ${READERS} readers: ${reads} reads, ${(bytes / 2 ** 20).toFixed(0)} MiB, ${errors} errors, ${wrong} wrong; RSS first ${(first / 2 ** 20).toFixed(1)} MiB, last ${(last / 2 ** 20).toFixed(1)} MiB (${(drift * 100).toFixed(1)} %), peak ${(peak / 2 ** 20).toFixed(1)} MiB`);
  for (const e of firstErrors) log(e);
  report({ group: 'robustness', name: `soak ${SECONDS}s: daemon RSS, last minute`, value: last, unit: 'B', baseline: first, baselineName: 'first minute after warm-up', note: `${reads} reads, ${errors} errors, ${wrong} wrong bytes` });
  const md = [
    '# Robustness: soak',
    '',
    `${READERS} concurrent readers, ${SECONDS} s, three layers (eStargz, zstd:chunked, plain tar+gzip) of a real image through the real daemon's FUSE mount; RSS sampled every second.`,
    '',
    '| reads | MiB read | read errors | wrong bytes | RSS first minute (after ' + WARMUP + ' s warm-up) | RSS last minute | drift | peak RSS | flat (±10 %) |',
    '|---|---|---|---|---|---|---|---|---|',
    `| ${reads} | ${(bytes / 2 ** 20).toFixed(0)} | ${errors} | ${wrong} | ${(first / 2 ** 20).toFixed(1)} MiB | ${(last / 2 ** 20).toFixed(1)} MiB | ${(drift * 100).toFixed(1)} % | ${(peak / 2 ** 20).toFixed(1)} MiB | ${flat ? 'yes' : '**no**'} |`,
    '',
    `Peak RSS of the second half of the run vs the first half: ${(peakGrowth * 100).toFixed(1)} %.`,
    '',
    'RSS samples (s, MiB): ' + samples.filter((_, i) => i % 10 === 0).map((s) => `${s.t.toFixed(0)}:${(s.rss / 2 ** 20).toFixed(0)}`).join(' '),
    '',
  ].join('\n');
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/robustness-soak.md'), md);
  process.stdout.write(md);
  if (errors > 0 || wrong > 0 || !flat) process.exitCode = 1;
} finally {
  await live.close();
}
