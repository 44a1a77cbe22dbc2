/**
 * Range-read benchmark for the registry client against the real local registry (docker-registry).
 *
 *   npx vite-node bench/sources/range-reads.ts            (vite-node ships with vitest)
 *   BENCH_BLOB_MIB=256 BENCH_RANGES=500 npx vite-node bench/sources/range-reads.ts
 *
 * Reports (RESULT lines, bench/e2e/report.ts), for the same ranges: client time vs `curl` (one curl
 * process, one keep-alive connection, ranges from a config file); the whole blob vs curl (issue 11's
 * "registry client ÷ curl" row); and prints many small ranges with vs without coalescing.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Digest } from '../../src/core/digest.js';
import { parseReference } from '../../src/sources/reference.js';
import { RegistrySource } from '../../src/sources/registry/registry-source.js';
import type { RegistryBlob } from '../../src/sources/registry/registry-blob.js';
import { startRegistry } from '../../test/helpers/registry.js';
import { pushImage } from '../../test/helpers/registry-push.js';
import { log, median, report } from '../e2e/report.js';

const MIB = 1024 * 1024;
const blobMiB = Number(process.env['BENCH_BLOB_MIB'] ?? 64);
const nRanges = Number(process.env['BENCH_RANGES'] ?? 200);
const rangeBytes = Number(process.env['BENCH_RANGE_BYTES'] ?? 64 * 1024);
const smallCount = Number(process.env['BENCH_SMALL'] ?? 2000);

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

async function time<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t = process.hrtime.bigint();
  const r = await f();
  return [Number(process.hrtime.bigint() - t) / 1e6, r];
}

async function main(): Promise<void> {
  const reg = await startRegistry();
  const dir = mkdtempSync(join(tmpdir(), 'lazy-als-bench-'));
  try {
    const data = randomBytes(blobMiB * MIB);
    const img = await pushImage(reg, 'bench/blob', 'v1', { layers: [{ bytes: data }] });
    const digest = img.layers[0]!.digest as Digest;
    const ref = parseReference(`${reg.host}/bench/blob:v1`);
    const url = `${reg.url}/v2/bench/blob/blobs/${digest}`;
    const r = rng(42);
    const ranges = Array.from({ length: nRanges }, () => ({ offset: Math.floor(r() * (data.length - rangeBytes)), length: rangeBytes }));

    // 1. cold random ranges, sequential, one connection each side
    const cfg = join(dir, 'curl.cfg');
    writeFileSync(cfg, ranges.map((x) => `url = "${url}"\nrange = "${x.offset}-${x.offset + x.length - 1}"\noutput = "/dev/null"\n`).join(''));
    const [curlMs] = await time(async () => execFileSync('curl', ['-sS', '--fail', '-K', cfg]));
    const src = new RegistrySource({ connectionsPerHost: 1 });
    let clientMs: number;
    try {
      const blob = await src.openBlob(ref, digest, data.length);
      [clientMs] = await time(async () => {
        for (const x of ranges) {
          const b = await blob.read(x.offset, x.length);
          if (b[0] !== data[x.offset]) throw new Error('bad data');
        }
      });
    } finally {
      await src.close();
    }
    report({ group: 'registry client, loopback', name: `${nRanges} random ${rangeBytes / 1024} KiB ranges one after the other, one connection: client vs curl -K`, value: clientMs, baseline: curlMs, unit: 'ms' });

    // 2. whole-blob throughput (median of 5 each, after a warm-up read), interleaved with curl; the
    //    client as configured (large ranges split over parallel connections) and on one connection
    // "memory reused": a pool big enough for the whole 64 MiB, the buffer given back after each read
    // (as the chunk reader gives spans back): no first-touch page faults of a fresh 64 MiB buffer.
    const reuse = { bufferPool: { maxBuffer: 2 * blobMiB * MIB, maxIdleBytes: 2 * blobMiB * MIB } };
    for (const [label, opts] of [
      ['client', {}],
      ['client, one connection (no split)', { ranges: { splitBytes: 0 } }],
      ['client, memory reused', reuse],
      ['client, one connection, memory reused', { ranges: { splitBytes: 0 }, ...reuse }],
    ] as const) {
      const src2 = new RegistrySource(opts);
      try {
        const blob = await src2.openBlob(ref, digest, data.length);
        blob.release?.([await blob.read(0, data.length)]);
        const clientAll: number[] = [];
        const curlAll: number[] = [];
        for (let i = 0; i < 5; i++) {
          const [ms, b] = await time(() => blob.read(0, data.length));
          clientAll.push(ms);
          blob.release?.([b]);
          curlAll.push((await time(async () => execFileSync('curl', ['-sS', '--fail', '-o', '/dev/null', url])))[0]);
        }
        const c = median(clientAll);
        const k = median(curlAll);
        log(`whole ${blobMiB} MiB: ${label} ${c.toFixed(0)} ms (${(blobMiB / (c / 1000)).toFixed(0)} MiB/s), curl ${k.toFixed(0)} ms`);
        report({
          group: 'registry client, loopback (median of 5, interleaved with curl)',
          name: `whole ${blobMiB} MiB blob: ${label} vs curl`,
          value: c,
          baseline: k,
          unit: 'ms',
          ...(label === 'client' && blobMiB === 64 ? { row: 'client/whole-blob' } : {}),
        });
      } finally {
        await src2.close();
      }
    }

    // 3. many small clustered ranges (a TOC-driven prefetch pattern): coalescing on vs off
    const small = Array.from({ length: smallCount }, (_, i) => ({ offset: Math.floor(i * (data.length / smallCount)) + Math.floor(r() * 512), length: 300 + Math.floor(r() * 700) }));
    for (const [label, ranges2] of [
      ['coalesced (gap 64 KiB, 64 ranges/request)', { gapBytes: 64 * 1024, maxRangesPerRequest: 64 }],
      ['multi-range only (gap 0, 64 ranges/request)', { gapBytes: 0, maxRangesPerRequest: 64 }],
      ['no coalescing (one request per range, 8 connections)', { gapBytes: 0, maxRangesPerRequest: 1 }],
    ] as const) {
      const s = new RegistrySource({ ranges: ranges2 });
      try {
        const blob = (await s.openBlob(ref, digest, data.length)) as RegistryBlob;
        const [ms, got] = await time(() => blob.readMany(small));
        got.forEach((b, i) => {
          if (!b.equals(data.subarray(small[i]!.offset, small[i]!.offset + small[i]!.length))) throw new Error(`bad data ${i}`);
        });
        console.log(`${smallCount} small ranges, ${label}: ${ms.toFixed(0)} ms`);
      } finally {
        await s.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await reg.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
