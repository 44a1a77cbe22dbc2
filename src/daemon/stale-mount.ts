/**
 * A daemon killed without unmounting (kill -9, OOM, a crash before auto_unmount's helper could
 * act) leaves a FUSE mount whose every access fails with ENOTCONN — and with it every podman
 * command (als-contract docs/als-contract.md §2.1). Before mounting we look for such a mount (an entry for the
 * path in /proc/self/mountinfo, or ENOTCONN from stat) and lazily detach it. A mount that still
 * answers is only taken over if no lazy-als answers on the control socket (`isAlive`).
 */
import { spawn } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import type { Logger } from '../core/log.js';
import { DaemonError } from './errors.js';

/** Undo mountinfo's octal escapes (\040 for space, …). */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

async function mountEntry(path: string): Promise<{ fstype: string; source: string } | undefined> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  let found: { fstype: string; source: string } | undefined;
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 10 || unescapeMountPath(f[4]!) !== path) continue;
    const dash = f.indexOf('-');
    found = { fstype: f[dash + 1] ?? '', source: f[dash + 2] ?? '' }; // the last entry is the visible one
  }
  return found;
}

function runCommand(cmd: string, args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', (e) => resolve({ code: -1, stderr: e.message }));
    p.on('close', (code) => resolve({ code, stderr: stderr.trim() }));
  });
}

export type StaleResult = 'none' | 'cleared';

export async function clearStaleMount(
  path: string,
  logger: Logger,
  isAlive: () => Promise<boolean> = async () => false,
): Promise<StaleResult> {
  let dead = false;
  try {
    await stat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') dead = true;
    else if (code !== 'ENOENT') throw e;
  }
  const entry = await mountEntry(path);
  if (!dead && !entry) return 'none';
  if (!dead && entry) {
    if (await isAlive()) {
      throw new DaemonError('MOUNT_BUSY', `${path} is already served by a running lazy-als (${entry.fstype} ${entry.source})`);
    }
    if (!entry.fstype.startsWith('fuse')) {
      throw new DaemonError('STALE_MOUNT', `${path} has a ${entry.fstype} mount on it; refusing to unmount what is not ours`);
    }
  }
  logger.warn('daemon.stale_mount', { mountpoint: path, dead, fstype: entry?.fstype });
  // fusermount3 for FUSE mounts we own; umount -l as the fallback (root).
  for (const [cmd, args] of [['fusermount3', ['-uz', path]], ['fusermount', ['-uz', path]], ['umount', ['-l', path]]] as const) {
    const r = await runCommand(cmd, args);
    if (r.code === 0 && !(await mountEntry(path))) {
      logger.info('daemon.stale_mount_cleared', { mountpoint: path, by: cmd });
      return 'cleared';
    }
    logger.debug('daemon.unmount_attempt_failed', { cmd, code: r.code, stderr: r.stderr });
  }
  throw new DaemonError('STALE_MOUNT', `could not clear the stale mount on ${path}; run: umount -l ${path}`);
}
