/**
 * A real unprivileged user for rootless tests, made and removed by the test.
 *
 * create() runs `useradd -m` (Debian's useradd also gives the user /etc/subuid and /etc/subgid
 * ranges; checked), makes /run/user/<uid> (0700, what pam_systemd/logind would make at login:
 * this VM runs no logind, so there is no `loginctl enable-linger` here) and, when the user cannot
 * open /dev/fuse (this VM has no udev: /dev/fuse is 0600, where Debian's udev rule makes it 0666),
 * grants the user read/write on it with one POSIX ACL entry. remove() kills the user's processes
 * by pid, checks nothing is left mounted under the home, deletes user, home and runtime dir, and
 * puts /dev/fuse's ACL back as it was.
 *
 * Commands run as the user through `as(argv)`: a private mount namespace (unshare -m, so mounts
 * podman makes vanish with it; the hybrid-cgroup fix of podman-env.sh), then setpriv to the user
 * with a login-like environment. `as5(argv)` does the same inside the podman 5 chroot, entered with
 * pivot_root rather than chroot(2): the kernel refuses to create a user namespace for a chrooted
 * process ("cannot clone: Operation not permitted") and rootless podman needs one. The chroot sees
 * the host's /etc/passwd, group, subuid and subgid, the user's home and runtime dir.
 */
import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { CHROOT_DIR, mountsUnder, spawnCollect, type RunOptions, type RunResult } from './podman.js';

const PATH = '/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin';

/** python3: the ACL is an xattr (system.posix_acl_access) and Node has no xattr calls. */
const ACL_PY = `
import os, struct, sys
path, op = sys.argv[1], sys.argv[2]
name = 'system.posix_acl_access'
if op == 'get':
    try: sys.stdout.write(os.getxattr(path, name).hex())
    except OSError: pass
elif op == 'set':
    os.setxattr(path, name, bytes.fromhex(sys.argv[3]))
elif op == 'remove':
    # removing an ACL leaves the mask in the group bits: put the mode back as it was
    try: os.removexattr(path, name)
    except OSError: pass
    os.chmod(path, int(sys.argv[3], 8))
elif op == 'mode':
    sys.stdout.write(oct(os.stat(path).st_mode & 0o7777)[2:])
elif op == 'grant':
    # owner rw, one named user rw, owning group and others unchanged (from the mode), mask rw
    st = os.stat(path); uid = int(sys.argv[3])
    e = lambda tag, perm, i=0xffffffff: struct.pack('<HHI', tag, perm, i)
    acl = struct.pack('<I', 2) + e(1, (st.st_mode >> 6) & 7) + e(2, 6, uid) + e(4, (st.st_mode >> 3) & 7) + e(0x10, 6) + e(0x20, st.st_mode & 7)
    os.setxattr(path, name, acl)
`;

async function run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
  const r = await spawnCollect(argv, opts);
  if (opts?.check && r.code !== 0) throw new Error(`\`${argv.join(' ')}\` exited ${r.code}: ${r.stderr.slice(-2000)}`);
  return r;
}

export interface RootlessUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
  readonly runtimeDir: string;
  /** The user's first /etc/subuid range start (podman maps container uid 1 there). */
  readonly subuidStart: number;
  readonly subgidStart: number;
  /** argv as the user on the host (private mount namespace). */
  as(argv: readonly string[], opts?: RunOptions & { env?: Record<string, string> }): Promise<RunResult>;
  /** argv as the user inside the podman 5 chroot. */
  as5(argv: readonly string[], opts?: RunOptions & { env?: Record<string, string> }): Promise<RunResult>;
  /** Live pids owned by the user. */
  pids(): Promise<number[]>;
  /** SIGKILL every process of the user except `keep` and their descendants (fusermount3's
   *  auto_unmount watchdog of a daemon), wait until they are gone. */
  killAll(keep?: readonly number[]): Promise<void>;
  remove(): Promise<void>;
}

/** Pids whose real uid is `uid`, minus `keep` and every descendant of a kept pid. */
async function pidsOf(uid: number, keep: readonly number[] = []): Promise<number[]> {
  const parent = new Map<number, number>();
  const mine: number[] = [];
  for (const n of await readdir('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const st = await readFile(`/proc/${n}/status`, 'utf8');
      parent.set(Number(n), Number(/^PPid:\s+(\d+)/m.exec(st)?.[1] ?? 0));
      const m = /^Uid:\s+(\d+)/m.exec(st);
      if (m && Number(m[1]) === uid) mine.push(Number(n));
    } catch {
      /* exited */
    }
  }
  const kept = (p: number): boolean => {
    for (let q = p, i = 0; q > 1 && i < 64; q = parent.get(q) ?? 0, i++) if (keep.includes(q)) return true;
    return false;
  };
  return mine.filter((p) => !kept(p));
}

