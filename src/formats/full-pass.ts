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
import { createHash, type Hash } from 'node:crypto';
import type { RandomAccessBlob } from '../core/blob.js';
import { DigestHasher, type Digest } from '../core/digest.js';
import type { ErrorContext } from '../core/errors.js';
import { DEFAULT_LIMITS, type Limits } from '../core/limits.js';
import { displayName } from './byte-string.js';
import { FormatError } from './errors.js';
import type { ByteString, LayerIndex, LayerNode } from './model.js';
import { landedMode, landedTime, normalizeEntryPath } from './overlay-view.js';
import { tocRoundedSeconds } from './toc-binding.js';
import { TarScanner, type ScannedEntry } from './tar/tar-scanner.js';
import { decodeWholeBlob, readWholeBlob } from './whole-blob.js';

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
  const check = new FullPassCheck(blob, index, options);
  const ctx: ErrorContext = { blob: index.blobDigest ?? blob.name };
  const blobHasher = index.blobDigest !== undefined ? DigestHasher.for(index.blobDigest) : undefined;
  async function* reads(): AsyncGenerator<Buffer> {
    for await (const b of readWholeBlob(blob, { signal: options.signal, context: ctx })) {
      blobHasher?.update(b);
      yield b;
    }
  }
  try {
    await decodeWholeBlob(index.compression, reads(), (b) => check.consume(b));
    check.endOfTar();
  } catch (e) {
    options.signal?.throwIfAborted();
    if (e instanceof FormatError) throw e;
    throw new FormatError('DECOMPRESS_FAILED', `corrupt ${index.compression} data: ${(e as Error).message ?? String(e)}`, ctx, { cause: e });
  }
  if (blobHasher && index.blobDigest !== undefined) {
    const b = blobHasher.digest();
    if (b !== index.blobDigest) throw new FormatError('BLOB_DIGEST_MISMATCH', `blob hashes to ${b}, expected ${index.blobDigest}`, ctx);
  }
  check.everyPathDescribed();
  return check.result();
}

/** The tar stream of a served layer, compared header by header and chunk by chunk with its index. */
class FullPassCheck {
  readonly #index: LayerIndex;
  readonly #blobName: string;
  readonly #options: FullPassOptions;
  readonly #limits: Limits;
  readonly #ctx: ErrorContext;
  readonly #estargz: boolean;
  readonly #diffHasher: DigestHasher;
  readonly #scanner: TarScanner;
  readonly #seen = new Set<ByteString>();
  /** Paths a `.wh.` marker whited out, and paths a header of their own described. */
  readonly #whiteouts = new Set<ByteString>();
  readonly #described = new Set<ByteString>();
  #content: OpenContent | undefined;
  /** The current entry is not served (eStargz artefact, whiteout marker): its content is ignored. */
  #ignoreData = false;
  #out = 0;
  #entries = 0;

  constructor(blob: RandomAccessBlob, index: LayerIndex, options: FullPassOptions) {
    this.#index = index;
    this.#blobName = blob.name;
    this.#options = options;
    this.#limits = options.limits ?? DEFAULT_LIMITS;
    this.#ctx = { blob: index.blobDigest ?? blob.name };
    this.#estargz = index.format === 'estargz' || index.format === 'stargz-legacy' || index.format === 'estargz-zstd';
    this.#diffHasher = options.diffId !== undefined ? DigestHasher.for(options.diffId) : new DigestHasher();
    this.#scanner = new TarScanner(this.#limits, blob.name);
  }

  consume(b: Buffer): void {
    this.#out += b.length;
    this.#diffHasher.update(b);
    for (const ev of this.#scanner.push(b)) {
      if (ev.kind === 'entry') this.#onEntry(ev.entry);
      else if (ev.kind === 'data') this.#onData(ev.data);
    }
  }

  /** End of the tar: the last file complete. */
  endOfTar(): void {
    this.#scanner.finish();
    const content = this.#content;
    if (content) throw this.#conflict(content.path, 'the content length', content.node.size, 'less');
  }

