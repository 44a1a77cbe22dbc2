/**
 * Inode numbers through a real mount: fuse-native passes st_ino as uint32 (use_ino smuggled via
 * fsname); this pins that numbers right up to 2^32-1 arrive intact, and that the allocator refuses
 * to go past it instead of wrapping into duplicates.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_INO_MIN, InodeAllocator } from '../../src/fuse/inodes.js';
import { KEY1, KEY2, lowerLayer, upperLayer } from './fixtures.js';
import { probe, tempMount, type TempMount } from './helpers/mount-fixture.js';
import { StandInProvider } from './helpers/stand-in-provider.js';

describe('inode numbers', () => {
  const START = 0xffff_ffff - 40; // the two fixture layers + control nodes use ~30 numbers
  let m: TempMount;
  beforeAll(async () => {
    m = await tempMount(new StandInProvider().add(lowerLayer()).add(upperLayer()), { inodes: new InodeAllocator({ start: START, limit: 0xffff_ffff }) });
  });
  afterAll(async () => {
    await m?.close();
  });

  it('numbers near 2^32 arrive intact and stay unique across layers', async () => {
    const paths = [m.mnt, join(m.mnt, KEY1), join(m.mnt, KEY1, 'diff'), join(m.mnt, KEY1, 'diff', 'etc', 'base.txt'), join(m.mnt, KEY2, 'diff'), join(m.mnt, KEY2, 'diff', 'opq', 'new.txt')];
    const r = await probe(paths.map((path) => ({ op: 'lstat', path })));
    const inos = r.map((x) => (x.ok ? Number(x.value.ino) : -1));
    expect(inos[0]).toBe(1);
    expect(inos[1]).toBeGreaterThanOrEqual(CONTROL_INO_MIN); // a control dir: hashed number, upper half
    for (const ino of inos.slice(2)) expect(ino).toBeGreaterThanOrEqual(START);
    expect(Math.max(...inos)).toBeLessThanOrEqual(0xffff_ffff);
    expect(new Set(inos).size).toBe(inos.length);
    // Same answers a second time (stable for the mount's lifetime).
    const again = await probe(paths.map((path) => ({ op: 'lstat', path })));
    expect(again.map((x) => (x.ok ? Number(x.value.ino) : -1))).toEqual(inos);
  });

  it('the allocator refuses to exceed 32 bits', () => {
    const a = new InodeAllocator({ start: 0xffff_fff0, limit: 0xffff_ffff });
    expect(a.layerBase('sha256:a', 10)).toBe(0xffff_fff0);
    expect(() => a.layerBase('sha256:b', 10)).toThrow(/exhausted/);
    expect(a.layerBase('sha256:a', 10)).toBe(0xffff_fff0); // known layers keep their range
  });

  it('layer ranges stay below the control half by default', () => {
    const a = new InodeAllocator({ start: CONTROL_INO_MIN - 10 });
    expect(a.layerBase('sha256:a', 10)).toBe(CONTROL_INO_MIN - 10);
    expect(() => a.layerBase('sha256:b', 1)).toThrow(/exhausted/);
  });

  it('control numbers are derived, not allocated: stable, in the upper half, and they burn no layer numbers', () => {
    const a = new InodeAllocator();
    const first = a.control('/sha256:' + '1'.repeat(64));
    for (let i = 0; i < 10_000; i++) {
      const n = a.control(`/sha256:${i.toString(16).padStart(64, '0')}`);
      expect(n).toBeGreaterThanOrEqual(CONTROL_INO_MIN);
      expect(n).toBeLessThanOrEqual(0xffff_ffff);
    }
    expect(a.control('/sha256:' + '1'.repeat(64))).toBe(first);
    expect(a.layerBase('sha256:x', 5)).toBe(2); // 10k control lookups took nothing from the layer counter
    expect(new InodeAllocator().control('/sha256:' + '1'.repeat(64))).not.toBe(first); // keyed per mount (2^-31 flake odds)
  });
});
