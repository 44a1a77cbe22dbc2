/**
 * Rootless podman with a store the user serves as themselves (issue 13, item 3). A REAL
 * unprivileged user made for this test (useradd, subuid/subgid ranges, /run/user/<uid>), running
 * `lazy-als serve` with no path options (state in $XDG_DATA_HOME, socket in $XDG_RUNTIME_DIR, mount
 * through fusermount3), wired by ~/.config/containers/storage.conf; REAL rootless podman 4.3.1
 * (host) and 5.4.2 (trixie chroot) pull and run an eStargz image through it: the registry's log
 * shows podman fetched no layer blob, and the container sees non-root owners, setuid/setgid bits
 * honoured, the file capability applied, the opaque dir (user.overlay.opaque under userxattr) and
 * whiteouts, and copy-up into a dir owned by a non-root uid. `--userns=keep-id` (an ID-mapped copy
 * of the layers) works too. The store's own view (as the user sees it) carries user.* xattrs and
 * the capability with the user as its root id, and no trusted.* names.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/daemon/control-socket.js';
import { blobGets, LAZY_ALS_AGENT, LogCursor, PODMAN_AGENT } from '../e2e/registry-log.js';
import { CLI, ensureBuilt, mountAt, servedLayers, useCount, waitUntil, type StoreStatus } from '../e2e/store.js';
import { CHROOT_DIR, podmanPrerequisites, spawnCollect, type RunResult } from '../helpers/podman.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { createRootlessUser, type RootlessUser } from '../helpers/rootless-user.js';
import { pushRootlessImage, RL, type RootlessImage } from './rootless-image.js';

let reg: RegistryHandle;
let img: RootlessImage;
let user: RootlessUser;
let daemon: ChildProcess | undefined;
let logPath: string;

const mountpointOf = (u: RootlessUser): string => join(u.home, '.local/share/lazy-als/store');
const socketOf = (u: RootlessUser): string => join(u.runtimeDir, 'lazy-als/control.sock');

async function status(): Promise<StoreStatus> {
  const r = await controlRequest(socketOf(user), 'GET', '/status');
  if (r.status !== 200) throw new Error(`status: HTTP ${r.status}`);
  return r.body as StoreStatus;
}

/** `lazy-als serve` as the user, in the host's mount namespace (as a user unit runs it), no path options. */
async function startDaemon(): Promise<void> {
  const fd = openSync(logPath, 'a');
  const env = [`HOME=${user.home}`, `USER=${user.name}`, `XDG_RUNTIME_DIR=${user.runtimeDir}`, 'PATH=/usr/bin:/bin'];
  if (process.env['LAZY_ALS_BACKEND']) env.push(`LAZY_ALS_BACKEND=${process.env['LAZY_ALS_BACKEND']}`);
  const c = spawn('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', 'env', '-i', ...env, process.execPath, CLI, 'serve', '--log-level', 'info'], {
    stdio: ['ignore', fd, fd],
    cwd: '/',
  });
  closeSync(fd);
  daemon = c;
  await waitUntil(
    async () => {
      if (c.exitCode !== null) throw new Error(`serve exited ${c.exitCode}:\n${readFileSync(logPath, 'utf8').slice(-3000)}`);
      if (mountAt(mountpointOf(user))?.fstype.startsWith('fuse') !== true) return false;
      return status().then(() => true, () => false);
    },
    () => `the user's lazy-als serve did not come up:\n${readFileSync(logPath, 'utf8').slice(-3000)}`,
  );
}

async function stopDaemon(): Promise<void> {
  const c = daemon;
  daemon = undefined;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  c.kill('SIGTERM');
  await new Promise((r) => c.once('exit', r));
  expect(mountAt(mountpointOf(user))).toBeUndefined();
}

