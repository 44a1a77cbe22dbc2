import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sha256Of, type Digest } from '../../src/core/digest.js';
import { Eviction } from '../../src/cache/eviction.js';
import { ObjectStore } from '../../src/cache/object-store.js';
import { tempDir } from './support/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('Eviction', () => {
  it('evicts least recently used objects down to the target, and the order survives a restart', async () => {
    const dir = await tempDir();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const open = (): Promise<ObjectStore> => ObjectStore.open({ dir: join(dir, 'objects'), tmpDir: join(dir, 'tmp') });
    const s = await open();
    let now = 1_000_000_000_000;
    const ev = await Eviction.open({ store: s, maxBytes: 1_000_000, now: () => now, flushIntervalMs: 0 });
    const ds: Digest[] = [];
    for (let i = 0; i < 10; i++) {
      const data = Buffer.alloc(10_000, i);
      const d = sha256Of(data);
      await s.put(d, data);
      now += 1000;
      ev.noteStored(d, data.length);
      ds.push(d);
    }
    expect(ev.usageBytes).toBe(100_000);
    // Touch the two oldest: they become the most recent.
    now += 1000;
    ev.touch(ds[0]!);
    ev.touch(ds[1]!);
    await ev.flush();

    // Restart: access times come back from the files' mtimes.
    const s2 = await open();
    const ev2 = await Eviction.open({ store: s2, maxBytes: 50_000, lowWater: 1, now: () => now, flushIntervalMs: 0 });
    expect(ev2.usageBytes).toBe(100_000);
    const r = await ev2.gc();
    expect(r).toMatchObject({ bytesBefore: 100_000, deleted: 5, freedBytes: 50_000, bytesAfter: 50_000 });
    const present = await Promise.all(ds.map((d) => s2.has(d)));
    // 2..6 were least recently used; 0 and 1 were touched; 7..9 are the newest.
    expect(present).toEqual([true, true, false, false, false, false, false, true, true, true]);
    expect(ev2.usageBytes).toBe(50_000);
  });

  it('gc respects pins and an explicit target (lazy-als gc)', async () => {
    const dir = await tempDir();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const s = await ObjectStore.open({ dir: join(dir, 'objects'), tmpDir: join(dir, 'tmp') });
    const ds: Digest[] = [];
    for (let i = 0; i < 4; i++) {
      const data = Buffer.alloc(1000, i);
      ds.push(sha256Of(data));
      await s.put(ds[i]!, data);
    }
    const pinned = new Set([ds[0]!]);
    const ev = await Eviction.open({ store: s, maxBytes: 1 << 30, isPinned: (d) => pinned.has(d), flushIntervalMs: 0 });
    const r = await ev.gc({ targetBytes: 0 });
    expect(r.deleted).toBe(3);
    expect(await s.has(ds[0]!)).toBe(true);
    expect((await s.usage()).bytes).toBe(1000);
  });
});
