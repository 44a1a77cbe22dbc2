/**
 * The fixture writer checked against real tools: the `zstd` CLI must decode the blob (skipping the
 * metadata frames) into exactly the tar the writer reports, and GNU tar must list it.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildZstdChunked, zstdChunkedSampleEntries } from '../helpers/writers/zstd-chunked.js';

const run = promisify(execFile);
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zstd-chunked-writer-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('zstd:chunked fixture writer', () => {
  for (const [label, opts] of [
    ['plain', {}],
    ['chunked with holes', { chunkSize: 32 * 1024, holes: true }],
    ['old variant', { variant: 'old' as const }],
  ] as const) {
    it(`${label}: zstd -dc reproduces the tar, tar -t lists it`, async () => {
      const entries = zstdChunkedSampleEntries();
      const w = buildZstdChunked(entries, opts);
      const path = join(dir, `${label.replace(/ /g, '-')}.zst`);
      await writeFile(path, w.blob);
      const { stdout } = await run('zstd', ['-dc', path], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
      expect(stdout.equals(w.tar)).toBe(true);
      expect('sha256:' + createHash('sha256').update(stdout).digest('hex')).toBe(w.diffId);
      const tarPath = join(dir, `${label.replace(/ /g, '-')}.tar`);
      await writeFile(tarPath, stdout);
      const list = (await run('tar', ['-tf', tarPath])).stdout.split('\n').filter(Boolean);
      expect(list).toEqual(entries.map((e) => e.name));
      // GNU tar sees the nanoseconds and the xattr the writer put in PAX records.
      const verbose = (await run('tar', ['--full-time', '--xattrs', '-tvvf', tarPath], { env: { ...process.env, TZ: 'UTC' } })).stdout;
      expect(verbose).toMatch(/2023-11-14 22:13:20\.123456789 bin\/tool/);
    });
  }

  it('frames: each chunk is one frame, the footer is the last 64 bytes', () => {
    const w = buildZstdChunked(zstdChunkedSampleEntries(), { chunkSize: 32 * 1024, holes: true });
    const frames = w.chunkFrames.get('big/data.bin')!;
    expect(frames.length).toBeGreaterThan(5);
    expect(frames.some((f) => f.zeros)).toBe(true);
    for (let i = 1; i < frames.length; i++) expect(frames[i]!.offset).toBe(frames[i - 1]!.end);
    expect(w.blob.subarray(w.blob.length - 72, w.blob.length - 64)).toEqual(Buffer.from('502a4d1840000000', 'hex'));
    expect(w.blob.subarray(w.blob.length - 8).toString('latin1')).toBe('GNUlInUx');
    expect(w.annotations['io.github.containers.zstd-chunked.manifest-position']).toBe(
      `${w.manifestOffset}:${w.manifestLength}:${Buffer.byteLength(w.manifestJson)}:1`,
    );
  });
});
