/** Temp state dirs and a real tiny tmpfs (for real ENOSPC), all removed by the caller's afterEach. */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function tempDir(prefix = 'lazy-als-cache-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Mount a tmpfs of `size` (e.g. "64k") at a new dir; needs root. Returns undefined if not possible. */
export async function tinyTmpfs(size = '64k'): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const dir = await tempDir('lazy-als-tmpfs-');
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
    return dir;
  } catch {
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
}

export async function unmount(dir: string): Promise<void> {
  await run('umount', [dir]).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}
