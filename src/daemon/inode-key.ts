/**
 * The secret that keys the mount's control inode numbers (fuse/inodes.ts): kept in the state dir
 * (0600), so that `<ref>/<key>/{info,blob}` keep their numbers across restarts (a restarted store
 * serves the same paths with the same inodes) while no other user can predict them (and so cannot
 * choose two paths whose numbers clash).
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { privateDir, writeFileAtomic } from '../cache/atomic-file.js';

const KEY_BYTES = 16;

/** `<stateDir>/metadata/control-inode.key`, created with a fresh random key when missing or malformed. */
export async function controlInodeKey(stateDir: string): Promise<Buffer> {
  const file = join(stateDir, 'metadata', 'control-inode.key');
  const tmpDir = join(stateDir, 'tmp', 'metadata'); // the metadata store's staging dir
  const existing = await readFile(file).catch(() => undefined);
  if (existing?.length === KEY_BYTES) return existing;
  const key = randomBytes(KEY_BYTES);
  await privateDir(tmpDir);
  await writeFileAtomic(file, key, { tmpDir, durable: true });
  return key;
}
