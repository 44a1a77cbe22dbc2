/**
 * TEST DOUBLE for image resolution only: a BlobSource over a local OCI-layout-like directory
 * (`blobs/sha256/<hex>` + a tag map), so catalog tests can resolve references without a registry.
 * Documents are parsed with the real sources/image-document.ts parser and blobs are real files read
 * through FileBlob; only the transport (HTTP) is replaced. Counts every call so tests can assert what
 * the catalog asked for. DeadSource stands in for "the network is gone": it throws on any call.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileBlob, type ByteRange, type RandomAccessBlob } from '../../../src/core/blob.js';
import { digestHex, sha256Of, verifyBytes, type Digest } from '../../../src/core/digest.js';
import { silentLogger } from '../../../src/core/log.js';
import { SourceError } from '../../../src/sources/errors.js';
import { buildResolvedManifest, MT, parseDocument } from '../../../src/sources/image-document.js';
import type { ImageReference } from '../../../src/sources/reference.js';
import type { BlobSource, ResolvedImage } from '../../../src/sources/source.js';

export interface TestLayer {
  blob: Buffer;
  mediaType?: string;
  annotations?: Record<string, string>;
  /** config.rootfs.diff_ids entry; null = leave it out of the config. */
  diffId: Digest | null;
}

/** Counts reads and bytes of a blob (used to prove single flight / no network). */
export class CountingBlob implements RandomAccessBlob {
  reads = 0;
  bytes = 0;
  constructor(readonly inner: RandomAccessBlob) {}
  get size(): number {
    return this.inner.size;
  }
  get name(): string {
    return this.inner.name;
  }
  async read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    this.reads++;
    this.bytes += length;
    return this.inner.read(offset, length, signal);
  }
  async readMany(ranges: readonly ByteRange[], signal?: AbortSignal): Promise<Buffer[]> {
    return Promise.all(ranges.map((r) => this.read(r.offset, r.length, signal)));
  }
  async close(): Promise<void> {
    await this.inner.close?.();
  }
}

export class LayoutSource implements BlobSource {
  readonly name = 'test-layout';
  readonly calls = { resolve: 0, openBlob: 0 };
  readonly blobs: CountingBlob[] = [];
  readonly #tags = new Map<string, Digest>();
  private constructor(readonly dir: string) {}

  static async create(dir: string): Promise<LayoutSource> {
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    return new LayoutSource(dir);
  }

  async addBlob(b: Buffer): Promise<Digest> {
    const d = sha256Of(b);
    await writeFile(join(this.dir, 'blobs', 'sha256', digestHex(d)), b);
    return d;
  }

  /** Write config + manifest for `layers` and tag them as `refString`. Returns the manifest digest. */
  async addImage(refString: string, layers: TestLayer[]): Promise<Digest> {
    const config = Buffer.from(JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: layers.filter((l) => l.diffId !== null).map((l) => l.diffId) },
    }));
    const configDigest = await this.addBlob(config);
    const descs = [];
    for (const l of layers) {
      const d = await this.addBlob(l.blob);
      descs.push({
        mediaType: l.mediaType ?? 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: d,
        size: l.blob.length,
        ...(l.annotations ? { annotations: l.annotations } : {}),
      });
    }
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      config: { mediaType: MT.ociConfig, digest: configDigest, size: config.length },
      layers: descs,
    }));
    const md = await this.addBlob(manifest);
    this.#tags.set(refString, md);
    return md;
  }

  async resolve(ref: ImageReference): Promise<ResolvedImage> {
    this.calls.resolve++;
    const md = ref.digest ?? this.#tags.get(ref.string);
    if (!md) throw new SourceError('IMAGE_NOT_FOUND', `no image ${ref.string}`, { source: this.name });
    const manifestBytes = verifyBytes(await readFile(join(this.dir, 'blobs', 'sha256', digestHex(md))), md, 'manifest');
    const parsed = parseDocument(manifestBytes, undefined, this.name);
    if (parsed.kind !== 'manifest') throw new Error('test layout holds manifests only');
    const configBytes = verifyBytes(await readFile(join(this.dir, 'blobs', 'sha256', digestHex(parsed.config.digest))), parsed.config.digest, 'config');
    const m = buildResolvedManifest({ digest: md, parsed, manifestBytes, configBytes }, this.name, silentLogger);
    return { reference: ref, digest: md, mediaType: parsed.mediaType, manifests: [m], sourceName: this.name };
  }

  async openBlob(_ref: ImageReference, digest: Digest): Promise<RandomAccessBlob> {
    this.calls.openBlob++;
    const b = new CountingBlob(await FileBlob.open(join(this.dir, 'blobs', 'sha256', digestHex(digest))));
    this.blobs.push(b);
    return b;
  }

  /** Total blob reads across every blob opened. */
  get blobReads(): number {
    return this.blobs.reduce((n, b) => n + b.reads, 0);
  }

  async close(): Promise<void> {
    for (const b of this.blobs) await b.close().catch(() => undefined);
  }
}

/** "The network is gone": any call fails. */
export class DeadSource implements BlobSource {
  readonly name = 'dead';
  calls = 0;
  async resolve(): Promise<ResolvedImage> {
    this.calls++;
    throw new SourceError('REGISTRY_TRANSPORT', 'source removed (test)', { source: this.name });
  }
  async openBlob(): Promise<RandomAccessBlob> {
    this.calls++;
    throw new SourceError('REGISTRY_TRANSPORT', 'source removed (test)', { source: this.name });
  }
}
