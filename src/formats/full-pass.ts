/**
 * The full-read check of a lazily served layer (eStargz family, zstd:chunked): when every byte of
 * the blob is read anyway (`extract`, `inspect`, the daemon's background fetch), decompress it once
 * and prove that the index we serve is the tar a full pull unpacks:
 *   - the uncompressed stream hashes to the config's diff_id (DIFFID_MISMATCH otherwise);
 *   - the blob hashes to its descriptor digest, when known (BLOB_DIGEST_MISMATCH);
 *   - every tar header agrees with the served node of its path (type, mode bits, owner, size, mtime
 *     as served, link target, device numbers, xattrs; whiteouts and opaque markers as mapped), and
 *     every served path comes from a header (FORMAT_CONFLICT);
 *   - every regular file's content, cut at the index's chunk boundaries, hashes to the chunk
 *     digests the index serves (FORMAT_CONFLICT: the TOC points a file at other bytes).
 * One sequential pass, memory bounded by one read plus one chunk-hash state.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash, type Hash } from 'node:crypto';
import type { RandomAccessBlob } from '../core/blob.js';
import { DigestHasher, type Digest } from '../core/digest.js';
import type { ErrorContext } from '../core/errors.js';
import { DEFAULT_LIMITS, type Limits } from '../core/limits.js';
import { displayName } from './byte-string.js';
import { createDecompressor, ZstdStreamDecoder } from './decompress.js';
import { FormatError } from './errors.js';
import type { ByteString, LayerIndex, LayerNode } from './model.js';
import { landedTime, normalizeEntryPath } from './overlay-view.js';
import { TarScanner, type ScannedEntry } from './tar/tar-scanner.js';

const READ_BYTES = 4 * 1024 * 1024;
const ESTARGZ_ARTEFACTS = new Set<string>(['stargz.index.json', '.prefetch.landmark', '.no.prefetch.landmark']);
const OVERLAY_OPAQUE = new Set(['trusted.overlay.opaque', 'user.overlay.opaque']);

export interface FullPassOptions {
  /** The config's diff_id for this layer; checked when given. */
  readonly diffId?: Digest;
  readonly limits?: Limits;
  readonly signal?: AbortSignal;
}

export interface FullPassResult {
  /** sha256 of the uncompressed tar (the layer's diff_id). */
  readonly diffId: Digest;
  readonly uncompressedSize: number;
  readonly entries: number;
}

/** Content of the current file being checked against its chunk digests. */
interface OpenContent {
  readonly node: LayerNode;
  readonly path: ByteString;
  chunk: number;
  inChunk: number;
  hash: Hash;
}

