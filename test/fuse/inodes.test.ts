/**
 * Inode numbers through a real mount: fuse-native passes st_ino as uint32 (use_ino smuggled via
 * fsname); this pins that numbers right up to 2^32-1 arrive intact, and that the allocator refuses
 * to go past it instead of wrapping into duplicates.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InodeAllocator } from '../../src/fuse/inodes.js';
import { KEY1, KEY2, lowerLayer, upperLayer } from './fixtures.js';
import { probe, tempMount, type TempMount } from './helpers/mount-fixture.js';
import { StandInProvider } from './helpers/stand-in-provider.js';

describe('inode numbers', () => {
  const START = 0xffff_ffff - 40; // the two fixture layers + control nodes use ~30 numbers
  let m: TempMount;
  beforeAll(async () => {
    m = await tempMount(new StandInProvider().add(lowerLayer()).add(upperLayer()), { inodes: new InodeAllocator({ start: START }) });
  });
  afterAll(async () => {
    await m?.close();
  });

  it('numbers near 2^32 arrive intact and stay unique across layers', async () => {
    const paths = [m.mnt, join(m.mnt, KEY1), join(m.mnt, KEY1, 'diff'), join(m.mnt, KEY1, 'diff', 'etc', 'base.txt'), join(m.mnt, KEY2, 'diff'), join(m.mnt, KEY2, 'diff', 'opq', 'new.txt')];
    const r = await probe(paths.map((path) => ({ op: 'lstat', path })));
    const inos = r.map((x) => (x.ok ? Number(x.value.ino) : -1));
    expect(inos[0]).toBe(1);
    for (const ino of inos.slice(1)) expect(ino).toBeGreaterThanOrEqual(START);
    expect(Math.max(...inos)).toBeLessThanOrEqual(0xffff_ffff);
    expect(new Set(inos).size).toBe(inos.length);
    // Same answers a second time (stable for the mount's lifetime).
    const again = await probe(paths.map((path) => ({ op: 'lstat', path })));
    expect(again.map((x) => (x.ok ? Number(x.value.ino) : -1))).toEqual(inos);
  });

  it('the allocator refuses to exceed 32 bits', () => {
    const a = new InodeAllocator({ start: 0xffff_fff0 });
    expect(a.layerBase('sha256:a', 10)).toBe(0xffff_fff0);
    expect(() => a.layerBase('sha256:b', 10)).toThrow(/exhausted/);
    expect(a.layerBase('sha256:a', 10)).toBe(0xffff_fff0); // known layers keep their range
  });
});