function ok(r: RunResult, what: string): RunResult {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${r.stderr.slice(-3000)}\n${r.stdout.slice(-1000)}`);
  return r;
}

const kv = (text: string): Record<string, string> =>
  Object.fromEntries(text.split('\n').filter((l) => l.includes('=') && !l.startsWith('time=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

beforeAll(async () => {
  const missing = [...new Set([...podmanPrerequisites(4), ...podmanPrerequisites(5)])];
  if (!existsSync(`${CHROOT_DIR}/usr/bin/newuidmap`)) missing.push(`newuidmap in ${CHROOT_DIR} (bash test/e2e/setup-chroot.sh)`);
  if (missing.length > 0) throw new Error(`rootless prerequisites missing: ${missing.join(', ')}`);
  await ensureBuilt();
  reg = await startRegistry();
  img = await pushRootlessImage(reg);
  user = await createRootlessUser();
  logPath = join('/tmp', `lazy-als-ops-rootless-${user.name}.log`);
  const conf = join(user.home, '.config/containers');
  await mkdir(conf, { recursive: true });
  // The admin path for a user: storage.conf names the store; registries.conf is read by podman
  // and by the store alike; containers.conf only adapts podman to this VM (no systemd, no network).
  await writeFile(join(conf, 'storage.conf'), `[storage]\ndriver = "overlay"\n\n[storage.options]\nadditionallayerstores = ["${mountpointOf(user)}:ref"]\n`);
  await writeFile(join(conf, 'registries.conf'), `[[registry]]\nlocation = "${reg.host}"\ninsecure = true\n`);
  await writeFile(join(conf, 'containers.conf'), '[containers]\nnetns = "none"\n\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "crun"\n');
  ok(await spawnCollect(['chown', '-R', `${user.uid}:${user.gid}`, join(user.home, '.config')]), 'chown');
  await startDaemon();
}, 600_000);

afterAll(async () => {
  try {
    if (user) await stopDaemon();
  } finally {
    await user?.remove();
    await reg?.stop();
  }
}, 120_000);

describe('the store as the user serves it', () => {
  it('lives in the XDG dirs, mounted by the user through fusermount3, ids shown as podman maps them', async () => {
    const st = await status();
    expect(st.mountpoint).toBe(mountpointOf(user));
    expect((st as unknown as { stateDir: string }).stateDir).toBe(join(user.home, '.local/share/lazy-als'));
    const mi = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === mountpointOf(user))!;
    expect(mi).toContain(`user_id=${user.uid}`);
    expect(readFileSync(logPath, 'utf8')).toContain('mapped to subordinate ids');
  });
});

describe.each([4, 5] as const)('rootless podman %i', (version) => {
  const podman = (args: readonly string[], timeoutMs = 300_000): Promise<RunResult> =>
    (version === 4 ? user.as : user.as5)(['podman', ...args], { timeoutMs, env: { PODMAN_IGNORE_CGROUPSV1_WARNING: '1' } });
  const keys = (): string[] => img.layers.map((l) => (version === 4 ? l.digest : l.tocDigest));

  beforeAll(async () => {
    // a fresh podman state per generation (their storage databases differ): nothing of the
    // other one's pause process or storage is left
    await user.killAll(daemon?.pid !== undefined ? [daemon.pid] : []);
    ok(await spawnCollect(['rm', '-rf', '--one-file-system', join(user.home, '.local/share/containers'), join(user.runtimeDir, 'containers'), join(user.runtimeDir, 'libpod')]), 'rm');
  });

  it('pulls through the store: podman GETs no layer blob, the store serves every layer', async () => {
    const log = new LogCursor(reg.logPath);
    ok(await podman(['pull', '-q', img.ref]), 'podman pull');
    const entries = log.since();
    expect(blobGets(entries, { agent: PODMAN_AGENT }).filter((d) => img.layers.some((l) => l.digest === d))).toEqual([]);
    expect(blobGets(entries, { agent: LAZY_ALS_AGENT }).length).toBeGreaterThan(0);
    const served = servedLayers(await status()).filter((l) => keys().includes(l.key));
    expect(served.map((l) => l.keyKind)).toEqual(keys().map(() => (version === 4 ? 'blob' : 'toc')));
  });

  it('runs it as container root: owners, whiteouts, the opaque dir (user.overlay.opaque), copy-up', async () => {
    const script = [
      'echo "base=$(cat /etc/base.txt)"',
      'echo "opq=$(ls -A /opq | tr "\\n" ,)"',
      'if [ -e /etc/deleted.txt ]; then echo deleted=present; else echo deleted=absent; fi',
      `echo "owned=$(stat -c %u:%g:%a /${RL.owned.path})"`,
      `echo "ownedDir=$(stat -c %u:%g:%a /${RL.ownedDir.path})"`,
      `echo "high=$(stat -c %u:%g /${RL.high.path})"`,
      `echo "root=$(stat -c %u:%g /etc/base.txt)"`,
      `echo "suidMode=$(stat -c %a /${RL.setuid.path})"`,
      `echo "sgidMode=$(stat -c %a:%g /${RL.setgid.path})"`,
      'echo changed > /etc/base.txt && echo "copyup=$(cat /etc/base.txt)"',
    ].join('; ');
    const r = ok(await podman(['run', '--rm', img.ref, 'sh', '-c', script]), 'podman run');
    expect(kv(r.stdout)).toEqual({
      base: 'hello from base layer',
      opq: 'new.txt,',
      deleted: 'absent',
      owned: `${RL.owned.uid}:${RL.owned.gid}:${RL.owned.mode.toString(8)}`,
      ownedDir: `${RL.ownedDir.uid}:${RL.ownedDir.gid}:${RL.ownedDir.mode.toString(8)}`,
      high: `${RL.high.uid}:${RL.high.gid}`,
      root: '0:0',
      suidMode: '4755',
      sgidMode: `2755:${RL.setgid.gid}`,
      copyup: 'changed',
    });
  });

  it('as a non-root container user: setuid/setgid honoured, the file capability applied, its own files writable', async () => {
    const script = [
      `echo "suid=$(/${RL.setuid.path})"`,
      `echo "sgid=$(/${RL.setgid.path})"`,
      'echo "capped=$(/cap/busybox grep CapEff /proc/self/status | cut -f2)"',
      'echo "plain=$(grep CapEff /proc/self/status | cut -f2)"',
      `echo "owned=$(cat /${RL.owned.path})"`,
      `echo mine > /${RL.ownedDir.path}/new.txt && echo "write=$(stat -c %u /${RL.ownedDir.path}/new.txt)"`,
    ].join('; ');
    const r = ok(await podman(['run', '--rm', '--user', '1000:1000', img.ref, 'sh', '-c', script]), 'podman run --user');
    expect(kv(r.stdout)).toEqual({
      suid: 'euid=0 egid=1000',
      sgid: `euid=1000 egid=${RL.setgid.gid}`,
      capped: '0000000000000400',
      plain: '0000000000000000',
      owned: RL.owned.content.trim(),
      write: '1000',
    });
  });

  it('--userns=keep-id (podman makes an ID-mapped copy of the layers) works', async () => {
    const r = ok(await podman(['run', '--rm', '--userns=keep-id', img.ref, 'sh', '-c', 'echo "id=$(id -u)"; echo "base=$(cat /etc/base.txt)"; echo "opq=$(ls -A /opq | tr "\\n" ,)"']), 'podman run --userns=keep-id');
    expect(kv(r.stdout)).toEqual({ id: String(user.uid), base: 'hello from base layer', opq: 'new.txt,' });
  });

  it('rmi releases the layers in the store', async () => {
    ok(await podman(['rmi', '-f', img.ref]), 'podman rmi');
    const st = await status();
    for (const k of keys()) expect(useCount(st, img.ref, k)).toBe(0);
  });
});

describe("the store's own view, as the user sees it", () => {
  it('user.* xattrs as in the tar, the capability with the user as root id, no trusted.* names', async () => {
    const layer = join(mountpointOf(user), Buffer.from(img.ref).toString('base64'), img.layers[2]!.tocDigest, 'diff');
    const features = join(mountpointOf(user), Buffer.from(img.ref).toString('base64'), img.layers[1]!.tocDigest, 'diff');
    const x = ok(await user.as(['getfattr', '--absolute-names', '-n', RL.xattr.name, '--only-values', join(layer, RL.xattr.path)]), 'getfattr');
    expect(x.stdout).toBe(RL.xattr.value);
    // revision 3: magic 0x03000001 (effective), permitted = bit 10, root id = the user
    const cap = ok(await user.as(['getfattr', '--absolute-names', '-e', 'hex', '-n', 'security.capability', join(features, 'cap/busybox')]), 'getfattr cap');
    const rootid = Buffer.alloc(4);
    rootid.writeUInt32LE(user.uid);
    expect(cap.stdout).toContain(`security.capability=0x0100000300040000000000000000000000000000${rootid.toString('hex')}`);
    const names = ok(await user.as(['getfattr', '--absolute-names', '-m', '-', '-d', join(features, 'opq')]), 'getfattr opq');
    expect(names.stdout).toContain('user.overlay.opaque="y"');
    expect(names.stdout).not.toContain('trusted.');
    // ids as the host sees them: layer uid n ≥ 1 is the user's n-th subordinate id, 0 the user
    const st = ok(await user.as(['stat', '-c', '%u:%g', join(layer, RL.high.path), join(layer, RL.xattr.path)]), 'stat');
    expect(st.stdout.trim().split('\n')).toEqual([`${user.subuidStart + RL.high.uid - 1}:${user.subgidStart + RL.high.gid - 1}`, `${user.uid}:${user.gid}`]);
    // (and /home/app, 0750 owned by layer uid 1000, is closed to the user outside podman's namespace)
    expect((await user.as(['cat', join(layer, RL.owned.path)])).code).not.toBe(0);
  });
});