  /** Every served path described by a header, and whiteouts served as such. */
  everyPathDescribed(): void {
    for (const [p, n] of this.#index.walk()) {
      if (p !== '' && !this.#seen.has(p) && n.type !== 'dir') throw this.#conflict(p, 'the entry', n.type, 'absent');
    }
    // A path only a `.wh.` marker speaks of must be served as the whiteout (char 0:0), not as a file
    // the TOC invented there (its chunks would hash fine and no header would compare its content).
    for (const p of this.#whiteouts) {
      if (this.#described.has(p)) continue;
      const w = this.#index.lookup(p);
      if (w?.type !== 'char' || w.rdevMajor !== 0 || w.rdevMinor !== 0) throw this.#conflict(p, 'a whiteout', w?.type ?? 'absent', 'whiteout (char 0:0)');
    }
  }

  result(): FullPassResult {
    const diffId = this.#diffHasher.digest();
    if (this.#options.diffId !== undefined && diffId !== this.#options.diffId) {
      throw new FormatError('DIFFID_MISMATCH', `uncompressed layer hashes to ${diffId}, expected diffID ${this.#options.diffId}`, this.#ctx);
    }
    return { diffId, uncompressedSize: this.#out, entries: this.#entries };
  }

  #conflict(path: ByteString, what: string, served: unknown, tar: unknown): FormatError {
    const message = `served layer and tar header disagree on ${what}: ${String(served)} (served) ≠ ${String(tar)} (tar)`;
    return new FormatError('FORMAT_CONFLICT', message, { ...this.#ctx, entry: displayName(path) });
  }

  #onEntry(e: ScannedEntry): void {
    this.#entries++;
    this.#ignoreData = true;
    const path = normalizeEntryPath(e.name, this.#limits, this.#blobName);
    const slash = path.lastIndexOf('/');
    const dir = (slash < 0 ? '' : path.slice(0, slash)) as ByteString;
    const base = slash < 0 ? path : path.slice(slash + 1);
    if (this.#estargz && dir === '' && ESTARGZ_ARTEFACTS.has(base)) return;
    if (base.startsWith('.wh.')) {
      this.#onWhiteoutMarker(path, dir, base);
      return;
    }
    const n = this.#index.lookup(path);
    if (!n) throw this.#conflict(path, 'the entry', 'absent', e.type);
    this.#seen.add(path);
    this.#described.add(path);
    if (e.type === 'hardlink') {
      const target = e.linkName ?? ('' as ByteString);
      if (this.#index.lookup(normalizeEntryPath(target, this.#limits, this.#blobName))?.ino !== n.ino) {
        throw this.#conflict(path, 'the hardlink target', 'another inode', displayName(target));
      }
      return;
    }
    this.#compareHeader(path, n, e);
    if (e.type === 'reg') {
      this.#ignoreData = false;
      if (e.size > 0) this.#content = { node: n, path, chunk: 0, inChunk: 0, hash: createHash('sha256') };
    }
  }

  /** `.wh..wh..opq` must be served as an opaque directory, `.wh.<name>` as a whiteout of <name>. */
  #onWhiteoutMarker(path: ByteString, dir: ByteString, base: string): void {
    if (base === '.wh..wh..opq') {
      const d = this.#index.lookup(dir);
      if (d?.type !== 'dir' || d.xattrs.get('trusted.overlay.opaque')?.toString() !== 'y') {
        throw this.#conflict(path, 'an opaque directory', d?.type ?? 'absent', 'opaque');
      }
      return;
    }
    if (base.startsWith('.wh..wh.')) return;
    const target = ((dir === '' ? '' : dir + '/') + base.slice(4)) as ByteString;
    if (!this.#index.lookup(target)) throw this.#conflict(target, 'a whiteout', 'absent', 'whiteout');
    this.#seen.add(target);
    this.#whiteouts.add(target);
  }

  /** Every attribute a tar header carries, as podman would land it, against the served node. */
  #compareHeader(path: ByteString, n: LayerNode, e: ScannedEntry): void {
    const conflict = (what: string, served: unknown, tar: unknown): FormatError => this.#conflict(path, what, served, tar);
    if (n.type !== e.type) throw conflict('the type', n.type, e.type);
    const mode = landedMode(e.type, e.mode);
    if (n.mode !== mode) throw conflict('the mode', n.mode.toString(8), mode.toString(8));
    if (n.uid !== e.uid || n.gid !== e.gid) throw conflict('the owner', `${n.uid}:${n.gid}`, `${e.uid}:${e.gid}`);
    const t = landedTime(e.mtimeSec, e.mtimeNsec);
    // eStargz TOCs carry the header's time rounded to the second (toc-binding.ts).
    const r = landedTime(tocRoundedSeconds(e.mtimeSec, e.mtimeNsec), 0);
    const rounded = this.#estargz && n.mtimeSec === r.mtimeSec && n.mtimeNsec === 0;
    if ((n.mtimeSec !== t.mtimeSec || n.mtimeNsec !== t.mtimeNsec) && !rounded) throw conflict(
      'the mtime',
      `${n.mtimeSec}.${n.mtimeNsec}`,
      `${t.mtimeSec}.${t.mtimeNsec}`,
    );
    if (e.type === 'symlink' && n.linkTarget !== e.linkName) {
      throw conflict('the link target', displayName(n.linkTarget ?? ('' as ByteString)), displayName(e.linkName ?? ('' as ByteString)));
    }
    if ((e.type === 'char' || e.type === 'block') && (n.rdevMajor !== e.devMajor || n.rdevMinor !== e.devMinor)) {
      throw conflict('the device numbers', `${n.rdevMajor},${n.rdevMinor}`, `${e.devMajor},${e.devMinor}`);
    }
    const served = [...n.xattrs].filter(([k]) => !(n.type === 'dir' && OVERLAY_OPAQUE.has(k)));
    const same = served.length === e.xattrs.size && served.every(([k, v]) => e.xattrs.get(k)?.equals(v) === true);
    if (!same) throw conflict('the xattrs', served.map(([k]) => k).join(','), [...e.xattrs.keys()].join(','));
    if (e.type === 'reg' && n.size !== e.size) throw conflict('the size', n.size, e.size);
  }

  /** A regular file's content, cut at the index's chunk boundaries and hashed against its chunk digests. */
  #onData(d: Buffer): void {
    let p = 0;
    while (p < d.length) {
      const c = this.#content;
      if (!c) {
        if (this.#ignoreData) return;
        throw new FormatError('FORMAT_CONFLICT', 'tar content outside any served file', this.#ctx);
      }
      const ref = c.node.chunks[c.chunk];
      if (!ref) throw this.#conflict(c.path, 'the content length', c.node.size, 'more');
      const n = Math.min(d.length - p, ref.size - c.inChunk);
      c.hash.update(d.subarray(p, p + n));
      p += n;
      c.inChunk += n;
      if (c.inChunk === ref.size) {
        const got = `sha256:${c.hash.digest('hex')}`;
        if (got !== ref.digest) throw this.#conflict(c.path, `the content of chunk ${c.chunk} (at ${ref.fileOffset})`, ref.digest, got);
        c.chunk++;
        c.inChunk = 0;
        c.hash = createHash('sha256');
        if (c.chunk === c.node.chunks.length) this.#content = undefined;
      }
    }
  }
}
