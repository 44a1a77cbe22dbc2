/**
 * Root filesystems to turn into image layers.
 *
 * - `debianRootfs()`: a real `debootstrap --variant=minbase bookworm` tree (~250 MB, ~9k entries:
 *   device nodes, setuid files, hardlinks, symlinks, deep paths) built once per machine and kept
 *   under /var/lib/lazy-als-test. Tests must treat it as read-only.
 * - `busyboxRootfs(dir)`: a tiny tree from busybox-static for fast tests.
 *
 * The Debian build is idempotent and safe against interruption and concurrency: it happens in
 * `<dir>.partial` and is renamed to `<dir>` only when complete; the marker `<dir>.ready` sits
 * beside the tree (not inside, where it would become part of the layer); `<dir>.lock` (holding
 * the builder's pid, stale when that pid is dead) serializes test workers.
 */
import { existsSync } from 'node:fs';
import { chmod, chown, copyFile, link, lstat, mkdir, open, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { mountsUnder, spawnCollect } from './podman.js';

export const DEBIAN_ROOTFS_DIR = process.env['LAZY_ALS_ROOTFS'] ?? '/var/lib/lazy-als-test/rootfs-minbase';
const SUITE = 'bookworm';

/** The mirror this machine's apt uses (first `URIs:` of debian.sources, else sources.list). */
export async function debianMirror(): Promise<string> {
  try {
    const s = await readFile('/etc/apt/sources.list.d/debian.sources', 'utf8');
    const m = /^URIs:\s*(\S+)/m.exec(s);
    if (m?.[1]) return m[1];
  } catch {
    /* fall through */
  }
  const s = await readFile('/etc/apt/sources.list', 'utf8').catch(() => '');
  const m = /^deb\s+(?:\[[^\]]*\]\s+)?(https?:\S+)/m.exec(s);
  if (m?.[1]) return m[1];
  throw new Error('no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list');
}

/** Path of the cached bookworm minbase rootfs, building it first if needed (~30 s, once). */
export async function debianRootfs(): Promise<string> {
  const dir = DEBIAN_ROOTFS_DIR;
  const marker = `${dir}.ready`;
  if (existsSync(marker)) return dir;
  await mkdir(dirname(dir), { recursive: true });
  const release = await acquireLock(`${dir}.lock`);
  try {
    if (existsSync(marker)) return dir; // built by a concurrent worker meanwhile
    const partial = `${dir}.partial`;
    for (const d of [dir, partial]) {
      // half-made from an interrupted run; our debootstrap ran in a private namespace, so a mount
      // below it would be someone else's: refuse instead of deleting through it
      const m = await mountsUnder(d);
      if (m.length > 0) throw new Error(`mounted under ${d}: ${m.join(', ')} (run scripts/teardown.sh)`);
      await rm(d, { recursive: true, force: true });
    }
    const mirror = await debianMirror();
    const t0 = Date.now();
    // debootstrap mounts /proc and /sys in the target: keep them in a throw-away namespace
    const r = await spawnCollect(
      ['unshare', '-m', '--propagation', 'slave', 'debootstrap', '--variant=minbase', SUITE, partial, mirror],
      { timeoutMs: 900_000 },
    );
    if (r.code !== 0) {
      throw new Error(`debootstrap ${SUITE} failed (${r.code}):\n${(r.stdout + r.stderr).slice(-3000)}`);
    }
    // apt lists and the package cache are large, vary from run to run and are no part of a rootfs
    await rm(join(partial, 'var/cache/apt/archives'), { recursive: true, force: true });
    await mkdir(join(partial, 'var/cache/apt/archives/partial'), { recursive: true });
    await rename(partial, dir);
    await writeFile(marker, `${SUITE} ${mirror} built in ${Date.now() - t0} ms\n`);
    return dir;
  } finally {
    await release();
  }
}

export interface BusyboxRootfsOptions {
  /** Applets to link in /bin; default: every applet busybox lists. */
  applets?: readonly string[];
}

/** Creates a small rootfs in `dir` (created if missing): /bin/busybox (static) + applet symlinks,
 *  /etc/passwd, /etc/group, and the usual empty dirs. Returns `dir`. */
