/**
 * A BlobSource over OCI image layouts on a (possibly network-mounted) filesystem: one layout per
 * repository at `<root>/<domain>/<path>/` (oci-layout, index.json, blobs/<alg>/<hex>). Tags are the
 * `org.opencontainers.image.ref.name` annotations of index.json entries; any manifest blob is also
 * reachable by digest. Documents are verified exactly like registry ones (image-resolver.ts);
 * layer blobs are opened as FileBlobs (positional reads, no whole-file reads).
 *
 * The tree may be writable by others (a shared filesystem): every file is opened without blocking
 * and without following a final symlink, and checked on its fd, so a FIFO, a device or a symlink
 * (loop) where a blob or index.json should be is a LAYOUT_INVALID error, never a hung worker.
 */
import { join } from 'node:path';
import { FileBlob, openRegularFile, type RandomAccessBlob } from '../../core/blob.js';
import { DigestHasher, digestAlgorithm, digestHex, isDigest, type Digest } from '../../core/digest.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { SourceError } from '../errors.js';
import { MAX_DOCUMENT_BYTES } from '../image-document.js';
import { resolveImage, type DocumentFetcher, type FetchedDocument } from '../image-resolver.js';
import type { ImageReference } from '../reference.js';
import type { BlobSource, ManifestWanted, ResolvedImage } from '../source.js';

/** Piece size when hashing a dfs blob whole: reads run in libuv's pool, each hash step stays short. */
const HASH_PIECE = 1024 * 1024;

/** The digest (same algorithm as `like`) of a whole blob, read piece by piece. */
async function hashBlob(blob: RandomAccessBlob, like: Digest, signal: AbortSignal | undefined): Promise<Digest> {
  const h = DigestHasher.for(like);
  for (let at = 0; at < blob.size; at += HASH_PIECE) {
    signal?.throwIfAborted();
    h.update(await blob.read(at, Math.min(HASH_PIECE, blob.size - at), signal));
  }
  return h.digest();
}

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

export function layoutDir(root: string, ref: Pick<ImageReference, 'domain' | 'path'>): string {
  // parseReference guarantees domain and path contain no "..", no empty components, no NUL.
  return join(root, ref.domain, ...ref.path.split('/'));
}

export function blobPath(dir: string, d: Digest): string {
  return join(dir, 'blobs', digestAlgorithm(d), digestHex(d));
}

function isMissing(e: unknown): boolean {
  const c = (e as NodeJS.ErrnoException).code;
  return c === 'ENOENT' || c === 'ENOTDIR';
}

