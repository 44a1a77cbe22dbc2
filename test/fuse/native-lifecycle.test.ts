/**
 * The native backend's bookkeeping over a REAL mount (the auditor's items in docs/native.md):
 *  - an access policy the kernel cannot enforce is checked on every path walk, never skipped
 *    because the kernel cached an entry a permitted caller looked up first;
 * Runs on the native backend only (it is about what C and its JS side remember).
 */
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AccessPolicy } from '../../src/fuse/access-policy.js';
import { KEY1, lowerLayer } from './fixtures.js';
import { run, tempMount, type TempMount } from './helpers/mount-fixture.js';
import { StandInProvider } from './helpers/stand-in-provider.js';

/** `cat path` as the real user nobody (65534), no supplementary groups: stdout, or the error text. */
async function catAsNobody(path: string): Promise<{ code: number | null; out: string }> {
  const r = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'cat', path]);
  return { code: r.code, out: r.code === 0 ? r.stdout : r.stderr };
}

describe('native backend: what the mount remembers', () => {
  let m: TempMount | undefined;
  afterEach(async () => {
    await m?.close();
    m = undefined;
  });

  it('a policy the kernel cannot enforce (two non-root uids) is checked on every walk, also after root resolved the layer', async () => {
    // 60001 and 60002 may resolve; nobody (65534) may not. Two non-root uids: no directory mode
    // expresses that, so the control dirs are 0755 and the daemon's check is the only gate.
    const policy = AccessPolicy.fromConfig({ resolveUids: [60001, 60002], resolveGids: [], daemonUid: 0 });
    expect(policy.kernelEnforceable).toBe(false);
    m = await tempMount(new StandInProvider().add(lowerLayer()), { backend: 'native', policy });
    await chmod(m.dir, 0o755);
    const file = join(m.mnt, KEY1, 'diff', 'etc', 'base.txt');
    // root resolves the layer first (what podman does): the kernel now holds `<key>/diff`
    const asRoot = await run('cat', [file]);
    expect(asRoot).toMatchObject({ code: 0, stdout: 'hello from base layer\n' });
    // nobody walks the same path: the `diff` entry must not come from the kernel's cache
    const first = await catAsNobody(file);
    expect(first.code, first.out).not.toBe(0);
    expect(first.out).toMatch(/Permission denied/);
    // and again (a negative answer is not cached either), while root still reads it
    expect((await catAsNobody(join(m.mnt, KEY1, 'info'))).out).toMatch(/Permission denied/);
    expect((await catAsNobody(file)).out).toMatch(/Permission denied/);
    expect(await run('cat', [file])).toMatchObject({ code: 0, stdout: 'hello from base layer\n' });
  });
});
