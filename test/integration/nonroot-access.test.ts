/**
 * A local non-root user against a root `lazy-als serve` (issue 9, rows 1 and 14), with a real user
 * made by this test (useradd; userdel afterwards), a real daemon, FUSE mount and registry:
 *
 *  - allowed to resolve (`--resolve-uids <uid>`), the user's reads, listings and stats of a served
 *    layer give exactly what the same user gets on a normally extracted copy of the same layer
 *    (GNU tar -xp as root): a 0600 root file, a file in a 0700 dir, mode-0000 files → EACCES, files
 *    the modes allow → the bytes;
 *  - by default (root only), the user's lookups of a known-but-unresolved layer, of an unknown ref
 *    and of an unknown key are refused (EACCES) without one registry request, also after root has
 *    resolved the layer; root's `use` create and `rmdir` (the ALS protocol) still answer ENOENT
 *    and count;
 *  - `fuse.suid`: true → the mount has no `nosuid` and a setuid-root binary in the layer runs as
 *    root; false → `nosuid` and it runs as the user.
 */
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/daemon/control-socket.js';
import { PROBE, type ProbeOp, type ProbeResult } from '../fuse/helpers/mount-fixture.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushImage } from '../helpers/registry-push.js';
import { buildZstdChunked, type ZstdChunkedBlob, type ZstdChunkedEntry } from '../helpers/writers/zstd-chunked.js';
import { cmd, probe } from './support/commands.js';
import { leakedMounts, RealDaemon, writeRegistriesConf } from './support/daemon.js';
import { MT_TAR_ZSTD, refElem } from './support/images.js';

const USER = `lzt${randomBytes(3).toString('hex')}`;
let uid = -1;
let gid = -1;
let reg: RegistryHandle;
let dir: string;
let layer: ZstdChunkedBlob;
let extracted: string;
let R: string;
const daemons: RealDaemon[] = [];
let userMade = false;

/** Paths of the layer and what each probes (read for files, readdir for dirs, stat for both). */
let FILES: string[] = [];
const DIRS = ['', 'private', 'exec-only', 'open'];

function entries(u: number, g: number): ZstdChunkedEntry[] {
  const t = (name: string, mode: number, owner: [number, number] = [0, 0]): ZstdChunkedEntry => ({
    name, type: 'reg', mode, uid: owner[0], gid: owner[1], data: Buffer.from(`content of ${name}\n`),
  });
  return [
    { name: 'private/', type: 'dir', mode: 0o700 },
    t('private/inner.txt', 0o644),
    { name: 'exec-only/', type: 'dir', mode: 0o711 },
    t('exec-only/f.txt', 0o644),
    { name: 'open/', type: 'dir', mode: 0o755 },
    t('open/pub.txt', 0o644),
    t('secret', 0o600),
    t('zero', 0o000),
    t('mine', 0o600, [u, g]),
    t('mine-zero', 0o000, [u, g]),
    t('group-read', 0o640, [0, g]),
    t('root-group', 0o640, [0, 0]),
    t('pub.txt', 0o644),
    // setuid root: what `id -u` prints shows whether the mount honours it
    { name: 'suid-id', type: 'reg', mode: 0o4755, uid: 0, gid: 0, data: idBinary },
  ];
}
let idBinary: Buffer;

