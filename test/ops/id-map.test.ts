/**
 * The rootless id mapping (src/fuse/id-map.ts, src/daemon/subids.ts): ranges as rootless podman
 * builds them from /etc/subuid, file capabilities re-rooted, trusted.* hidden. The end-to-end proof
 * that podman sees these ids as the layer's is test/ops/rootless.test.ts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/log.js';
import { parseSubordinateIds, idMapFor } from '../../src/daemon/subids.js';
import { IDENTITY_IDS, mapCapability, OVERFLOW_ID, podmanRootlessRanges, rangeIdMap } from '../../src/fuse/id-map.js';
import { vfsCapV2 } from '../e2e/images.js';

describe('id map', () => {
  const ids = rangeIdMap(podmanRootlessRanges(1000, [{ start: 100000, count: 65536 }, { start: 300000, count: 10 }]), podmanRootlessRanges(1000, [{ start: 200000, count: 65536 }]));

  it('layer 0 is the user, n ≥ 1 the n-th subordinate id across ranges, beyond them the overflow id', () => {
    expect([0, 1, 1000, 65536, 65537, 65546, 65547].map((u) => ids.uid(u))).toEqual([1000, 100000, 100999, 165535, 300000, 300009, OVERFLOW_ID]);
    expect([0, 1, 50].map((g) => ids.gid(g))).toEqual([1000, 200000, 200049]);
  });

  it('a v2 file capability becomes v3 rooted at the user; a v3 one has its root id mapped', () => {
    const v2 = vfsCapV2([10], true);
    const v3 = ids.xattr('security.capability', v2)!;
    expect(v3.length).toBe(24);
    expect(v3.readUInt32LE(0)).toBe(0x03000001);
    expect(v3.subarray(4, 20).equals(v2.subarray(4, 20))).toBe(true);
    expect(v3.readUInt32LE(20)).toBe(1000);
    const inner = Buffer.from(v3);
    inner.writeUInt32LE(5, 20); // rooted at layer uid 5
    expect(mapCapability(inner, ids.uid).readUInt32LE(20)).toBe(100004);
    expect(mapCapability(Buffer.from('short'), ids.uid).toString()).toBe('short');
  });

  it('trusted.* is hidden, user.* and others unchanged; identity changes nothing', () => {
    const y = Buffer.from('y');
    expect(ids.xattr('trusted.overlay.opaque', y)).toBeUndefined();
    expect(ids.xattr('user.overlay.opaque', y)).toBe(y);
    expect(IDENTITY_IDS.xattr('trusted.overlay.opaque', y)).toBe(y);
    expect(IDENTITY_IDS.uid(54321)).toBe(54321);
  });

  it('reads /etc/subuid-style files by name or uid, every matching line in order', async () => {
    const text = 'alice:100000:65536\nbob:165536:65536\n# comment\n1000:300000:10\nalice:bad:1\nalice:400000:0\n';
    expect(parseSubordinateIds(text, { name: 'alice', id: 1000 })).toEqual([{ start: 100000, count: 65536 }, { start: 300000, count: 10 }]);
    expect(parseSubordinateIds(text, { name: 'carol', id: 7 })).toEqual([]);
  });

  it('auto is identity for root; subids for root maps through its own ranges, with a warning when it has none', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lazy-als-ops-subid-'));
    try {
      const lines: string[] = [];
      const logger = createLogger('warn', { write: (l: string) => lines.push(l) } as never);
      expect(process.getuid?.()).toBe(0); // the suite runs as root
      expect(await idMapFor('auto', logger, { subuid: join(dir, 'u'), subgid: join(dir, 'g') })).toBe(IDENTITY_IDS);
      const none = await idMapFor('subids', logger, { subuid: join(dir, 'u'), subgid: join(dir, 'g') });
      expect([none.uid(0), none.uid(1)]).toEqual([0, OVERFLOW_ID]);
      expect(lines.join('')).toContain('daemon.no_subordinate_ids');
      lines.length = 0;
      await writeFile(join(dir, 'u'), `${userInfo().username}:500000:100\n`);
      await writeFile(join(dir, 'g'), `${process.getuid?.()}:600000:100\n`);
      const m = await idMapFor('subids', logger, { subuid: join(dir, 'u'), subgid: join(dir, 'g') });
      expect([m.uid(0), m.uid(1), m.gid(2)]).toEqual([process.getuid?.(), 500000, 600001]);
      expect(lines.join('')).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('default paths (src/daemon/paths.ts)', () => {
  it('root: system paths; a user or root of rootless podman namespace (as podman runs the auth helper): XDG paths', async () => {
    const { defaultPaths, SYSTEM_PATHS } = await import('../../src/daemon/paths.js');
    expect(defaultPaths({ HOME: '/root' }, 0)).toBe(SYSTEM_PATHS);
    expect(defaultPaths({ HOME: '/home/u', XDG_RUNTIME_DIR: '/run/user/1000', _CONTAINERS_ROOTLESS_UID: '1000' }, 0)).toEqual({
      configFile: '/home/u/.config/lazy-als/config.toml',
      stateDir: '/home/u/.local/share/lazy-als',
      mountpoint: '/home/u/.local/share/lazy-als/store',
      socketPath: '/run/user/1000/lazy-als/control.sock',
    });
    const custom = defaultPaths({ HOME: '/home/u', XDG_DATA_HOME: '/data', XDG_CONFIG_HOME: '/cfg' }, 1000);
    expect(custom).toEqual({ configFile: '/cfg/lazy-als/config.toml', stateDir: '/data/lazy-als', mountpoint: '/data/lazy-als/store', socketPath: '/data/lazy-als/control.sock' });
  });
});
