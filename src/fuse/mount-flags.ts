/**
 * Per-mount flags of a FUSE mount, and clearing `nosuid` after mounting. Both backends mount through
 * fusermount (auto_unmount needs it), and fusermount mounts nosuid unless told `suid`, which neither
 * libfuse 2 nor libfuse 3 passes on: so `fuse.suid = true` is applied by a remount.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { Logger } from '../core/log.js';
import { FuseError } from './errors.js';

/** The mount's per-mount flags as /proc/self/mountinfo shows them (undefined: not mounted). */
async function mountFlags(mountpoint: string): Promise<string[] | undefined> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  let found: string[] | undefined;
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const mp = (f[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === mountpoint) found = (f[5] ?? '').split(',');
  }
  return found;
}

/**
 * Clear `nosuid` after mounting (root only): `mount -i -o remount,suid` (-i: no mount.fuse helper,
 * which would try to run the fsname as a program). Per-mount flags only; the FUSE connection is
 * untouched.
 */
export async function remountSuid(mountpoint: string, logger: Logger): Promise<void> {
  const code = await new Promise<number>((resolve) => {
    const p = spawn('mount', ['-i', '-o', 'remount,suid', mountpoint], { stdio: 'ignore' });
    p.once('error', () => resolve(-1));
    p.once('exit', (c) => resolve(c ?? -1));
  });
  const flags = await mountFlags(mountpoint);
  if (code !== 0 || flags?.includes('nosuid')) {
    throw new FuseError(
      'FUSE_MOUNT',
      `could not clear nosuid on ${mountpoint} (mount -o remount,suid exited ${code}); set fuse.suid = false to run without setuid`,
      {},
    );
  }
  logger.debug('fuse.remounted_suid', { mountpoint });
}