/** Run the probe as the test user (no supplementary groups). */
async function probeAs(ops: readonly ProbeOp[]): Promise<ProbeResult[]> {
  const r = await cmd('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', process.execPath, PROBE, JSON.stringify(ops)]);
  if (r.code !== 0) throw new Error(`probe as ${USER} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ProbeResult[];
}

/** What the user sees under `base`: file bytes (sha), dir listings, stat success — or the errno. */
async function userView(base: string): Promise<Record<string, unknown>> {
  const ops: ProbeOp[] = [
    ...FILES.map((p) => ({ op: 'read', path: join(base, p) })),
    ...DIRS.map((p) => ({ op: 'readdir', path: join(base, p) })),
    ...[...FILES, ...DIRS].map((p) => ({ op: 'stat', path: join(base, p) })),
  ];
  const res = await probeAs(ops);
  const out: Record<string, unknown> = {};
  ops.forEach((o, i) => {
    const r = res[i]!;
    const rel = o.path.slice(base.length + 1);
    let v: unknown;
    if (!r.ok) v = r.code;
    else if (o.op === 'read') v = r.value.sha256;
    else if (o.op === 'readdir') v = (r.value as { name: string }[]).map((e) => e.name).sort();
    // directory sizes are the filesystem's own business (ext4: 4096), not the layer's
    else v = { mode: r.value.mode, uid: r.value.uid, gid: r.value.gid, ...(r.value.type === 'dir' ? {} : { size: r.value.size }) };
    out[`${o.op} ${rel || '.'}`] = v;
  });
  return out;
}

beforeAll(async () => {
  const add = await cmd('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', USER]);
  if (add.code !== 0) throw new Error(`useradd ${USER}: ${add.stderr}`);
  userMade = true;
  uid = Number((await cmd('id', ['-u', USER])).stdout.trim());
  gid = Number((await cmd('id', ['-g', USER])).stdout.trim());
  idBinary = await readFile('/usr/bin/id');
  const es = entries(uid, gid);
  FILES = es.filter((e) => e.type === 'reg' && e.name !== 'suid-id').map((e) => e.name);
  layer = buildZstdChunked(es);
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-it-nonroot-'));
  await chmod(dir, 0o755); // the user must reach the mountpoints and the extracted copy
  await pushImage(reg, 'it/perm', 'v1', { layers: [{ bytes: layer.blob, mediaType: MT_TAR_ZSTD, diffId: layer.diffId, annotations: layer.annotations }] });
  R = refElem(`${reg.host}/it/perm:v1`);
  // The normally extracted copy: GNU tar as root keeps owners and modes, as c/storage does.
  extracted = join(dir, 'extracted');
  await mkdir(extracted, { mode: 0o755 });
  await writeFile(join(dir, 'layer.tar'), layer.tar);
  const x = await cmd('tar', ['-xpf', join(dir, 'layer.tar'), '--same-owner', '--numeric-owner', '-C', extracted]);
  if (x.code !== 0) throw new Error(`tar -x: ${x.stderr}`);
});

afterAll(async () => {
  for (const d of daemons) {
    await d.kill9({ helpers: true }).catch(() => undefined);
    await d.forceUnmount().catch(() => undefined);
  }
  await reg?.stop();
  if (userMade) await cmd('userdel', [USER]);
  if (dir) {
    expect(await leakedMounts([dir])).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  }
});

async function startDaemon(name: string, extraArgs: string[] = []): Promise<RealDaemon> {
  const conf = await writeRegistriesConf(join(dir, `${name}.conf`), [reg.host]);
  await mkdir(join(dir, name), { recursive: true, mode: 0o755 });
  const d = await RealDaemon.start({ dir: join(dir, name), registriesConf: conf, extraArgs });
  daemons.push(d);
  return d;
}

async function mountOptions(mnt: string): Promise<{ flags: string[]; super: string[] }> {
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const f = line.split(' ');
    if (f[4] !== mnt) continue;
    const sep = f.indexOf('-');
    return { flags: (f[5] ?? '').split(','), super: (f[sep + 3] ?? '').split(',') };
  }
  throw new Error(`${mnt} is not mounted`);
}

describe('a non-root user against a root daemon', () => {
  it('allowed to resolve: every read, listing and stat equals the same user on an extracted copy (modes enforced by the kernel)', async () => {
    // Row 11 too: a state dir that pre-exists 0777 and a daemon started with umask 000.
    await mkdir(join(dir, 'allowed', 'state'), { recursive: true });
    await chmod(join(dir, 'allowed'), 0o755);
    await chmod(join(dir, 'allowed', 'state'), 0o777);
    const old = process.umask(0);
    let d: RealDaemon;
    try {
      d = await startDaemon('allowed', ['--resolve-uids', String(uid)]);
    } finally {
      process.umask(old);
    }
    const opts = await mountOptions(d.mnt);
    expect(opts.super).toContain('default_permissions');
    expect(opts.super).toContain('allow_other');
    const base = join(d.mnt, R, layer.tocDigest, 'diff');
    const ours = await userView(base);
    const theirs = await userView(extracted);
    expect(ours).toEqual(theirs);
    // not a vacuous comparison: both refuse what the modes forbid and serve what they allow
    for (const p of ['read secret', 'read zero', 'read private/inner.txt', 'read mine-zero', 'read root-group', 'readdir exec-only', 'readdir private']) expect(ours[p]).toBe('EACCES');
    for (const p of ['read mine', 'read group-read', 'read pub.txt', 'read open/pub.txt', 'read exec-only/f.txt']) expect(ours[p]).toMatch(/^[0-9a-f]{64}$/);
    await d.settle();
    // Nothing in the state dir (cached chunks of `secret` included) is open to other users.
    const open: string[] = [];
    let files = 0;
    const walk = async (p: string): Promise<void> => {
      const st = await stat(p);
      if ((st.mode & 0o077) !== 0) open.push(`${p} ${(st.mode & 0o777).toString(8)}`);
      if (st.isDirectory()) for (const e of await readdir(p)) await walk(join(p, e));
      else files++;
    };
    await walk(d.stateDir);
    expect(files).toBeGreaterThan(3);
    expect(open).toEqual([]);
    await d.stop();
  });

  it('by default (root only): lookups by the user are refused without any registry request; the use/rmdir protocol still works for root', async () => {
    const d = await startDaemon('default');
    const key = join(d.mnt, R, layer.tocDigest);
    const unknownRef = refElem(`${reg.host}/it/nothing:here`);
    const unknownKey = `sha256:${'ab'.repeat(32)}`;
    const logBefore = reg.accessLog().length;
    const asUser = async (): Promise<unknown[]> =>
      (await probeAs([
        { op: 'stat', path: join(key, 'diff') },
        { op: 'stat', path: join(key, 'info') },
        { op: 'read', path: join(key, 'diff', 'pub.txt') },
        { op: 'stat', path: join(d.mnt, unknownRef, unknownKey, 'diff') },
        { op: 'stat', path: join(d.mnt, R, unknownKey, 'diff') },
        { op: 'create', path: join(key, 'use') },
      ])).map((r) => (r.ok ? r.value : r.code));
    expect(await asUser()).toEqual(['EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES']);
    expect(reg.accessLog().slice(logBefore)).toEqual([]); // the daemon never asked the registry
    const st0 = await controlRequest(d.socket, 'GET', '/status');
    expect((st0.body as { catalog: { layers: unknown[] } }).catalog.layers).toEqual([]);

    // root resolves it (what podman does); the user still cannot reach it through the store
    const rootRes = (await probe([
      { op: 'stat', path: join(key, 'diff') },
      { op: 'read', path: join(key, 'diff', 'pub.txt') },
      { op: 'create', path: join(key, 'use') },
      { op: 'rmdir', path: key },
      { op: 'create', path: join(key, 'use') },
    ])).map((r) => (r.ok ? (typeof r.value === 'object' ? 'ok' : r.value) : r.code));
    expect(rootRes).toEqual(['ok', 'ok', 'ENOENT', 'ENOENT', 'ENOENT']);
    const uses = (await controlRequest(d.socket, 'GET', '/status')).body as { catalog: { catalog?: { useCounts?: { key: string; count: number }[] }; useCounts?: { key: string; count: number }[] } };
    const counts = uses.catalog.catalog?.useCounts ?? uses.catalog.useCounts ?? [];
    expect(counts.find((c) => c.key === layer.tocDigest)?.count).toBe(1);
    expect(await asUser()).toEqual(['EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES']);
    await d.stop();
  });

  it('fuse.suid: true mounts without nosuid (a setuid-root binary of the layer runs as root); false and the default mount nosuid', async () => {
    for (const suid of [true, false, undefined]) {
      const flag = suid === undefined ? [] : ['--suid', String(suid)];
      const d = await startDaemon(`suid-${suid}`, [...flag, '--resolve-uids', String(uid)]);
      const opts = await mountOptions(d.mnt);
      expect(opts.flags.includes('nosuid')).toBe(suid !== true);
      expect(opts.flags).toContain('nodev');
      const bin = join(d.mnt, R, layer.tocDigest, 'diff', 'suid-id');
      const r = await cmd('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', bin, '-u']);
      expect({ code: r.code, euid: r.stdout.trim() }).toEqual({ code: 0, euid: suid === true ? '0' : String(uid) });
      await d.stop();
    }
  });
});
