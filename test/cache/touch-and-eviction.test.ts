/**
 * Issue 9, row 13: eviction's access-time flush really runs in the daemon, and recording an access
 * (ObjectStore.touch) never turns a file edited behind the store's back — even to the same size —
 * into a "verified" one. Real files, the real provider the daemon builds.
 */
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/core/digest.js';
import { silentLogger } from '../../src/core/log.js';
import { ObjectStore } from '../../src/cache/object-store.js';
import { DEFAULTS } from '../../src/daemon/config.js';
import { buildProvider } from '../../src/daemon/provider-factory.js';
import { tempDir } from './support/tmp.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('touch and eviction', () => {
  it('a same-size edit before a touch is still caught by the next ranged read (nothing edited is served)', async () => {
    const dir = await tempDir();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const s = await ObjectStore.open({ dir: join(dir, 'objects'), tmpDir: join(dir, 'tmp') });
    const blob = Buffer.alloc(2 << 20, 0x61);
    const d = sha256Of(blob);
    await s.putStream(d, [blob], blob.length);
    expect(await s.readRange(d, 0, 4)).toEqual(Buffer.from('aaaa')); // hashed once, identity remembered
    const fh = await open(s.pathOf(d), 'r+');
    await fh.write(Buffer.from('EVIL'), 0, 4, 0); // same size, different bytes
    await fh.close();
    await s.touch(d, Date.now()); // eviction's access-time flush
    expect(await s.readRange(d, 0, 4)).toBeUndefined(); // re-hashed: corrupt, deleted, a miss
    expect(s.stats.corruptDeleted).toBe(1);
  });

  it('an untouched verified object stays verified across a touch (no re-hash per flush)', async () => {
    const dir = await tempDir();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const s = await ObjectStore.open({ dir: join(dir, 'objects'), tmpDir: join(dir, 'tmp') });
    const blob = Buffer.alloc(1 << 20, 0x62);
    const d = sha256Of(blob);
    await s.putStream(d, [blob], blob.length);
    expect(await s.readRange(d, 10, 2)).toEqual(Buffer.from('bb'));
    await s.touch(d, Date.now() - 5000);
    expect((await s.stat(d))!.mtimeMs).toBeLessThan(Date.now() - 4000);
    expect(await s.readRange(d, 10, 2)).toEqual(Buffer.from('bb'));
    expect(s.stats.corruptDeleted).toBe(0);
  });

  it('the daemon’s provider starts eviction (periodic access-time flush) and stops it on close', async () => {
    const dir = await tempDir();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const built = await buildProvider({ ...DEFAULTS, stateDir: dir, registry: false }, silentLogger);
    const st = (await built.status!()) as { cache: { evictionRunning: boolean } };
    expect(st.cache.evictionRunning).toBe(true);
    await built.close!();
    expect(((await built.status!()) as { cache: { evictionRunning: boolean } }).cache.evictionRunning).toBe(false);
  });
});
