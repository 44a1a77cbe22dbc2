/**
 * Audit H2: any local user may look names up in the store root, and every `sha256:<hex>` or
 * base64-ref-shaped name is a control directory that exists. A real root `lazy-als serve`, and the
 * `nobody` user (setpriv) stat()-ing 200k random such names: RSS stays within the issue-9 budget
 * (200 MiB). Control inode numbers are hashed, not allocated (test/fuse/inodes.test.ts pins that they
 * take nothing); what is left is the native backend's path per control node the kernel still holds
 * (logged; see docs/native.md).
 * Also audit L4: the root is 0711, so nobody cannot list which refs are served, but can traverse.
 */
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/daemon/control-socket.js';
import { cmd } from './support/commands.js';
import { leakedMounts, RealDaemon, writeRegistriesConf } from './support/daemon.js';

const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];
const LOOKUPS = 200_000;

// stat() of random names as the calling user; prints how many succeeded and the errnos of the rest.
const FLOOD = `
import os, sys, secrets, base64
root, n = sys.argv[1], int(sys.argv[2])
ok, err = 0, {}
for i in range(n):
    if i % 10 == 9:
        name = base64.b64encode(('example.com/r%d/x:%s' % (i, secrets.token_hex(8))).encode()).decode()
        if i % 20 == 19: name += '/sha256:' + secrets.token_hex(32)
    else:
        name = 'sha256:' + secrets.token_hex(32)
    try:
        os.stat(os.path.join(root, name)); ok += 1
    except OSError as e:
        err[e.errno] = err.get(e.errno, 0) + 1
print(ok, err)
`;

let dir: string;
let d: RealDaemon | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-it-flood-'));
  await chmod(dir, 0o755); // nobody must reach the mountpoint
  const conf = await writeRegistriesConf(join(dir, 'registries.conf'), []);
  d = await RealDaemon.start({ dir: join(dir, 'd'), registriesConf: conf });
  await chmod(d.dir, 0o755);
});

afterAll(async () => {
  await d?.stop().catch(() => undefined);
  await d?.forceUnmount().catch(() => undefined);
  expect(await leakedMounts([dir])).toEqual([]);
  await rm(dir, { recursive: true, force: true });
});

async function rssMiB(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

async function fuseStats(): Promise<Record<string, unknown>> {
  const st = await controlRequest(d!.socket, 'GET', '/status');
  return (st.body as { fuse: Record<string, unknown> }).fuse;
}

describe('a non-root user flooding the store root with lookups', () => {
  it(`${LOOKUPS} stats of random key/ref names keep the daemon within 200 MiB`, async () => {
    const before = await rssMiB(d!.pid!);
    const r = await cmd('setpriv', [...NOBODY, '/usr/bin/python3', '-c', FLOOD, d!.mnt, String(LOOKUPS)]);
    expect(r.code, r.stderr).toBe(0);
    // Every name is a well-formed control dir: the lookups really reached the daemon and succeeded
    // (the `<ref>/<key>` ones stop at the 0700 ref dir: EACCES, from the kernel).
    const [ok] = r.stdout.trim().split(' ');
    expect(Number(ok)).toBeGreaterThanOrEqual(LOOKUPS * 0.9);
    const f = await fuseStats();
    const after = await rssMiB(d!.pid!);
    expect(after, `RSS ${before.toFixed(0)} → ${after.toFixed(0)} MiB`).toBeLessThanOrEqual(200);
    console.log(`lookup flood: ${LOOKUPS} names, RSS ${before.toFixed(0)} → ${after.toFixed(0)} MiB, held control nodes ${String(f['controlNodes'])}`);
    // and the store still answers: a fresh name is a dir, a non-digest name is not
    expect((await cmd('stat', ['-c', '%F', join(d!.mnt, `sha256:${'ab'.repeat(32)}`)])).stdout).toBe('directory\n');
    expect((await cmd('stat', [join(d!.mnt, 'not-a-key')])).code).not.toBe(0);
  });

  it('the root is 0711: nobody may traverse it but not list it (audit L4)', async () => {
    expect((await cmd('stat', ['-c', '%a', d!.mnt])).stdout).toBe('711\n');
    const ls = await cmd('setpriv', [...NOBODY, 'ls', d!.mnt]);
    expect(ls.code).not.toBe(0);
    expect(ls.stderr).toMatch(/Permission denied/);
    expect((await cmd('setpriv', [...NOBODY, 'stat', '-c', '%F', join(d!.mnt, `sha256:${'cd'.repeat(32)}`)])).stdout).toBe('directory\n');
  });
});
