/**
 * POSIX ACLs in a layer are enforced through the store as on a normal unpack (audit H3), with two real
 * users made by this test (useradd; userdel afterwards), a real root daemon, FUSE mount and registry.
 *
 * The layer is written by Python tarfile (an independent writer) and carries each ACL twice: as
 * `SCHILY.xattr.system.posix_acl_access` (the raw v2 xattr c/storage sets on unpack and the store
 * serves) and as `SCHILY.acl.access` (the text form GNU tar's `--acls` applies). The reference is
 * GNU `tar -xp --acls` as root; every read of every user through the store must equal the same read on
 * that copy:
 *  - `grant` 0640 root:root, ACL `user:<A>:r--` → A reads it although the mode bits alone refuse;
 *  - `deny`  0644 root:root, ACL `user:<B>:---` → B is refused although the mode bits alone allow;
 *  - `plain` 0644, no ACL → both read it (the ACL path does not break plain files).
 * The ACL xattrs are served byte-exact (getxattr equals the extracted copy's).
 * fuse-native (libfuse 2) cannot ask the kernel for ACL enforcement: it refuses such layers (ENOENT,
 * a warn line naming the layer), so podman pulls them itself, and still serves layers without ACLs.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, type ProbeOp, type ProbeResult } from '../fuse/helpers/mount-fixture.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushImage } from '../helpers/registry-push.js';
import { cmd } from './support/commands.js';
import { leakedMounts, RealDaemon, writeRegistriesConf } from './support/daemon.js';
import { refElem } from './support/images.js';

const USERS = [`lza${randomBytes(3).toString('hex')}`, `lzb${randomBytes(3).toString('hex')}`];
const ids: { uid: number; gid: number }[] = [];
const made: string[] = [];
let reg: RegistryHandle;
let dir: string;
let extracted: string;
let blobDigest: string;
let R: string;
let daemon: RealDaemon | undefined;
const FILES = ['acl/grant', 'acl/deny', 'acl/plain'];

/** Python tarfile: each ACL as the raw xattr (what podman unpacks) and as GNU tar's text form. */
const WRITER = `
import io, struct, sys, tarfile
a, b = int(sys.argv[2]), int(sys.argv[3])
U = 0xffffffff
def acl(es):
    return struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in es)
tf = tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT, encoding='utf-8', errors='surrogateescape')
def add(name, mode, data=b'', kind=tarfile.REGTYPE, raw=None, text=None):
    ti = tarfile.TarInfo(name); ti.type = kind; ti.mode = mode; ti.mtime = 1704067200; ti.uname = ti.gname = ''
    if raw is not None:
        ti.pax_headers = {'SCHILY.xattr.system.posix_acl_access': raw.decode('utf-8', 'surrogateescape'), 'SCHILY.acl.access': text}
    ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
add('acl', 0o755, kind=tarfile.DIRTYPE)
add('acl/grant', 0o640, b'granted by ACL\\n', raw=acl([(1, 6, U), (2, 4, a), (4, 0, U), (0x10, 4, U), (0x20, 0, U)]),
    text='user::rw-,user:%d:r--,group::---,mask::r--,other::---' % a)
add('acl/deny', 0o644, b'denied by ACL\\n', raw=acl([(1, 6, U), (2, 0, b), (4, 4, U), (0x10, 4, U), (0x20, 4, U)]),
    text='user::rw-,user:%d:---,group::r--,mask::r--,other::r--' % b)
add('acl/plain', 0o644, b'no ACL\\n')
tf.close()
`;