async function readSmall(path: string, what: string, source: string): Promise<Buffer | undefined> {
  try {
    const { fh, size } = await openRegularFile(path);
    try {
      if (size > MAX_DOCUMENT_BYTES) throw new SourceError('BODY_TOO_LARGE', `${what}: ${size} bytes is over the ${MAX_DOCUMENT_BYTES}-byte cap`, { source });
      const buf = Buffer.alloc(size);
      const { bytesRead } = await fh.read(buf, 0, size, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e instanceof SourceError ? e : new SourceError('LAYOUT_INVALID', `${what}: ${(e as Error).message}`, { source }, { cause: e });
  }
}

interface IndexEntry {
  readonly digest: Digest;
  readonly mediaType?: string;
  readonly refName?: string;
}

async function readLayoutIndex(dir: string): Promise<IndexEntry[] | undefined> {
  const bytes = await readSmall(join(dir, 'index.json'), 'index.json', dir);
  if (!bytes) return undefined;
  let j: unknown;
  try {
    j = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new SourceError('LAYOUT_INVALID', 'index.json is not JSON', { source: dir }, { cause: e });
  }
  const ms = (j as { manifests?: unknown }).manifests;
  if (!Array.isArray(ms)) throw new SourceError('LAYOUT_INVALID', 'index.json without manifests[]', { source: dir });
  const out: IndexEntry[] = [];
  for (const m of ms as Array<Record<string, unknown>>) {
    if (!isDigest(m?.['digest'])) continue;
    const ann = m['annotations'] as Record<string, unknown> | undefined;
    const refName = typeof ann?.[REF_NAME_ANNOTATION] === 'string' ? (ann[REF_NAME_ANNOTATION] as string) : undefined;
    out.push({ digest: m['digest'] as Digest, ...(typeof m['mediaType'] === 'string' ? { mediaType: m['mediaType'] } : {}), ...(refName ? { refName } : {}) });
  }
  return out;
}

export class OciLayoutSource implements BlobSource {
  readonly name: string;
  readonly root: string;
  readonly #logger: Logger;

  readonly #maxIndexEntries: number | undefined;

  constructor(root: string, logger: Logger = silentLogger, opts: { maxIndexEntries?: number } = {}) {
    this.root = root;
    this.name = `dfs ${root}`;
    this.#logger = logger;
    this.#maxIndexEntries = opts.maxIndexEntries;
  }

  async resolve(ref: ImageReference, signal?: AbortSignal, want?: ManifestWanted): Promise<ResolvedImage> {
    const dir = layoutDir(this.root, ref);
    const fetcher: DocumentFetcher = {
      manifest: (t) => this.#manifest(dir, t),
      config: async (d) => {
        const b = await readSmall(blobPath(dir, d), `config ${d}`, dir);
        if (!b) throw new SourceError('BLOB_NOT_FOUND', `config blob missing from layout`, { blob: d, source: dir });
        return b;
      },
    };
    const img = await resolveImage(ref, fetcher, this.name, this.#logger, signal, {
      ...(want ? { want } : {}),
      ...(this.#maxIndexEntries !== undefined ? { maxIndexEntries: this.#maxIndexEntries } : {}),
    });
    if (!img) throw new SourceError('IMAGE_NOT_FOUND', `image ${ref.string} not in layout`, { source: dir });
    return img;
  }

  async #manifest(dir: string, tagOrDigest: string): Promise<FetchedDocument | undefined> {
    if (isDigest(tagOrDigest)) {
      const bytes = await readSmall(blobPath(dir, tagOrDigest), `manifest ${tagOrDigest}`, dir);
      if (!bytes) return undefined;
      const entry = (await readLayoutIndex(dir))?.find((e) => e.digest === tagOrDigest);
      return { bytes, ...(entry?.mediaType ? { contentType: entry.mediaType } : {}) };
    }
    const entries = await readLayoutIndex(dir);
    const entry = entries?.filter((e) => e.refName === tagOrDigest).at(-1);
    if (!entry) return undefined;
    const bytes = await readSmall(blobPath(dir, entry.digest), `manifest ${entry.digest}`, dir);
    if (!bytes) throw new SourceError('LAYOUT_INVALID', `index.json names ${entry.digest} for tag ${tagOrDigest} but the blob is missing`, { source: dir });
    // the digest index.json names is checked by the resolver like a Docker-Content-Digest
    return { bytes, claimedDigest: entry.digest, ...(entry.mediaType ? { contentType: entry.mediaType } : {}) };
  }

  /**
   * The blob file named by `digest`. Its name binds nothing (anyone who may write the tree may put
   * anything there, and the layout's own manifest pins only its own claims): with `bound` the whole
   * file is hashed first (streamed, in pieces) and refused unless it hashes to `digest` (audit H6).
   */
  async openBlob(ref: ImageReference, digest: Digest, size: number | undefined, signal?: AbortSignal, bound?: boolean): Promise<RandomAccessBlob> {
    const path = blobPath(layoutDir(this.root, ref), digest);
    let blob: FileBlob;
    try {
      blob = await FileBlob.open(path);
    } catch (e) {
      if (isMissing(e)) throw new SourceError('BLOB_NOT_FOUND', 'blob not in layout', { blob: digest, source: this.name });
      throw new SourceError('LAYOUT_INVALID', `blob file: ${(e as Error).message}`, { blob: digest, source: path }, { cause: e });
    }
    if (size !== undefined && blob.size !== size) {
      await blob.close();
      throw new SourceError('LAYOUT_INVALID', `blob file has ${blob.size} bytes, descriptor says ${size}`, { blob: digest, source: path });
    }
    if (bound) await this.#checkWhole(blob, digest, path, signal);
    return blob;
  }

  async #checkWhole(blob: FileBlob, digest: Digest, path: string, signal: AbortSignal | undefined): Promise<void> {
    let actual: Digest;
    try {
      actual = await hashBlob(blob, digest, signal);
    } catch (e) {
      await blob.close();
      throw new SourceError('LAYOUT_INVALID', `blob file: ${(e as Error).message}`, { blob: digest, source: path }, { cause: e });
    }
    if (actual === digest) return;
    await blob.close();
    this.#logger.warn('dfs.blob_digest_mismatch', { blob: digest, actual, source: path });
    throw new SourceError('LAYOUT_INVALID', `blob file hashes to ${actual}, not to the digest it is named by`, { blob: digest, source: path });
  }
}
