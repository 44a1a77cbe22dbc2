/**
 * The object store's batched calls with their file work in worker threads (ObjectIo), as the daemon
 * runs them. Workers only run from compiled code, so the modules come from dist/ (built first when
 * src/ is newer). Checked against the files on disk: every verified chunk lands once under its
 * digest (a second write reports it present, so eviction counts it once), reads give the bytes back
 * verified, a flipped byte on disk is a miss (file deleted, counted) and never returned, and a full
 * disk (real 64 KiB tmpfs) gives CACHE_NO_SPACE with no temp file left behind.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../src/core/digest.js';
import { alreadyVerified } from '../../src/core/verified.js';
import { ensureBuilt } from '../e2e/store.js';
import { tempDir, tinyTmpfs, unmount } from './support/tmp.js';

type StoreMod = typeof import('../../src/cache/object-store.js');
let m: StoreMod;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  await ensureBuilt();
  m = await import(new URL('../../dist/cache/object-store.js', import.meta.url).href);
});
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const sha = (b: Uint8Array): Digest => ('sha256:' + createHash('sha256').update(b).digest('hex')) as Digest;

async function open(dir?: string) {
  const root = dir ?? (await tempDir());
  if (!dir) cleanups.push(() => import('node:fs/promises').then((f) => f.rm(root, { recursive: true, force: true })));
  const s = await m.ObjectStore.open({ dir: join(root, 'objects'), tmpDir: join(root, 'tmp'), fsync: false, ioThreads: 2 });
  cleanups.push(() => s.close());
  return s;
}

describe('ObjectStore batched io in worker threads', () => {
  it('writes each verified chunk once, reads it back verified, and treats a flipped byte as a miss', async () => {
    const s = await open();
    // some chunks in shared memory (as the decode workers make them), some not
    const chunks = Array.from({ length: 40 }, (_, i) => {
      const b = randomBytes(1000 + i * 997);
      const data = i % 2 === 0 ? Buffer.from(new SharedArrayBuffer(b.length)) : Buffer.from(b);
      b.copy(data);
      return { digest: sha(b), data: alreadyVerified(data) };
    });
    expect(await s.putVerifiedMany(chunks)).toEqual(chunks.map(() => true));
    expect(await s.putVerifiedMany(chunks.slice(0, 5))).toEqual([false, false, false, false, false]);
    // (.equals: toEqual walks buffers element by element)
    for (const c of chunks) expect((await readFile(s.pathOf(c.digest))).equals(c.data)).toBe(true);
    expect((await stat(s.pathOf(chunks[0]!.digest))).mode & 0o777).toBe(0o600);
    expect(s.stats.puts).toBe(40);

    const absent = sha(Buffer.from('never stored'));
    const bad = chunks[7]!;
    const flipped = Buffer.from(bad.data);
    flipped[100] = flipped[100]! ^ 1;
    await writeFile(s.pathOf(bad.digest), flipped);
    const got = await s.getMany([...chunks.map((c) => c.digest), absent]);
    chunks.forEach((c, i) => {
      if (c === bad) expect(got[i]).toBeUndefined();
      else expect(got[i] instanceof Buffer && got[i].equals(c.data)).toBe(true);
    });
    expect(got[chunks.length]).toBeUndefined();
    expect(s.stats.corruptDeleted).toBe(1);
    await expect(stat(s.pathOf(bad.digest))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readdir(s.tmpDir)).toEqual([]);
  });

  it('a file that reads shorter than fstat said is corrupt, never served with a zero tail (audit L1)', async () => {
    // A real file whose read ends before its fstat size: sysfs attributes stat as 4096 bytes and read
    // as their few bytes of text. An object file that shrinks between fstat and read looks the same to
    // the reader. Its bytes hash to the digest, so only the length check can tell: before the fix the
    // 4096-byte buffer (the text + a zero tail) was served as the object.
    const sys = '/sys/kernel/mm/transparent_hugepage/enabled';
    const text = await readFile(sys).catch(() => undefined);
    if (!text || (await stat(sys)).size <= text.length) return expect.soft(text, `${sys} is not a short-reading file here`).toBeDefined();
    const s = await open();
    const d = sha(text);
    const { mkdir, symlink } = await import('node:fs/promises');
    const { dirname } = await import('node:path');
    await mkdir(dirname(s.pathOf(d)), { recursive: true });
    await symlink(sys, s.pathOf(d));
    const got = await s.getMany([d]);
    expect(got[0]).toBeUndefined();
    expect(s.stats.corruptDeleted).toBe(1);
  });

  it('full disk (real 64 KiB tmpfs): CACHE_NO_SPACE per chunk that does not fit, no temp file left', async () => {
    const mnt = await tinyTmpfs('64k');
    if (!mnt) {
      expect.soft(process.getuid?.(), 'tmpfs mount needs root').not.toBe(0);
      return;
    }
    cleanups.push(() => unmount(mnt));
    const s = await open(mnt);
    const big = randomBytes(200_000);
    const small = randomBytes(1000);
    const res = await s.putVerifiedMany([
      { digest: sha(big), data: alreadyVerified(big) },
      { digest: sha(small), data: alreadyVerified(small) },
    ]);
    expect(res[0]).toMatchObject({ code: 'CACHE_NO_SPACE', context: { chunk: sha(big) } });
    expect(res[1]).toBe(true);
    expect(s.stats.noSpace).toBe(1);
    expect(await readdir(s.tmpDir)).toEqual([]);
    expect(await s.has(sha(big))).toBe(false);
  });
});
