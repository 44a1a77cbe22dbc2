/** The access policy and mount options both FUSE backends use (issue 9, rows 1 and 14). */
import { describe, expect, it } from 'vitest';
import { AccessPolicy, mountOptionList } from '../../src/fuse/access-policy.js';
import { DEFAULTS, applyRaw } from '../../src/daemon/config.js';

describe('AccessPolicy', () => {
  it('root only by default: root-owned 0700 control dirs; only root and the daemon uid may resolve', () => {
    const p = AccessPolicy.fromConfig({ resolveUids: [], resolveGids: [], daemonUid: 0 });
    expect(p.controlDir).toEqual({ uid: 0, gid: 0, mode: 0o700 });
    expect(p.mayResolve({ uid: 0, gid: 0 })).toBe(true);
    expect(p.mayResolve({ uid: 1000, gid: 1000, groups: [0] })).toBe(false);
    expect(p.kernelEnforceable).toBe(true);
    expect(() => p.check({ uid: 1000, gid: 1000 }, '/x')).toThrow(expect.objectContaining({ code: 'EACCES' }));
    expect(() => p.check(undefined, '/x')).not.toThrow();
  });

  it('one allowed uid and gid become owner and group (mode 0750); more than that needs a backend that sees callers', () => {
    const p = AccessPolicy.fromConfig({ resolveUids: [1000], resolveGids: [27], daemonUid: 0 });
    expect(p.controlDir).toEqual({ uid: 1000, gid: 27, mode: 0o750 });
    expect(p.mayResolve({ uid: 1000, gid: 5 })).toBe(true);
    expect(p.mayResolve({ uid: 1001, gid: 27 })).toBe(true);
    expect(p.mayResolve({ uid: 1001, gid: 5, groups: [27] })).toBe(true);
    expect(p.mayResolve({ uid: 1001, gid: 5, groups: [6] })).toBe(false);
    const wide = AccessPolicy.fromConfig({ resolveUids: [1000, 1001], resolveGids: [], daemonUid: 0 });
    expect(wide.kernelEnforceable).toBe(false);
    expect(() => wide.assertKernelEnforceable('fuse-native')).toThrow(/at most one non-root uid/);
  });

  it('with a backend that passes caller ids, lists modes cannot express open the dirs (0755) and check() decides', () => {
    const wide = AccessPolicy.fromConfig({ resolveUids: [1000, 1001], resolveGids: [27, 28], daemonUid: 0 }).withCallerIds();
    expect(wide.controlDir).toEqual({ uid: 0, gid: 0, mode: 0o755 });
    expect(() => wide.check({ uid: 1001, gid: 5 }, '/x')).not.toThrow();
    expect(() => wide.check({ uid: 1002, gid: 28 }, '/x')).not.toThrow();
    expect(() => wide.check({ uid: 1002, gid: 5 }, '/x')).toThrow(expect.objectContaining({ code: 'EACCES' }));
    // expressible lists keep their modes; a caller whose supplementary groups are unknown is left to the kernel's check
    const one = AccessPolicy.fromConfig({ resolveUids: [], resolveGids: [27], daemonUid: 0 }).withCallerIds();
    expect(one.controlDir).toEqual({ uid: 0, gid: 27, mode: 0o750 });
    expect(() => one.check({ uid: 1002, gid: 5 }, '/x')).not.toThrow();
    expect(() => one.check({ uid: 1002, gid: 5, groups: [6] }, '/x')).toThrow(expect.objectContaining({ code: 'EACCES' }));
    expect(() => AccessPolicy.rootOnly(0).withCallerIds().check({ uid: 1002, gid: 5 }, '/x')).toThrow(expect.objectContaining({ code: 'EACCES' }));
  });

  it('a daemon running as a non-root uid may resolve, and owns the control dirs', () => {
    const p = AccessPolicy.fromConfig({ resolveUids: [], resolveGids: [], daemonUid: 1500 });
    expect(p.mayResolve({ uid: 1500, gid: 1500 })).toBe(true);
    expect(p.controlDir.uid).toBe(1500);
  });

  it('mount options: default_permissions always, suid or nosuid as configured, nodev', () => {
    expect(mountOptionList({ allowOther: true, suid: true })).toEqual(['default_permissions', 'allow_other', 'suid', 'nodev']);
    expect(mountOptionList({ allowOther: false, suid: false })).toEqual(['default_permissions', 'nosuid', 'nodev']);
  });

  it('config: fuse.resolve_uids / resolve_gids are lists of ids (default empty), broken values are clear errors', () => {
    expect(DEFAULTS.fuse.resolveUids).toEqual([]);
    const c = applyRaw(DEFAULTS, { fuse: { resolve_uids: [1000, 1001], resolve_gids: '27, 28' } }, 'test');
    expect(c.fuse.resolveUids).toEqual([1000, 1001]);
    expect(c.fuse.resolveGids).toEqual([27, 28]);
    expect(() => applyRaw(DEFAULTS, { fuse: { resolve_uids: ['bob'] } }, 'test')).toThrow(/resolve_uids\[0\]/);
    expect(() => applyRaw(DEFAULTS, { fuse: { resolve_uids: 5 } }, 'test')).toThrow(/list of numeric ids/);
  });
});