export async function busyboxRootfs(dir: string, opts: BusyboxRootfsOptions = {}): Promise<string> {
  const bb = '/bin/busybox';
  if (!existsSync(bb)) throw new Error('busybox-static missing (scripts/setup.sh installs it)');
  let applets = opts.applets;
  if (applets === undefined) {
    const r = await spawnCollect([bb, '--list']);
    if (r.code !== 0) throw new Error(`busybox --list: ${r.stderr}`);
    applets = r.stdout.split('\n').filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox');
  }
  for (const d of ['bin', 'etc', 'root', 'proc', 'sys', 'dev', 'tmp', 'var/tmp']) {
    await mkdir(join(dir, d), { recursive: true });
  }
  await chmod(join(dir, 'tmp'), 0o1777);
  await chmod(join(dir, 'var/tmp'), 0o1777);
  await chmod(join(dir, 'root'), 0o700);
  await copyFile(bb, join(dir, 'bin/busybox'));
  await chmod(join(dir, 'bin/busybox'), 0o755);
  for (const a of applets) {
    const p = join(dir, 'bin', a);
    if (!(await lstat(p).catch(() => undefined))) await symlink('busybox', p);
  }
  await writeFile(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  await writeFile(join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  return dir;
}

/** Exclusive lock file holding our pid; a lock whose pid is dead is stale and taken over. */
async function acquireLock(path: string, timeoutMs = 1_200_000): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => rm(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const text = (await readFile(path, 'utf8').catch(() => '')).trim();
    const pid = Number(text);
    // an empty lock is one being written right now, unless it is old
    const age = Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? 0);
    if ((text === '' && age > 10_000) || (text !== '' && (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)))) {
      await rm(path, { force: true }); // stale (owner died, or it was caught between open and write)
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for lock ${path} (pid ${pid})`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What the feature image contains (paths relative to the rootfs, no leading slash). */
export const FEATURE_PATHS = {
  /** layer 0 (ADD of a tar crafted here) */
  base: 'etc/base.txt',
  capability: 'cap/ping', // security.capability = cap_net_raw+ep
  userXattr: 'xattr/file', // user.lazy-als = "hello"
  hardlinkTarget: 'links/target.txt',
  hardlink: 'links/hard.txt',
  relSymlink: 'links/sym', // -> target.txt
  absSymlink: 'links/abs', // -> /etc/base.txt
  danglingSymlink: 'links/dangling', // -> nowhere
  unicode: 'names/ünïcødé-ファイル.txt',
  longName: `names/${'n'.repeat(200)}.txt`,
  longPath: `names/${Array.from({ length: 8 }, (_, i) => `deep-directory-${i}`).join('/')}/file.txt`,
  setuid: 'modes/setuid', // 4755
  private: 'modes/private', // 0600
  owned: 'modes/owned', // uid 1000 gid 1000
  sticky: 'modes/sticky', // dir 1777
  empty: 'modes/empty',
  fifo: 'special/fifo',
  charDevice: 'special/null', // c 1 3
  big: 'big/random.bin', // 3 MiB, pseudo-random (several zstd:chunked chunks)
  /** layer 1 (RUN) */
  deleted: 'etc/deleted.txt', // whiteout: char 0:0 etc/deleted.txt in layer 1
  deletedDir: 'gone', // whiteout of a whole directory
  opaqueDir: 'd', // rm -rf /d && mkdir /d: trusted.overlay.opaque=y in layer 1; d/old.txt hidden
  opaqueNew: 'd/new.txt',
  opaqueOld: 'd/old.txt',
  modified: 'etc/base.txt', // rewritten in layer 1
  runHardlinkTarget: 'run1/a.txt',
  runHardlink: 'run1/b.txt',
  runSymlink: 'run1/sym', // -> /etc/base.txt
  /** layer 2 (COPY) */
  copied: 'etc/layer2.txt',
} as const;

async function run(argv: string[]): Promise<void> {
  const r = await spawnCollect(argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
}

/** Deterministic pseudo-random bytes (xorshift32), incompressible enough to need many chunks. */
function pseudoRandom(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b.writeUInt32LE(x, Math.min(i, size - 4));
  }
  return b;
}

/**
 * Busybox rootfs plus every kind of entry a layer can hold (see FEATURE_PATHS): capability and
 * user xattrs, hardlinks, symlinks, unicode / long names and paths, setuid, sticky, foreign owner,
 * fifo, char device, a 3 MiB pseudo-random file. Used as layer 0 of the feature image.
 */
export async function featureRootfs(dir: string): Promise<string> {
  const P = FEATURE_PATHS;
  await busyboxRootfs(dir);
  const file = async (rel: string, content: string | Buffer, mode = 0o644): Promise<string> => {
    const p = join(dir, rel);
    await mkdir(join(p, '..'), { recursive: true });
    await writeFile(p, content);
    await chmod(p, mode);
    return p;
  };
  await file(P.base, 'hello from base layer\n');
  await file(P.deleted, 'deleted by layer 1 (whiteout)\n');
  await file(`${P.deletedDir}/inside.txt`, 'whole dir deleted by layer 1\n');
  await file(P.opaqueOld, 'hidden by the opaque dir of layer 1\n');
  const cap = await file(P.capability, await readFile('/bin/busybox'), 0o755);
  await run(['setcap', 'cap_net_raw+ep', cap]);
  const xf = await file(P.userXattr, 'has a user xattr\n');
  await run(['setfattr', '-n', 'user.lazy-als', '-v', 'hello', xf]);
  const target = await file(P.hardlinkTarget, 'hardlink target\n');
  await link(target, join(dir, P.hardlink));
  await symlink('target.txt', join(dir, P.relSymlink));
  await symlink('/etc/base.txt', join(dir, P.absSymlink));
  await symlink('does-not-exist', join(dir, P.danglingSymlink));
  await file(P.unicode, 'unicode name\n');
  await file(P.longName, 'long name\n');
  await file(P.longPath, 'long path\n');
  await file(P.setuid, '#!/bin/sh\n', 0o4755);
  await chmod(join(dir, P.setuid), 0o4755); // chmod after write: writeFile's mode is masked by umask
  await file(P.private, 'secret\n', 0o600);
  const owned = await file(P.owned, 'owned by 1000\n');
  await chown(owned, 1000, 1000);
  await mkdir(join(dir, P.sticky), { recursive: true });
  await chmod(join(dir, P.sticky), 0o1777);
  await file(P.empty, '');
  await mkdir(join(dir, 'special'), { recursive: true });
  await run(['mkfifo', '-m', '0644', join(dir, P.fifo)]);
  await run(['mknod', '-m', '0666', join(dir, P.charDevice), 'c', '1', '3']);
  await file(P.big, pseudoRandom(3 * 1024 * 1024, 0x1a2b3c4d));
  return dir;
}
