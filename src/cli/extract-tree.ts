/**
 * Write a layer's verified overlay view into a directory, all-or-nothing.
 *
 * Everything is built in a work dir next to DIR (`.<name>.lazy-als-XXXXXX`, same filesystem) and
 * renamed onto DIR only once every chunk verified and every attribute was applied; on any failure
 * the work dir is removed, so a corrupt layer leaves neither DIR nor partial files. DIR must not
 * exist or be an empty directory (rename(2) replaces an empty directory).
 *
 * Content: plain layers deliver each file's pieces during their single verifying pass
 * (onPlainChunk); they are written to `content/<n>` in the work dir and renamed into the tree once
 * the blob digest / diffID matched. TOC layers are read through readVerifiedChunks afterwards.
 * Staged files are matched to index nodes by the identity of their first ChunkRef (the plain reader
 * hands buildLayerIndex the very ChunkRef objects it passed to onPlainChunk).
 *
 * No write ever goes through a symlink from the layer: every directory in the tree is one we
 * mkdir'ed (the index is a tree of unique names; no name contains "/" or is "." / ".."), files are
 * created with O_CREAT|O_EXCL|O_NOFOLLOW, symlinks with symlink(2), and attributes are set with the
 * l* calls (lchown, lutimes) or on paths whose last component we created as a non-symlink (chmod).
 *
 * Node has no xattr or mknod API, so two tools from the base system are spawned with argv (never a
 * shell): `setfattr -h --restore=FILE` (Debian package `attr`) sets all xattrs in one process, incl.
 * security.capability and trusted.overlay.opaque (root needed for trusted.*); `mknod`/`mkfifo`
 * (coreutils) create devices (one process each, bounded concurrency) and fifos (batched).
 * Order per inode: content, lchown (which clears setuid bits and capabilities), chmod, xattrs, then
 * mtimes — directories last, children before parents.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { lchown, chmod, link, lutimes, mkdir, mkdtemp, open, readdir, rename, rm, stat, symlink, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { ChunkRef, LayerIndex, LayerNode } from '../formats/index.js';
import { openLocalLayer, type LayerArgs } from './layer-args.js';
import type { CommandIo } from './main.js';
import { mapLimit } from './map-limit.js';
import { contentFiles, forEachVerifiedChunk } from './verify-content.js';

export class ExtractError extends Error {}

const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
/** Filesystem calls in flight at once (libuv's pool does the work; latency, not CPU, is the limit). */
const FS_CONCURRENCY = 32;
/** Plain-layer pieces written behind the single pass before it waits (≤ 1 MiB each). */
const WRITE_BEHIND = 64;

/**
 * Writes plain-layer pieces into content/<n> behind the verifying pass: writes of one file are
 * chained in order, files proceed concurrently, and the pass waits once WRITE_BEHIND writes are
 * pending (backpressure). Any write error surfaces from write() or close().
 */
