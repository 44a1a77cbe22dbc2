/**
 * A STAND-IN for the real layer catalog (src/catalog/catalog.ts), used by the FUSE and daemon tests:
 * the mount, the kernel, overlayfs and every syscall are real; only where layers come from is
 * replaced, so faults (a provider that throws, a corrupt chunk) can be produced on demand.
 *
 * Layers are built the way the real readers build them: RawEntry[] → buildLayerIndex (the real
 * overlay view: whiteouts, opaque dirs, hardlinks), file content as sha256-named chunks of an
 * uncompressed blob read back through readVerifiedChunks (the real verifying reader).
 */
import { BufferBlob } from '../../../src/core/blob.js';
import { sha256Of, type Digest } from '../../../src/core/digest.js';
import { readVerifiedChunks } from '../../../src/formats/chunk-reader.js';
import type { ChunkRef, LayerNode, RawEntry, RawEntryType } from '../../../src/formats/model.js';
import { buildLayerIndex } from '../../../src/formats/overlay-view.js';
import type { LayerProvider, ServedLayerView } from '../../../src/fuse/layer-provider.js';
import { asByteString } from '../../../src/formats/byte-string.js';

export interface FileSpec {
  readonly name: string;
  readonly type?: RawEntryType;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly content?: Buffer | string;
  readonly linkName?: string;
  readonly xattrs?: Record<string, string | Buffer>;
  readonly devMajor?: number;
  readonly devMinor?: number;
  readonly mtimeSec?: number;
}

export interface StandInOptions {
  readonly chunkSize?: number;
  /** Flip a byte of this file's stored data after its digests were computed. */
  readonly corrupt?: string;
}

/** A key for tests: sha256 of a label. */
export const keyOf = (label: string): Digest => sha256Of(Buffer.from(label));

export function buildStandInLayer(key: Digest, files: readonly FileSpec[], opts: StandInOptions = {}): ServedLayerView {
  const chunkSize = opts.chunkSize ?? 64 * 1024;
  const parts: Buffer[] = [];
  let blobLen = 0;
  const raw: RawEntry[] = [];
  const corruptAt: number[] = [];
  for (const f of files) {
    const type = f.type ?? (f.content !== undefined ? 'reg' : 'dir');
    const data = type === 'reg' ? Buffer.from(f.content ?? '') : Buffer.alloc(0);
    const chunks: ChunkRef[] = [];
    for (let off = 0; off < data.length; off += chunkSize) {
      const piece = data.subarray(off, off + chunkSize);
      const at = blobLen + off;
      chunks.push({ digest: sha256Of(piece), fileOffset: off, size: piece.length, span: { offset: at, end: at + piece.length, innerOffset: 0 } });
    }
    if (f.name === opts.corrupt && data.length > 0) corruptAt.push(blobLen + Math.floor(data.length / 2));
    parts.push(data);
    blobLen += data.length;
    raw.push({
      name: asByteString(f.name),
      type,
      mode: f.mode ?? (type === 'dir' ? 0o755 : 0o644),
      uid: f.uid ?? 0,
      gid: f.gid ?? 0,
      size: data.length,
      mtimeSec: f.mtimeSec ?? 1_704_067_200,
      mtimeNsec: 0,
      ...(f.linkName !== undefined ? { linkName: asByteString(f.linkName) } : {}),
      devMajor: f.devMajor ?? 0,
      devMinor: f.devMinor ?? 0,
      xattrs: new Map(Object.entries(f.xattrs ?? {}).map(([k, v]) => [k, Buffer.from(v)])),
      chunks,
    });
  }
  const blobBytes = Buffer.concat(parts);
  for (const i of corruptAt) blobBytes[i] = blobBytes[i]! ^ 0xff;
  const blob = new BufferBlob(blobBytes, key);
  const index = buildLayerIndex(raw, { format: 'tar', compression: 'none', blobSize: blob.size, tocDigest: key, blobName: key }, {
    hideEstargzArtefacts: false,
  });
  const info = Buffer.from(JSON.stringify({ 'toc-digest': key, 'compressed-size': blob.size, 'diff-size': -1, compression: 0 }) + '\n');
  return {
    key,
    keyKind: 'toc',
    index,
    info,
    blobSize: blob.size,
    async readFile(node: LayerNode, path: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
      const end = Math.min(node.size, offset + length);
      if (offset >= end) return Buffer.alloc(0);
      const want = node.chunks.filter((c) => c.fileOffset < end && c.fileOffset + c.size > offset);
      const bufs = await readVerifiedChunks(blob, { compression: 'none', blobName: key }, want.map((chunk) => ({ chunk, entry: path })), signal);
      const first = want[0]!.fileOffset;
      return Buffer.concat(bufs).subarray(offset - first, end - first);
    },
    readBlob: (offset: number, length: number) => blob.read(offset, Math.min(length, blob.size - offset)),
  };
}

/** Stand-in catalog: a map of layers, a log of use/release calls, and switchable faults. */
export class StandInProvider implements LayerProvider {
  readonly layers = new Map<string, ServedLayerView>();
  readonly uses: [string | undefined, string][] = [];
  readonly releases: [string | undefined, string][] = [];
  lookups = 0;
  /** When set, lookup of this key throws (a broken catalog). */
  throwOnKey: string | undefined;
  /** When set, lookups take this long (a slow registry). */
  delayMs = 0;

  add(layer: ServedLayerView): this {
    this.layers.set(layer.key, layer);
    return this;
  }

  async lookup(_ref: string | undefined, key: Digest): Promise<ServedLayerView | undefined> {
    this.lookups++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (key === this.throwOnKey) throw new TypeError('stand-in catalog exploded');
    return this.layers.get(key);
  }

  use(ref: string | undefined, key: Digest): void {
    this.uses.push([ref, key]);
  }

  release(ref: string | undefined, key: Digest): void {
    this.releases.push([ref, key]);
  }
}
