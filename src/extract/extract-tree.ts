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
 * the blob digest / diffID matched. TOC layers are read through readVerifiedChunks afterwards
 * (verify-content.ts), each file created by its first verified chunk.
 * The filesystem calls themselves run in worker threads, in batches of synchronous calls
 * (fs-batch.ts): per-call promise round trips through libuv's pool cost more than the calls.
 * Staged files are matched to index nodes by the tar position of their first chunk (its span).
 *
 * No write ever goes through a symlink from the layer: every directory in the tree is one we
 * mkdir'ed (the index is a tree of unique names; no name contains "/" or is "." / ".."), files are
 * created with O_CREAT|O_EXCL|O_NOFOLLOW, symlinks with symlink(2), and attributes are set with the
 * l* calls (lchown, lutimes) or on paths whose last component we created as a non-symlink (chmod).
 *
 * Node has no xattr or mknod API, so two tools from the base system are spawned with argv (never a
 * shell): `setfattr -h --restore=FILE` (Debian package `attr`) sets all xattrs in one process, incl.
 * security.capability and trusted.overlay.opaque (root needed for trusted.*); one `tar -x` creates
 * every device and fifo (special-files.ts).
 * Order per inode: content, lchown (which clears setuid bits and capabilities), chmod, xattrs, then
 * mtimes — directories last, children before parents.
 */