async function probeAs(who: { uid: number; gid: number }, ops: readonly ProbeOp[]): Promise<ProbeResult[]> {
  const r = await cmd('setpriv', [`--reuid=${who.uid}`, `--regid=${who.gid}`, '--clear-groups', process.execPath, PROBE, JSON.stringify(ops)]);
  if (r.code !== 0) throw new Error(`probe as ${who.uid} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ProbeResult[];
}

/** Each user's read of each file under `base`: the bytes' sha256 or the errno. */
async function reads(base: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [i, who] of ids.entries()) {
    const res = await probeAs(who, FILES.map((p) => ({ op: 'read', path: join(base, p) })));
    FILES.forEach((p, j) => {
      const r = res[j]!;
      out[`${i === 0 ? 'A' : 'B'} ${p}`] = r.ok ? r.value.sha256 : r.code;
    });
  }
  return out;
}

async function aclXattr(path: string): Promise<string> {
  const r = await cmd('python3', ['-c', 'import os,sys;print(os.getxattr(sys.argv[1],"system.posix_acl_access").hex())', path]);
  return r.code === 0 ? r.stdout.trim() : `error: ${r.stderr.trim().split('\n').pop()}`;
}

beforeAll(async () => {
  for (const u of USERS) {
    const add = await cmd('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', u]);
    if (add.code !== 0) throw new Error(`useradd ${u}: ${add.stderr}`);
    made.push(u);
    ids.push({ uid: Number((await cmd('id', ['-u', u])).stdout.trim()), gid: Number((await cmd('id', ['-g', u])).stdout.trim()) });
  }
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-it-acl-'));
  await chmod(dir, 0o755);
  const tarPath = join(dir, 'layer.tar');
  await writeFile(join(dir, 'w.py'), WRITER);
  const w = await cmd('python3', [join(dir, 'w.py'), tarPath, String(ids[0]!.uid), String(ids[1]!.uid)]);
  if (w.code !== 0) throw new Error(`writer: ${w.stderr}`);
  extracted = join(dir, 'extracted');
  await mkdir(extracted, { mode: 0o755 });
  const x = await cmd('tar', ['-xpf', tarPath, '--acls', '--same-owner', '--numeric-owner', '-C', extracted]);
  if (x.code !== 0) throw new Error(`tar -x: ${x.stderr}`);
  const tar = await readFile(tarPath);
  const gz = gzipSync(tar);
  blobDigest = `sha256:${createHash('sha256').update(gz).digest('hex')}`;
  reg = await startRegistry();
  await pushImage(reg, 'it/acl', 'v1', { layers: [{ bytes: gz, diffId: `sha256:${createHash('sha256').update(tar).digest('hex')}` }] });
  R = refElem(`${reg.host}/it/acl:v1`);
});

afterAll(async () => {
  if (daemon) {
    await daemon.kill9({ helpers: true }).catch(() => undefined);
    await daemon.forceUnmount().catch(() => undefined);
  }
  await reg?.stop();
  for (const u of made) await cmd('userdel', [u]);
  if (dir) {
    expect(await leakedMounts([dir])).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  }
});

async function startDaemon(backend: 'native' | 'fuse-native'): Promise<RealDaemon> {
  const conf = await writeRegistriesConf(join(dir, `${backend}.conf`), [reg.host]);
  await mkdir(join(dir, backend), { recursive: true, mode: 0o755 });
  // fuse-native enforces resolve_uids through dir modes: one non-root uid at most (B's)
  const uids = backend === 'native' ? ids.map((i) => i.uid) : [ids[1]!.uid];
  const extraArgs = ['--backend', backend, '--resolve-uids', uids.join(',')];
  daemon = await RealDaemon.start({ dir: join(dir, backend), registriesConf: conf, extraArgs });
  return daemon;
}

describe('POSIX ACLs in a layer', () => {
  it('native backend: every non-root read through the store equals the same read on a `tar -xp --acls` copy', async () => {
    const d = await startDaemon('native');
    const base = join(d.mnt, R, blobDigest, 'diff');
    const theirs = await reads(extracted);
    // the reference is not vacuous: the ACL grants what the mode refuses and refuses what it grants
    expect(theirs['A acl/grant']).toMatch(/^[0-9a-f]{64}$/);
    expect(theirs['B acl/deny']).toBe('EACCES');
    expect(theirs['B acl/grant']).toBe('EACCES');
    expect(theirs['A acl/deny']).toMatch(/^[0-9a-f]{64}$/);
    expect(await reads(base)).toEqual(theirs);
    for (const f of ['acl/grant', 'acl/deny']) expect(await aclXattr(join(base, f))).toBe(await aclXattr(join(extracted, f)));
    expect(await aclXattr(join(base, 'acl/plain'))).toMatch(/^error: .*No data available/);
    await d.stop();
    daemon = undefined;
  });

  it('fuse-native backend: the layer is refused with a warn line naming it (the kernel could not enforce its ACLs)', async () => {
    const d = await startDaemon('fuse-native');
    const st = await cmd('stat', [join(d.mnt, R, blobDigest, 'diff', 'acl', 'deny')]);
    expect(st.code).not.toBe(0);
    expect(st.stderr).toMatch(/No such file or directory/);
    const warns = d.events().filter((e) => e['event'] === 'fuse.layer_refused_acl');
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ level: 'warn', layer: blobDigest });
    // B may not read `deny` here either: nothing of the layer is served
    const r = await probeAs(ids[1]!, [{ op: 'read', path: join(d.mnt, R, blobDigest, 'diff', 'acl', 'deny') }]);
    expect(r[0]!.ok ? 'read' : r[0]!.code).toBe('ENOENT');
    await d.stop();
    daemon = undefined;
  });
});