class StagingWriter {
  readonly #dir: string;
  readonly #pending = new Set<Promise<void>>();
  #seq = 0;
  #cur: { fh: Promise<FileHandle>; last: Promise<void> } | undefined;
  constructor(dir: string) {
    this.#dir = dir;
  }
  #error: unknown;
  #failed = false;
  #track(p: Promise<void>): void {
    this.#pending.add(p);
    p.then(
      () => this.#pending.delete(p),
      (e: unknown) => {
        this.#pending.delete(p);
        if (!this.#failed) [this.#failed, this.#error] = [true, e];
      },
    );
  }
  #closeCurrent(): void {
    const c = this.#cur;
    if (c) this.#track(c.last.then(async () => (await c.fh).close()));
    this.#cur = undefined;
  }
  async write(chunk: ChunkRef, data: Buffer, staged: Map<ChunkRef, string>): Promise<void> {
    if (chunk.fileOffset === 0) {
      this.#closeCurrent();
      const path = join(this.#dir, String(this.#seq++));
      staged.set(chunk, path);
      const fh = open(path, CREATE_FLAGS, 0o600);
      this.#cur = { fh, last: fh.then(() => undefined) };
    }
    const c = this.#cur!;
    c.last = c.last.then(async () => {
      await (await c.fh).write(data, 0, data.length, chunk.fileOffset);
    });
    this.#track(c.last);
    while (this.#pending.size >= WRITE_BEHIND) await Promise.race(this.#pending);
    if (this.#failed) throw this.#error;
  }
  async close(): Promise<void> {
    this.#closeCurrent();
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    if (this.#failed) throw this.#error;
  }
}

export interface ExtractSummary {
  readonly entries: number;
  readonly files: number;
  readonly bytes: number;
}

export async function extractLayer(blobPath: string, dir: string, args: LayerArgs, io: CommandIo): Promise<ExtractSummary> {
  const dest = resolve(dir);
  await checkDestination(dest);
  const work = await mkdtemp(join(dirname(dest), `.${basename(dest)}.lazy-als-`));
  const tree = join(work, 'tree');
  const content = join(work, 'content');
  try {
    await mkdir(tree, { mode: 0o700 });
    await mkdir(content, { mode: 0o700 });
    const staged = new Map<ChunkRef, string>();
    const writer = new StagingWriter(content);
    const layer = await openLocalLayer(blobPath, args, io, {
      onPlainChunk: (chunk, data) => writer.write(chunk, data, staged),
    }).finally(() => writer.close());
    try {
      const summary = await buildTree(layer.index, tree, staged, async (write) => {
        if (staged.size > 0 || isPlain(layer.index)) return;
        const files = contentFiles(layer.index);
        const handles = new Map<number, FileHandle>();
        try {
          await forEachVerifiedChunk(layer.blob, layer.index, files, async (f, chunk, data) => {
            let fh = handles.get(f.node.ino);
            if (!fh) {
              fh = await open(join(tree, f.path), constants.O_WRONLY | constants.O_NOFOLLOW);
              handles.set(f.node.ino, fh);
            }
            await fh.write(data, 0, data.length, chunk.fileOffset);
            write(data.length);
            if (chunk.fileOffset + chunk.size === f.node.size) {
              handles.delete(f.node.ino);
              await fh.close();
            }
          });
        } finally {
          for (const fh of handles.values()) await fh.close();
        }
      });
      await rename(tree, dest);
      // Moving a directory to a new parent rewrites its ".." entry; re-apply the root mtime to be sure.
      const root = layer.index.root;
      await lutimes(dest, root.mtimeSec, mtime(root));
      return summary;
    } finally {
      await layer.blob.close();
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function isPlain(index: LayerIndex): boolean {
  return index.format === 'tar' || index.format === 'tar+gzip' || index.format === 'tar+zstd';
}

async function checkDestination(dest: string): Promise<void> {
  let st;
  try {
    st = await stat(dest);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isDirectory() || (await readdir(dest)).length > 0) {
    throw new ExtractError(`${dest} exists and is not an empty directory`);
  }
}

/**
 * Create every entry of the index under `tree` (an existing empty dir), then apply attributes.
 * `fetchContent` fills regular files of TOC layers (created empty here) through verified reads.
 */
async function buildTree(
  index: LayerIndex,
  tree: string,
  staged: ReadonlyMap<ChunkRef, string>,
  fetchContent: (written: (n: number) => void) => Promise<void>,
): Promise<ExtractSummary> {
  const firstPath = new Map<number, string>();
  const dirs: [string, LayerNode][] = [];
  const inodes: [string, LayerNode][] = [];
  const devices: [string, LayerNode][] = [];
  const fifos: string[] = [];
  let entries = 0;
  let bytes = 0;
  const others: [string, LayerNode][] = [];
  for (const [path, node] of index.walk()) {
    entries++;
    if (node.type === 'dir') {
      if (path !== '') await mkdir(join(tree, path), { mode: 0o700 });
      dirs.push([path, node]);
    } else if (firstPath.has(node.ino)) {
      others.push([path, node]);
    } else {
      firstPath.set(node.ino, path);
      inodes.push([path, node]);
    }
  }
  // Every parent directory exists now; first names, then extra hardlink names, in parallel.
  await mapLimit(inodes, FS_CONCURRENCY, async ([path, node]) => {
    const abs = join(tree, path);
    switch (node.type) {
      case 'reg': {
        const stagedPath = node.chunks[0] !== undefined ? staged.get(node.chunks[0]) : undefined;
        if (stagedPath !== undefined) {
          await rename(stagedPath, abs);
          bytes += node.size;
        } else {
          if (node.size > 0 && isPlain(index)) throw new ExtractError(`no staged content for ${path}`);
          await (await open(abs, CREATE_FLAGS, 0o600)).close();
        }
        break;
      }
      case 'symlink':
        await symlink(node.linkTarget ?? '', abs);
        break;
      case 'fifo':
        fifos.push(path);
        break;
      case 'char':
      case 'block':
        devices.push([path, node]);
        break;
    }
  });
  await mapLimit(others, FS_CONCURRENCY, ([path, node]) => link(join(tree, firstPath.get(node.ino)!), join(tree, path)));
  await fetchContent((n) => {
    bytes += n;
  });
  for (let i = 0; i < fifos.length; i += 500) await tool('mkfifo', ['-m', '0600', '--', ...fifos.slice(i, i + 500).map(rel)], tree);
  await mapLimit(devices, 8, ([p, n]) =>
    tool('mknod', ['-m', '0600', '--', rel(p), n.type === 'char' ? 'c' : 'b', String(n.rdevMajor), String(n.rdevMinor)], tree),
  );
  // Ownership and modes, once per inode (hardlinks share them); the root dir included.
  await mapLimit([...inodes, ...dirs], FS_CONCURRENCY, async ([p, n]) => {
    const abs = p === '' ? tree : join(tree, p);
    await lchown(abs, n.uid, n.gid);
    if (n.type !== 'symlink') await chmod(abs, n.mode & 0o7777);
  });
  const xattrFile = join(dirname(tree), 'xattrs.restore');
  const restore = xattrRestore([...inodes, ...dirs]);
  if (restore.length > 0) {
    await writeFile(xattrFile, restore, { mode: 0o600 });
    await tool('setfattr', ['-h', `--restore=${xattrFile}`], tree);
  }
  await mapLimit(inodes, FS_CONCURRENCY, ([p, n]) => lutimes(join(tree, p), n.mtimeSec, mtime(n)));
  // Directories deepest first: setting a child's times never touches its parent's, but creating
  // entries does, and all creation is over by now; levels still go in order for clarity.
  const byDepth = new Map<number, [string, LayerNode][]>();
  for (const d of dirs) {
    const depth = d[0] === '' ? 0 : d[0].split('/').length;
    const level = byDepth.get(depth);
    if (level) level.push(d);
    else byDepth.set(depth, [d]);
  }
  for (const depth of [...byDepth.keys()].sort((a, b) => b - a)) {
    await mapLimit(byDepth.get(depth)!, FS_CONCURRENCY, ([p, n]) => lutimes(p === '' ? tree : join(tree, p), n.mtimeSec, mtime(n)));
  }
  return { entries, files: inodes.filter(([, n]) => n.type === 'reg').length, bytes };
}

function mtime(n: LayerNode): number {
  return n.mtimeSec + n.mtimeNsec / 1e9;
}

/** A path relative to the tree, as an argument that can never look like an option. */
function rel(p: string): string {
  return './' + p;
}

/** setfattr --restore input: "# file: <path>" with \ooo escapes, then name=0s<base64> lines. */
export function xattrRestore(nodes: readonly [string, LayerNode][]): Buffer {
  const parts: string[] = [];
  for (const [p, n] of nodes) {
    if (n.xattrs.size === 0) continue;
    parts.push(`# file: ${escapeForSetfattr(p === '' ? '.' : rel(p))}\n`);
    for (const [k, v] of n.xattrs) parts.push(`${escapeForSetfattr(k)}=0s${v.toString('base64')}\n`);
    parts.push('\n');
  }
  return Buffer.from(parts.join(''), 'latin1');
}

/** Escape every byte outside printable ASCII (and "\", "=", space) as \ooo, which setfattr unquotes. */
function escapeForSetfattr(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    out += b > 0x20 && b < 0x7f && b !== 0x5c && b !== 0x3d ? String.fromCharCode(b) : '\\' + b.toString(8).padStart(3, '0');
  }
  return out;
}

function tool(cmd: string, argv: string[], cwd: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, argv, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      if (err.length < 2000) err += s;
    });
    child.on('error', (e) => reject(new ExtractError(`cannot run ${cmd}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolvePromise();
      else reject(new ExtractError(`${cmd} failed (exit ${code}): ${err.trim().split('\n')[0] ?? ''}`));
    });
  });
}