export async function verifyFullPass(blob: RandomAccessBlob, index: LayerIndex, options: FullPassOptions = {}): Promise<FullPassResult> {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const ctx: ErrorContext = { blob: index.blobDigest ?? blob.name };
  const estargz = index.format === 'estargz' || index.format === 'stargz-legacy' || index.format === 'estargz-zstd';
  const diffHasher = options.diffId !== undefined ? DigestHasher.for(options.diffId) : new DigestHasher();
  const blobHasher = index.blobDigest !== undefined ? DigestHasher.for(index.blobDigest) : undefined;
  const scanner = new TarScanner(limits, blob.name);
  const seen = new Set<ByteString>();
  /** Paths a `.wh.` marker whited out, and paths a header of their own described. */
  const whiteouts = new Set<ByteString>();
  const described = new Set<ByteString>();
  let content: OpenContent | undefined;
  /** The current entry is not served (eStargz artefact, whiteout marker): its content is ignored. */
  let ignoreData = false;
  let out = 0;
  let entries = 0;

  const conflict = (path: ByteString, what: string, served: unknown, tar: unknown): FormatError =>
    new FormatError('FORMAT_CONFLICT', `served layer and tar header disagree on ${what}: ${String(served)} (served) ≠ ${String(tar)} (tar)`, {
      ...ctx,
      entry: displayName(path),
    });

  const onEntry = (e: ScannedEntry): void => {
    entries++;
    ignoreData = true;
    const path = normalizeEntryPath(e.name, limits, blob.name);
    const slash = path.lastIndexOf('/');
    const dir = (slash < 0 ? '' : path.slice(0, slash)) as ByteString;
    const base = slash < 0 ? path : path.slice(slash + 1);
    if (estargz && dir === '' && ESTARGZ_ARTEFACTS.has(base)) return;
    if (base === '.wh..wh..opq') {
      const d = index.lookup(dir);
      if (d?.type !== 'dir' || d.xattrs.get('trusted.overlay.opaque')?.toString() !== 'y') throw conflict(path, 'an opaque directory', d?.type ?? 'absent', 'opaque');
      return;
    }
    if (base.startsWith('.wh..wh.')) return;
    if (base.startsWith('.wh.')) {
      const target = ((dir === '' ? '' : dir + '/') + base.slice(4)) as ByteString;
      const w = index.lookup(target);
      if (!w) throw conflict(target, 'a whiteout', 'absent', 'whiteout');
      seen.add(target);
      whiteouts.add(target);
      return;
    }
    const n = index.lookup(path);
    if (!n) throw conflict(path, 'the entry', 'absent', e.type);
    seen.add(path);
    described.add(path);
    if (e.type === 'hardlink') {
      const t = index.lookup(normalizeEntryPath(e.linkName ?? ('' as ByteString), limits, blob.name));
      if (t?.ino !== n.ino) throw conflict(path, 'the hardlink target', 'another inode', displayName(e.linkName ?? ('' as ByteString)));
      return;
    }
    if (n.type !== e.type) throw conflict(path, 'the type', n.type, e.type);
    if (n.mode !== (e.mode & 0o7777)) throw conflict(path, 'the mode', n.mode.toString(8), (e.mode & 0o7777).toString(8));
    if (n.uid !== e.uid || n.gid !== e.gid) throw conflict(path, 'the owner', `${n.uid}:${n.gid}`, `${e.uid}:${e.gid}`);
    const t = landedTime(e.mtimeSec, e.mtimeNsec);
    if (n.mtimeSec !== t.mtimeSec || n.mtimeNsec !== t.mtimeNsec) throw conflict(path, 'the mtime', `${n.mtimeSec}.${n.mtimeNsec}`, `${t.mtimeSec}.${t.mtimeNsec}`);
    if (e.type === 'symlink' && n.linkTarget !== e.linkName) throw conflict(path, 'the link target', displayName(n.linkTarget ?? ('' as ByteString)), displayName(e.linkName ?? ('' as ByteString)));
    if ((e.type === 'char' || e.type === 'block') && (n.rdevMajor !== e.devMajor || n.rdevMinor !== e.devMinor)) {
      throw conflict(path, 'the device numbers', `${n.rdevMajor},${n.rdevMinor}`, `${e.devMajor},${e.devMinor}`);
    }
    const served = [...n.xattrs].filter(([k]) => !(n.type === 'dir' && OVERLAY_OPAQUE.has(k)));
    const same = served.length === e.xattrs.size && served.every(([k, v]) => e.xattrs.get(k)?.equals(v) === true);
    if (!same) throw conflict(path, 'the xattrs', served.map(([k]) => k).join(','), [...e.xattrs.keys()].join(','));
    if (e.type === 'reg') {
      if (n.size !== e.size) throw conflict(path, 'the size', n.size, e.size);
      ignoreData = false;
      if (e.size > 0) content = { node: n, path, chunk: 0, inChunk: 0, hash: createHash('sha256') };
    }
  };

  const onData = (d: Buffer): void => {
    let p = 0;
    while (p < d.length) {
      if (!content) {
        if (ignoreData) return;
        throw new FormatError('FORMAT_CONFLICT', 'tar content outside any served file', ctx);
      }
      const c = content;
      const ref = c.node.chunks[c.chunk];
      if (!ref) throw conflict(c.path, 'the content length', c.node.size, 'more');
      const n = Math.min(d.length - p, ref.size - c.inChunk);
      c.hash.update(d.subarray(p, p + n));
      p += n;
      c.inChunk += n;
      if (c.inChunk === ref.size) {
        const got = `sha256:${c.hash.digest('hex')}`;
        if (got !== ref.digest) throw conflict(c.path, `the content of chunk ${c.chunk} (at ${ref.fileOffset})`, ref.digest, got);
        c.chunk++;
        c.inChunk = 0;
        c.hash = createHash('sha256');
        if (c.chunk === c.node.chunks.length) content = undefined;
      }
    }
  };

  const consume = (b: Buffer): void => {
    out += b.length;
    diffHasher.update(b);
    for (const ev of scanner.push(b)) {
      if (ev.kind === 'entry') onEntry(ev.entry);
      else if (ev.kind === 'data') onData(ev.data);
    }
  };

  async function* pieces(): AsyncGenerator<Buffer> {
    for (let pos = 0; pos < blob.size; ) {
      const b = await blob.read(pos, Math.min(READ_BYTES, blob.size - pos), options.signal);
      if (b.length === 0) throw new FormatError('DECOMPRESS_FAILED', `blob ends at ${pos} of ${blob.size} bytes`, ctx);
      blobHasher?.update(b);
      pos += b.length;
      yield b;
    }
  }

  let consumerError: unknown;
  try {
    if (index.compression === 'zstd') {
      const dec = new ZstdStreamDecoder();
      for await (const b of pieces()) for (const w of dec.decode(b)) consume(w);
      dec.finish();
    } else if (index.compression === 'gzip') {
      await pipeline(Readable.from(pieces(), { objectMode: false, highWaterMark: 1 }), createDecompressor('gzip'), async (src: AsyncIterable<Buffer>) => {
        try {
          for await (const b of src) consume(b);
        } catch (e) {
          consumerError ??= e;
          throw e;
        }
      });
    } else {
      for await (const b of pieces()) consume(b);
    }
    scanner.finish();
  } catch (e0) {
    const e = consumerError ?? e0;
    options.signal?.throwIfAborted();
    if (e instanceof FormatError) throw e;
    throw new FormatError('DECOMPRESS_FAILED', `corrupt ${index.compression} data: ${(e as Error).message ?? String(e)}`, ctx, { cause: e });
  }
  if (content) throw conflict(content.path, 'the content length', content.node.size, 'less');
  if (blobHasher && index.blobDigest !== undefined) {
    const b = blobHasher.digest();
    if (b !== index.blobDigest) throw new FormatError('BLOB_DIGEST_MISMATCH', `blob hashes to ${b}, expected ${index.blobDigest}`, ctx);
  }
  for (const [p, n] of index.walk()) {
    if (p !== '' && !seen.has(p) && n.type !== 'dir') throw conflict(p, 'the entry', n.type, 'absent');
  }
  // A path only a `.wh.` marker speaks of must be served as the whiteout (char 0:0), not as a file
  // the TOC invented there (its chunks would hash fine and no header would compare its content).
  for (const p of whiteouts) {
    if (described.has(p)) continue;
    const w = index.lookup(p);
    if (w?.type !== 'char' || w.rdevMajor !== 0 || w.rdevMinor !== 0) throw conflict(p, 'a whiteout', w?.type ?? 'absent', 'whiteout (char 0:0)');
  }
  const diffId = diffHasher.digest();
  if (options.diffId !== undefined && diffId !== options.diffId) {
    throw new FormatError('DIFFID_MISMATCH', `uncompressed layer hashes to ${diffId}, expected diffID ${options.diffId}`, ctx);
  }
  return { diffId, uncompressedSize: out, entries };
}