export async function createRootlessUser(prefix = 'lzals'): Promise<RootlessUser> {
  const name = `${prefix}${randomBytes(3).toString('hex')}`;
  await run(['useradd', '-m', '-s', '/bin/sh', name], { check: true });
  let removed = false;
  let aclBefore: string | undefined;
  let modeBefore = '';
  const passwd = (await run(['getent', 'passwd', name], { check: true })).stdout.trim().split(':');
  const uid = Number(passwd[2]);
  const gid = Number(passwd[3]);
  const home = passwd[5]!;
  const runtimeDir = `/run/user/${uid}`;
  const firstRange = async (file: string): Promise<number> => {
    const line = (await readFile(file, 'utf8')).split('\n').find((l) => l.startsWith(`${name}:`));
    if (!line) throw new Error(`useradd gave ${name} no range in ${file} (SUB_UID_COUNT in /etc/login.defs?)`);
    return Number(line.split(':')[1]);
  };

  const env = (extra: Record<string, string> = {}): string[] => [
    `HOME=${home}`, `USER=${name}`, `LOGNAME=${name}`, `XDG_RUNTIME_DIR=${runtimeDir}`, `PATH=${PATH}`,
    ...Object.entries(extra).map(([k, v]) => `${k}=${v}`),
  ];
  const setpriv = ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--init-groups'];
  // bash -c SCRIPT <uid as $0> setpriv … env -i … argv
  const hostScript = 'if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified; fi; cd /; exec "$@"';
  const chrootScript = [
    'set -e',
    `R=${CHROOT_DIR}`,
    'if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified; fi',
    'mount --bind "$R" "$R"',
    'mount --rbind /proc "$R/proc"; mount --rbind /sys "$R/sys"; mount --rbind /dev "$R/dev"',
    'if mountpoint -q "$R/sys/fs/cgroup/unified"; then umount -l "$R/sys/fs/cgroup/unified"; fi',
    'mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"',
    'for f in passwd group subuid subgid; do mount --bind "/etc/$f" "$R/etc/$f"; done',
    `mkdir -p "$R${home}" "$R${runtimeDir}"`,
    `mount --rbind ${home} "$R${home}"`,
    `mount --rbind ${runtimeDir} "$R${runtimeDir}"`,
    'mkdir -p "$R/.oldroot"; cd "$R"; pivot_root . .oldroot; umount -l /.oldroot; cd /',
    'exec "$@"',
  ].join('\n');

  const user: RootlessUser = {
    name,
    uid,
    gid,
    home,
    runtimeDir,
    subuidStart: await firstRange('/etc/subuid'),
    subgidStart: await firstRange('/etc/subgid'),
    as: (argv, o) => run(['unshare', '-m', '--propagation', 'slave', 'bash', '-c', hostScript, String(uid), ...setpriv, 'env', '-i', ...env(o?.env), ...argv], o),
    as5: (argv, o) => run(['unshare', '-m', '--propagation', 'slave', 'bash', '-c', chrootScript, String(uid), ...setpriv, 'env', '-i', ...env(o?.env), ...argv], o),
    pids: () => pidsOf(uid),
    async killAll(keep = []) {
      for (let round = 0; round < 100; round++) {
        const left = await pidsOf(uid, keep);
        if (left.length === 0) return;
        for (const p of left) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`processes of ${name} survive SIGKILL: ${(await pidsOf(uid)).join(' ')}`);
    },
    async remove() {
      if (removed) return;
      removed = true;
      await user.killAll();
      const left = await mountsUnder(home);
      for (const m of left.reverse()) await run(['umount', '-l', m]);
      if (aclBefore !== undefined) {
        await run(aclBefore === '' ? ['python3', '-c', ACL_PY, '/dev/fuse', 'remove', modeBefore] : ['python3', '-c', ACL_PY, '/dev/fuse', 'set', aclBefore], { check: true });
      }
      await run(['userdel', '-r', name]);
      await run(['rm', '-rf', '--one-file-system', '--', runtimeDir, home]);
      if (left.length > 0) throw new Error(`left mounted under ${home}: ${left.join(', ')}`);
    },
  };
  try {
    await run(['install', '-d', '-m', '0700', '-o', String(uid), '-g', String(gid), runtimeDir], { check: true });
    const canOpen = await run(['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--init-groups', 'sh', '-c', 'exec 3<>/dev/fuse']);
    if (canOpen.code !== 0) {
      modeBefore = (await run(['python3', '-c', ACL_PY, '/dev/fuse', 'mode'], { check: true })).stdout.trim();
      aclBefore = (await run(['python3', '-c', ACL_PY, '/dev/fuse', 'get'], { check: true })).stdout.trim();
      await run(['python3', '-c', ACL_PY, '/dev/fuse', 'grant', String(uid)], { check: true });
    }
  } catch (e) {
    await user.remove();
    throw e;
  }
  return user;
}
