/**
 * Crash-safe file replacement: write a uniquely named temp file in a temp directory on the same
 * filesystem, fsync it, rename it over the target, and (when `durable`) fsync the target's directory
 * so the rename itself survives a power loss. Readers therefore see either the old file, the new file
 * or nothing — never a torn one. Any failure removes the temp file; ENOSPC/EDQUOT become
 * CACHE_NO_SPACE so callers can keep serving from memory.
 *
 * Cached content may come from files other users must not read (a 0600 file of a layer), so every
 * file is created 0600 and every directory 0700, whatever the umask; directories that already
 * exist are chmod'ed (privateDir).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { toCacheError } from './errors.js';

export interface AtomicWriteOptions {
  /** Directory for the temp file; must be on the same filesystem as `target`. */
  readonly tmpDir: string;
  /** fsync the file before rename (default true). */
  readonly fsync?: boolean;
  /** also fsync the target directory after rename (default false; metadata sets it). */
  readonly durable?: boolean;
}

/** Modes of everything the cache and state stores create (the umask can only remove bits). */
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/** Create `dir` (and missing parents) 0700, and make an existing one 0700 too. */
export async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
  await chmod(dir, DIR_MODE);
}

function tempName(tmpDir: string, prefix = 'w'): string {
  return join(tmpDir, `${prefix}-${process.pid}-${randomBytes(8).toString('hex')}.tmp`);
}

/** Write `chunks` (in order) to a temp file; returns its path. Removes the file on failure. */
export async function writeTemp(tmpDir: string, chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, doFsync = true): Promise<string> {
  const tmp = tempName(tmpDir);
  let fh;
  try {
    fh = await open(tmp, 'wx', FILE_MODE);
    for await (const c of chunks) {
      let done = 0;
      while (done < c.length) {
        const { bytesWritten } = await fh.write(c, done, c.length - done);
        done += bytesWritten;
      }
    }
    if (doFsync) await fh.sync();
    await fh.close();
    fh = undefined;
    return tmp;
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw toCacheError(e, `writing ${tmp}`);
  }
}

/** Move a finished temp file into place (creating the target directory), optionally durably. */
export async function commitTemp(tmp: string, target: string, durable = false): Promise<void> {
  try {
    await mkdir(dirname(target), { recursive: true, mode: DIR_MODE });
    await rename(tmp, target);
    if (durable) await fsyncDir(dirname(target));
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw toCacheError(e, `committing ${target}`);
  }
}

export async function writeFileAtomic(target: string, data: Uint8Array, opts: AtomicWriteOptions): Promise<void> {
  const tmp = await writeTemp(opts.tmpDir, [data], opts.fsync ?? true);
  await commitTemp(tmp, target, opts.durable ?? false);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