import { lutimes, mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { byteStringFromText, toBuffer, verifyFullPass, type ByteString, type ChunkRef, type LayerIndex, type LayerNode } from '../formats/index.js';
import type { Digest } from '../core/digest.js';
import { FsBatcher, type FsOp } from './fs-batch.js';
import type { RandomAccessBlob } from '../core/blob.js';
import type { OpenLayerOptions } from '../formats/layer-reader.js';
import { makeSpecial, type SpecialFile } from './special-files.js';
import { ExtractError, tool } from './tool.js';
import { contentFiles, forEachVerifiedChunk } from './verify-content.js';

export { ExtractError };

/** `dir/rel` as bytes: layer names are ByteStrings; the work dir's own (text) path is converted once. */
function under(dir: ByteString, rel: string): ByteString {
  return (rel === '' ? dir : `${dir}/${rel}`) as ByteString;
}

/** Worker threads doing the filesystem calls (fs-batch.ts); the main thread verifies meanwhile. */
const FS_WORKERS = Math.min(4, Math.max(2, availableParallelism()));

/**
 * Writes plain-layer pieces into content/<n> behind the verifying pass: all pieces of one file go
 * to the same fs worker, in order; the batcher's byte limit is the backpressure on the pass.
 */
/**
 * A plain layer's file content, by where its first chunk sits in the tar (index nodes are views read
 * from the index table, so the ChunkRef handed to onPlainChunk is not the object the index returns).
 */
function stagingKey(c: ChunkRef): string {
  return `${c.span.offset}:${c.span.innerOffset}`;
}

class StagingWriter {
  readonly #dir: ByteString;
  readonly #fs: FsBatcher;
  #seq = 0;
  #cur: { path: ByteString; worker: number; entry: string } | undefined;
  constructor(dir: ByteString, fs: FsBatcher) {
    this.#dir = dir;
    this.#fs = fs;
  }
  /** `entry` is the file's path in the layer: its first piece (a sparse file's may lie past 0) starts a staged file. */
  write(chunk: ChunkRef, data: Buffer, entry: string, staged: Map<string, ByteString>): Promise<void> {
    const first = this.#cur?.entry !== entry || chunk.fileOffset === 0;
    if (first) {
      const n = this.#seq++;
      this.#cur = { path: under(this.#dir, String(n)), worker: n, entry };
      staged.set(stagingKey(chunk), this.#cur.path);
    }
    const c = this.#cur!;
    return this.#fs.add(c.worker, (buffer, start) => ['write', c.path, first, chunk.fileOffset, buffer, start, data.length], data);
  }
}

export interface ExtractSummary {
  readonly entries: number;
  readonly files: number;
  readonly bytes: number;
}

/** An opened layer: its verified index and the blob it reads content from (closed by extractLayer). */
export interface ExtractSource {
  readonly index: LayerIndex;
  readonly blob: RandomAccessBlob;
  /** The config's diff_id: a TOC layer's tar must hash to it (plain layers were checked by their reader). */
  readonly diffId?: Digest;
}

/**
 * Opens the layer; plain layers hand their pieces to onPlainChunk during that pass (committed only if
 * it resolves), and are not hashed piece by piece: the pieces are kept here, never read back.
 */
export type OpenForExtract = (hooks: Required<Pick<OpenLayerOptions, 'onPlainChunk' | 'unaddressedPieces'>>) => Promise<ExtractSource>;

export async function extractLayer(dir: string, open: OpenForExtract): Promise<ExtractSummary> {
  const dest = resolve(dir);
  await checkDestination(dest);
  const work = await mkdtemp(join(dirname(dest), `.${basename(dest)}.lazy-als-`));
  const tree = join(work, 'tree');
  const content = join(work, 'content');
  const fs = new FsBatcher(FS_WORKERS);
  try {
    await mkdir(tree, { mode: 0o700 });
    await mkdir(content, { mode: 0o700 });
    const staged = new Map<string, ByteString>();
    const writer = new StagingWriter(byteStringFromText(content), fs);
    const treeB = byteStringFromText(tree);
    const layer = await open({
      onPlainChunk: (chunk, data, entry) => writer.write(chunk, data, entry, staged),
      unaddressedPieces: true,
    }).finally(() => fs.flush());
    try {
      const summary = await buildTree(layer.index, treeB, byteStringFromText(work), staged, fs, async (write) => {
        if (isPlain(layer.index)) return;
        // Verified chunks only (forEachVerifiedChunk checks each against its digest first); the
        // first chunk of a file creates it (O_EXCL), all chunks of a file go to the same worker.
        await forEachVerifiedChunk(layer.blob, layer.index, contentFiles(layer.index), async (f, chunk, data) => {
          write(data.length);
          const target = under(treeB, f.path);
          await fs.add(f.node.ino, (buffer, start) => ['write', target, chunk.fileOffset === 0, chunk.fileOffset, buffer, start, data.length], data);
        });
      });
      // A TOC layer is only what its TOC claims; before the tree becomes DIR, the whole blob is read
      // once more and its tar must be that tree (headers, content, diff_id): formats/full-pass.ts.
      if (!isPlain(layer.index)) await verifyFullPass(layer.blob, layer.index, layer.diffId !== undefined ? { diffId: layer.diffId } : {});
      await rename(tree, dest);
      // Moving a directory to a new parent rewrites its ".." entry; re-apply the root mtime to be sure.
      const root = layer.index.root;
      await lutimes(dest, root.mtimeSec, mtime(root));
      return summary;
    } finally {
      await layer.blob.close?.();
    }
  } finally {
    await fs.close();
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

type Named = [ByteString, LayerNode];

/** The index's names by what creates them: directories, the first name of every other inode, further (hard) links. */
interface TreePlan {
  readonly entries: number;
  readonly dirs: Named[];
  readonly inodes: Named[];
  readonly links: Named[];
  readonly firstPath: ReadonlyMap<number, ByteString>;
}

/**
 * Create every entry of the index under `tree` (an existing empty dir), then apply attributes.
 * `fetchContent` creates and fills the regular files of TOC layers through verified reads; plain
 * layers' files are the staged ones, renamed in.
 */
async function buildTree(
  index: LayerIndex,
  tree: ByteString,
  work: ByteString,
  staged: ReadonlyMap<string, ByteString>,
  fs: FsBatcher,
  fetchContent: (written: (n: number) => void) => Promise<void>,
): Promise<ExtractSummary> {
  const plan = planTree(index, tree, fs);
  await fs.flush();
  // Every directory exists now: content (TOC layers), then the other first names, then hardlinks.
  let bytes = 0;
  await fetchContent((n) => {
    bytes += n;
  });
  await fs.flush();
  const first = firstNames(plan.inodes, tree, staged, isPlain(index));
  bytes += first.renamedBytes;
  await fs.runAll(first.create);
  await fs.runAll(plan.links.map(([path, node]): FsOp => ['link', under(tree, plan.firstPath.get(node.ino)!), under(tree, path)]));
  await makeSpecialFiles(first.fifos, first.devices, tree, work, fs);
  await applyAttributes(plan, tree, work, fs);
  return { entries: plan.entries, files: plan.inodes.filter(([, n]) => n.type === 'reg').length, bytes };
}

/** One walk of the index: directories are queued for mkdir at once (walk order puts parents first). */
function planTree(index: LayerIndex, tree: ByteString, fs: FsBatcher): TreePlan {
  const firstPath = new Map<number, ByteString>();
  const dirs: Named[] = [];
  const inodes: Named[] = [];
  const links: Named[] = [];
  let entries = 0;
  for (const [path, node] of index.walk()) {
    entries++;
    if (node.type === 'dir') {
      // One worker runs the mkdirs in walk order.
      if (path !== '') void fs.add(0, ['mkdir', under(tree, path), 0o700]).catch(() => undefined);
      dirs.push([path, node]);
    } else if (firstPath.has(node.ino)) {
      links.push([path, node]);
    } else {
      firstPath.set(node.ino, path);
      inodes.push([path, node]);
    }
  }
  return { entries, dirs, inodes, links, firstPath };
}

/** The operations that create each inode's first name; fifos and devices are made by tools (makeSpecialFiles). */
interface FirstNames {
  readonly create: FsOp[];
  readonly fifos: ByteString[];
  readonly devices: Named[];
  /** Content bytes of the staged files renamed in. */
  readonly renamedBytes: number;
}

function firstNames(inodes: readonly Named[], tree: ByteString, staged: ReadonlyMap<string, ByteString>, plain: boolean): FirstNames {
  const create: FsOp[] = [];
  const fifos: ByteString[] = [];
  const devices: Named[] = [];
  let renamedBytes = 0;
  for (const [path, node] of inodes) {
    const abs = under(tree, path);
    switch (node.type) {
      case 'reg': {
        // A sparse file's holes are never staged: its first stored piece names it, truncate adds a trailing hole.
        const firstStored = node.chunks.find((c) => !c.zeros);
        const stagedPath = firstStored !== undefined ? staged.get(stagingKey(firstStored)) : undefined;
        const holes = plain && node.chunks.some((c) => c.zeros);
        if (stagedPath !== undefined) {
          create.push(['rename', stagedPath, abs]);
          if (holes) create.push(['truncate', abs, node.size]);
          renamedBytes += node.size;
        } else if (holes && firstStored === undefined) {
          create.push(['touch', abs], ['truncate', abs, node.size]);
        } else if (node.size > 0 && plain) {
          throw new ExtractError(`no staged content for ${path}`);
        } else if (node.size === 0) {
          create.push(['touch', abs]);
        } // else: a TOC layer's file, created by fetchContent
        break;
      }
      case 'symlink':
        create.push(['symlink', node.linkTarget ?? ('' as ByteString), abs]);
        break;
      case 'fifo':
        fifos.push(path);
        break;
      case 'char':
      case 'block':
        devices.push([path, node]);
        break;
    }
  }
  return { create, fifos, devices, renamedBytes };
}

/**
 * fifos and devices are made by a tool that takes names as text (special-files.ts), so they are made
 * under ASCII names in the work dir (same filesystem) and renamed into place with their exact bytes.
 */
async function makeSpecialFiles(fifos: readonly ByteString[], devices: readonly Named[], tree: ByteString, work: ByteString, fs: FsBatcher): Promise<void> {
  if (fifos.length + devices.length === 0) return;
  const special = under(work, 'special');
  await fs.runAll([['mkdir', special, 0o700]]);
  const files: SpecialFile[] = [];
  const moves: FsOp[] = [];
  fifos.forEach((p, k) => {
    files.push({ name: `special/f${k}`, type: 'fifo', major: 0, minor: 0 });
    moves.push(['rename', under(special, `f${k}`), under(tree, p)]);
  });
  devices.forEach(([p, n], k) => {
    files.push({ name: `special/d${k}`, type: n.type === 'char' ? 'char' : 'block', major: n.rdevMajor, minor: n.rdevMinor });
    moves.push(['rename', under(special, `d${k}`), under(tree, p)]);
  });
  await makeSpecial(files, toBuffer(work).toString('utf8'));
  await fs.runAll(moves);
}

/**
 * Ownership, modes and (non-directory) mtimes, once per inode (hardlinks share them); the root dir
 * included. xattrs come after lchown (which clears capabilities); setting xattrs does not touch
 * mtimes, so the files' mtimes may be set before them. Directories' mtimes last: all creation inside
 * them is over (setting a child's times never touches its parent's), so their order does not matter.
 */
async function applyAttributes(plan: TreePlan, tree: ByteString, work: ByteString, fs: FsBatcher): Promise<void> {
  const owned = [...plan.inodes, ...plan.dirs];
  await fs.runAll(
    owned.map(([p, n]): FsOp => ['attrs', under(tree, p), n.uid, n.gid, n.type === 'symlink' ? -1 : n.mode & 0o7777, n.type === 'dir' ? NaN : mtime(n)]),
  );
  const restore = xattrRestore(owned);
  if (restore.length > 0) {
    const xattrFile = join(toBuffer(work).toString('utf8'), 'xattrs.restore');
    await writeFile(xattrFile, restore, { mode: 0o600 });
    await tool('setfattr', ['-h', `--restore=${xattrFile}`], toBuffer(tree).toString('utf8'));
  }
  await fs.runAll(plan.dirs.map(([p, n]): FsOp => ['utimes', under(tree, p), mtime(n)]));
}

function mtime(n: LayerNode): number {
  return n.mtimeSec + n.mtimeNsec / 1e9;
}

/** setfattr --restore input: "# file: <path>" with \ooo escapes, then name=0s<base64> lines. */
export function xattrRestore(nodes: readonly [ByteString, LayerNode][]): Buffer {
  const parts: string[] = [];
  for (const [p, n] of nodes) {
    if (n.xattrs.size === 0) continue;
    // "./" + path: a relative name that can never look like an option; exact bytes, escaped.
    parts.push(`# file: ${escapeForSetfattr(p === '' ? Buffer.from('.') : Buffer.concat([Buffer.from('./'), toBuffer(p)]))}\n`);
    for (const [k, v] of n.xattrs) parts.push(`${escapeForSetfattr(Buffer.from(k, 'utf8'))}=0s${v.toString('base64')}\n`);
    parts.push('\n');
  }
  return Buffer.from(parts.join(''), 'latin1');
}

/** Escape every byte outside printable ASCII (and "\", "=", space) as \ooo, which setfattr unquotes. */
function escapeForSetfattr(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) {
    out += b > 0x20 && b < 0x7f && b !== 0x5c && b !== 0x3d ? String.fromCharCode(b) : '\\' + b.toString(8).padStart(3, '0');
  }
  return out;
}
