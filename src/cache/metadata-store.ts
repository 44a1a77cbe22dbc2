/**
 * Everything needed to serve a layer again after a restart or reboot without the network:
 *
 *   <stateDir>/metadata/objects/…          manifests, configs, indexes, LayerRecords — by digest
 *                                         (ObjectStore, durable: fsync + directory fsync)
 *   <stateDir>/metadata/refs/<h>.json      reference string → ResolvedImage summary (h = sha256 of
 *                                         the reference string)
 *   <stateDir>/metadata/layers/<alg>-<hex>.json   layer key → descriptor facts + LayerRecord digest
 *   <stateDir>/metadata/quarantine/<alg>-<hex>.json   blob digest → why it was quarantined
 *
 * Index files are small JSON written atomically. Nothing is trusted on load: document bytes are
 * re-hashed by the ObjectStore, and a ref summary is accepted only if every layer it lists agrees with
 * the verified manifest and config bytes (digest, size, media type, annotations, TOC digest
 * annotation, diff_id). The LayerRecord is returned as stored; loadLayerRecord (formats) re-verifies
 * its TOC digest. Anything inconsistent reads as "not known" (the catalog then asks the source).
 * Metadata is never evicted.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { digestAlgorithm, digestHex, isDigest, parseDigest, sha256Of, type Digest } from '../core/digest.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { LayerRecord } from '../formats/layer-reader.js';
import { parseReference, type ImageReference } from '../sources/reference.js';
import type { Platform, ResolvedImage, ResolvedLayer, ResolvedManifest } from '../sources/source.js';
import { privateDir, writeFileAtomic } from './atomic-file.js';
import { CacheError } from './errors.js';
import { ObjectStore } from './object-store.js';
import { STARGZ_TOC_DIGEST_ANNOTATION, ZSTD_CHUNKED_TOC_DIGEST_ANNOTATION } from '../formats/constants.js';

/** TOC annotation keys (docs/als-contract.md §4.1). */
const TOC_ANNOTATIONS = [STARGZ_TOC_DIGEST_ANNOTATION, ZSTD_CHUNKED_TOC_DIGEST_ANNOTATION];

/** What the catalog remembers about a served layer, independent of any one image. */
export interface StoredLayer {
  readonly key: Digest;
  readonly keyKind: 'blob' | 'toc';
  readonly blobDigest: Digest;
  readonly blobSize: number;
  readonly mediaType: string;
  readonly annotations: Readonly<Record<string, string>>;
  readonly tocDigest?: Digest;
  readonly diffId?: Digest;
  /** Reference strings the layer was served under: used to reopen the blob for ref-less lookups. */
  readonly refs: readonly string[];
}

export interface MetadataStoreOptions {
  readonly stateDir: string;
  readonly logger?: Logger;
}

interface RefFile {
  version: 1;
  reference: string;
  digest: string;
  mediaType: string;
  sourceName: string;
  hasIndex: boolean;
  manifests: {
    digest: string;
    mediaType: string;
    platform?: Platform;
    configDigest: string;
    layers: ResolvedLayer[];
  }[];
}

/** Why a layer's blob was quarantined (metadata/quarantine/<alg>-<hex of the blob digest>.json). */
export interface QuarantineRecord {
  /** Store key it was served under when the mismatch was found. */
  readonly key: string;
  readonly ref?: string;
  readonly code: string;
  readonly message: string;
  /** ms since the epoch */
  readonly at: number;
}

export class MetadataStore {
  readonly objects: ObjectStore;
  readonly #dir: string;
  readonly #tmp: string;
  readonly #log: Logger;

  private constructor(dir: string, tmp: string, objects: ObjectStore, log: Logger) {
    this.#dir = dir;
    this.#tmp = tmp;
    this.objects = objects;
    this.#log = log;
  }

  static async open(opts: MetadataStoreOptions): Promise<MetadataStore> {
    const dir = join(opts.stateDir, 'metadata');
    const tmp = join(opts.stateDir, 'tmp', 'metadata');
    const log = opts.logger ?? silentLogger;
    const objects = await ObjectStore.open({ dir: join(dir, 'objects'), tmpDir: tmp, durable: true, logger: log });
    for (const d of [dir, join(dir, 'refs'), join(dir, 'layers'), join(dir, 'quarantine')]) await privateDir(d);
    return new MetadataStore(dir, tmp, objects, log);
  }

  #refPath(refString: string): string {
    return join(this.#dir, 'refs', digestHex(sha256Of(Buffer.from(refString, 'utf8'))) + '.json');
  }
  #layerPath(key: Digest): string {
    return join(this.#dir, 'layers', `${digestAlgorithm(key)}-${digestHex(key)}.json`);
  }
  async #writeJson(path: string, v: unknown): Promise<void> {
    await writeFileAtomic(path, Buffer.from(JSON.stringify(v) + '\n'), { tmpDir: this.#tmp, durable: true });
  }
  async #readJson(path: string): Promise<unknown> {
    try {
      return JSON.parse(await readFile(path, 'utf8')) as unknown;
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOENT') this.#log.warn('metadata.unreadable', { file: path, error: e });
      return undefined;
    }
  }

  /**
   * Persist a resolved image: the documents by digest (their durable writes in parallel: one fsync
   * wait instead of one per document), then the ref summary that points at them, so a crash in
   * between leaves only unreferenced documents.
   */
  async saveImage(image: ResolvedImage): Promise<void> {
    const docs = new Map<Digest, Buffer>();
    if (image.indexBytes) docs.set(image.digest, image.indexBytes);
    for (const m of image.manifests) {
      docs.set(m.digest, m.manifestBytes);
      docs.set(m.configDigest, m.configBytes);
    }
    await Promise.all([...docs].map(([d, b]) => this.objects.put(d, b)));
    const f: RefFile = {
      version: 1,
      reference: image.reference.string,
      digest: image.digest,
      mediaType: image.mediaType,
      sourceName: image.sourceName,
      hasIndex: image.indexBytes !== undefined,
      manifests: image.manifests.map((m) => ({
        digest: m.digest,
        mediaType: m.mediaType,
        ...(m.platform ? { platform: m.platform } : {}),
        configDigest: m.configDigest,
        layers: m.layers.map((l) => ({ ...l })),
      })),
    };
    await this.#writeJson(this.#refPath(image.reference.string), f);
  }

  /** The image last resolved for `ref`, re-verified, or undefined. */
  async loadImage(ref: ImageReference): Promise<ResolvedImage | undefined> {
    const path = this.#refPath(ref.string);
    const raw = await this.#readJson(path);
    if (raw === undefined) return undefined;
    try {
      return await this.#rebuildImage(raw, ref);
    } catch (e) {
      this.#log.warn('metadata.ref_invalid', { file: path, reference: ref.string, error: e });
      return undefined;
    }
  }

  async #rebuildImage(raw: unknown, ref: ImageReference): Promise<ResolvedImage | undefined> {
    const f = raw as RefFile;
    if (f?.version !== 1 || f.reference !== ref.string || !Array.isArray(f.manifests)) throw invalid('bad ref file');
    const digest = parseDigest(f.digest, 'image digest');
    let indexBytes: Buffer | undefined;
    let indexed: Set<string> | undefined;
    if (f.hasIndex) {
      indexBytes = await this.objects.get(digest);
      if (!indexBytes) throw invalid('index bytes missing or corrupt');
      const idx = JSON.parse(indexBytes.toString('utf8')) as { manifests?: { digest?: unknown }[] };
      indexed = new Set((idx.manifests ?? []).map((m) => String(m.digest)));
    }
    const manifests: ResolvedManifest[] = [];
    for (const m of f.manifests) {
      const md = parseDigest(m.digest, 'manifest digest');
      const cd = parseDigest(m.configDigest, 'config digest');
      if (indexed ? !indexed.has(md) : md !== digest) throw invalid(`manifest ${md} not referenced by ${digest}`);
      const manifestBytes = await this.objects.get(md);
      const configBytes = await this.objects.get(cd);
      if (!manifestBytes || !configBytes) throw invalid('manifest/config bytes missing or corrupt');
      const layers = checkLayers(m.layers, manifestBytes, configBytes, cd);
      manifests.push({
        digest: md,
        mediaType: String(m.mediaType),
        ...(m.platform ? { platform: m.platform } : {}),
        configDigest: cd,
        layers,
        manifestBytes,
        configBytes,
      });
    }
    return {
      reference: parseReference(f.reference),
      digest,
      mediaType: String(f.mediaType),
      manifests,
      ...(indexBytes ? { indexBytes } : {}),
      sourceName: String(f.sourceName),
    };
  }

  /**
   * Persist a layer's record and descriptor facts under its key (merging `refs` with what is stored).
   * The record and the layer file are written in parallel (one fsync wait, not two in a row): the
   * caller answers for the layer only after both are durable, and a crash in between leaves a layer
   * file whose record is missing, which loadLayer reads as "not known" (re-resolved, never wrong).
   * `record`: the record, or its JSON bytes as the index worker made them (persisted as they are).
   */
  async saveLayer(layer: StoredLayer, record: LayerRecord | Buffer): Promise<void> {
    const bytes = Buffer.isBuffer(record) ? record : Buffer.from(JSON.stringify(record));
    const recordDigest = sha256Of(bytes);
    const prev = await this.loadLayerEntry(layer.key);
    const refs = [...new Set([...(prev?.layer.refs ?? []), ...layer.refs])];
    await Promise.all([this.objects.put(recordDigest, bytes), this.#writeJson(this.#layerPath(layer.key), { version: 1, ...layer, refs, recordDigest })]);
  }

  /** Add a reference under which an already stored layer was served. */
  async addLayerRef(key: Digest, refString: string): Promise<void> {
    const prev = await this.loadLayerEntry(key);
    if (!prev || prev.layer.refs.includes(refString)) return;
    await this.#writeJson(this.#layerPath(key), { version: 1, ...prev.layer, refs: [...prev.layer.refs, refString], recordDigest: prev.recordDigest });
  }

  async loadLayerEntry(key: Digest): Promise<{ layer: StoredLayer; recordDigest: Digest } | undefined> {
    const path = this.#layerPath(key);
    const raw = await this.#readJson(path);
    if (raw === undefined) return undefined;
    try {
      return parseLayerFile(raw, key);
    } catch (e) {
      this.#log.warn('metadata.layer_invalid', { file: path, error: e });
      return undefined;
    }
  }

  /**
   * The stored layer and its (digest-verified) record as its JSON bytes, unparsed (the index worker
   * parses it: a large layer's record never becomes strings on the daemon's heap), or undefined.
   */
  async loadLayerBytes(key: Digest): Promise<{ layer: StoredLayer; record: Buffer } | undefined> {
    const e = await this.loadLayerEntry(key);
    if (!e) return undefined;
    const bytes = await this.objects.get(e.recordDigest);
    if (!bytes) {
      this.#log.warn('metadata.record_missing', { layer: key, record: e.recordDigest });
      return undefined;
    }
    return { layer: e.layer, record: bytes };
  }

  /** The stored layer and its (digest-verified) record, or undefined. */
  async loadLayer(key: Digest): Promise<{ layer: StoredLayer; record: LayerRecord } | undefined> {
    const raw = await this.loadLayerBytes(key);
    if (!raw) return undefined;
    const { layer: storedLayer, record: bytes } = raw;
    try {
      const record = JSON.parse(bytes.toString('utf8')) as LayerRecord;
      if (record?.version !== 1 || typeof record.payload !== 'string') throw invalid('bad record');
      return { layer: storedLayer, record };
    } catch (err) {
      this.#log.warn('metadata.record_invalid', { layer: key, error: err });
      return undefined;
    }
  }

  /**
   * Remember that the blob `blobDigest` does not match what its TOC says (survives restarts: the
   * layer is served quarantined again, never from a fresh resolution that trusts the TOC).
   */
  async saveQuarantine(blobDigest: Digest, q: QuarantineRecord): Promise<void> {
    await this.#writeJson(this.#quarantinePath(blobDigest), { version: 1, ...q });
  }

  async loadQuarantine(blobDigest: Digest): Promise<QuarantineRecord | undefined> {
    const raw = (await this.#readJson(this.#quarantinePath(blobDigest))) as Record<string, unknown> | undefined;
    if (raw === undefined) return undefined;
    const ok =
      raw?.['version'] === 1 &&
      typeof raw['key'] === 'string' &&
      typeof raw['code'] === 'string' &&
      typeof raw['message'] === 'string' &&
      Number.isSafeInteger(raw['at']);
    // An unreadable record still means "quarantined": failing closed costs a refused layer, not a wrong byte.
    if (!ok) return { key: String(raw?.['key'] ?? blobDigest), code: 'LAYER_QUARANTINED', message: 'quarantine record unreadable', at: 0 };
    return {
      key: raw['key'] as string,
      ...(typeof raw['ref'] === 'string' ? { ref: raw['ref'] } : {}),
      code: raw['code'] as string,
      message: raw['message'] as string,
      at: raw['at'] as number,
    };
  }

  #quarantinePath(blobDigest: Digest): string {
    return join(this.#dir, 'quarantine', `${digestAlgorithm(blobDigest)}-${digestHex(blobDigest)}.json`);
  }

  /** Keys of every stored layer (status, gc). */
  async listLayerKeys(): Promise<Digest[]> {
    const out: Digest[] = [];
    let names: string[] = [];
    try {
      names = await readdir(join(this.#dir, 'layers'));
    } catch {
      return out;
    }
    for (const n of names) {
      const m = /^([a-z0-9]+)-([0-9a-f]+)\.json$/.exec(n);
      const d = m ? `${m[1]}:${m[2]}` : '';
      if (isDigest(d)) out.push(d as Digest);
    }
    return out;
  }
}

/** A persisted file that is unreadable or disagrees with its verified documents: the caller logs it and re-resolves. */
function invalid(message: string): CacheError {
  return new CacheError('METADATA_INVALID', message);
}

function parseLayerFile(raw: unknown, key: Digest): { layer: StoredLayer; recordDigest: Digest } {
  const f = raw as Record<string, unknown>;
  if (f?.['version'] !== 1 || f['key'] !== key) throw invalid('bad layer file');
  const keyKind = f['keyKind'];
  if (keyKind !== 'blob' && keyKind !== 'toc') throw invalid('bad keyKind');
  const blobSize = f['blobSize'];
  if (!Number.isSafeInteger(blobSize) || (blobSize as number) < 0) throw invalid('bad blobSize');
  const ann = f['annotations'];
  if (typeof ann !== 'object' || ann === null || Object.values(ann).some((v) => typeof v !== 'string')) throw invalid('bad annotations');
  const refs = f['refs'];
  if (!Array.isArray(refs) || refs.some((r) => typeof r !== 'string')) throw invalid('bad refs');
  const layer: StoredLayer = {
    key,
    keyKind,
    blobDigest: parseDigest(f['blobDigest'], 'blobDigest'),
    blobSize: blobSize as number,
    mediaType: String(f['mediaType'] ?? ''),
    annotations: ann as Record<string, string>,
    ...(f['tocDigest'] !== undefined ? { tocDigest: parseDigest(f['tocDigest'], 'tocDigest') } : {}),
    ...(f['diffId'] !== undefined ? { diffId: parseDigest(f['diffId'], 'diffId') } : {}),
    refs: refs as string[],
  };
  if (keyKind === 'blob' && layer.blobDigest !== key) throw invalid('blob key does not match blobDigest');
  if (keyKind === 'toc' && layer.tocDigest !== key) throw invalid('toc key does not match tocDigest');
  return { layer, recordDigest: parseDigest(f['recordDigest'], 'recordDigest') };
}

/** Accept the stored layer list only if it agrees with the verified manifest and config. */
function checkLayers(stored: unknown, manifestBytes: Buffer, configBytes: Buffer, configDigest: Digest): ResolvedLayer[] {
  const man = JSON.parse(manifestBytes.toString('utf8')) as {
    config?: { digest?: unknown };
    layers?: { mediaType?: unknown; digest?: unknown; size?: unknown; annotations?: Record<string, unknown>; urls?: unknown }[];
  };
  const cfg = JSON.parse(configBytes.toString('utf8')) as { rootfs?: { diff_ids?: unknown[] } };
  if (man.config?.digest !== configDigest) throw invalid('manifest config digest mismatch');
  const ml = man.layers ?? [];
  if (!Array.isArray(stored) || stored.length !== ml.length) throw invalid('layer count mismatch');
  const diffIds = Array.isArray(cfg.rootfs?.diff_ids) ? cfg.rootfs.diff_ids : [];
  return stored.map((s: ResolvedLayer, i) => {
    const m = ml[i]!;
    const ann = m.annotations ?? {};
    const sameAnn = JSON.stringify(sortObj(ann)) === JSON.stringify(sortObj(s.annotations ?? {}));
    if (s.index !== i || s.digest !== m.digest || s.size !== m.size || s.mediaType !== (m.mediaType ?? s.mediaType) || !sameAnn) {
      throw invalid(`layer ${i} disagrees with the manifest`);
    }
    if (s.tocDigest !== undefined && !TOC_ANNOTATIONS.some((k) => ann[k] === s.tocDigest)) throw invalid(`layer ${i} TOC digest not in annotations`);
    if (s.diffId !== undefined && diffIds[i] !== s.diffId) throw invalid(`layer ${i} diff_id disagrees with the config`);
    return {
      index: i,
      mediaType: s.mediaType,
      digest: parseDigest(s.digest, 'layer digest'),
      size: s.size,
      annotations: { ...s.annotations },
      ...(s.tocDigest !== undefined ? { tocDigest: parseDigest(s.tocDigest, 'toc digest') } : {}),
      ...(s.diffId !== undefined ? { diffId: parseDigest(s.diffId, 'diff id') } : {}),
      ...(s.urls !== undefined ? { urls: [...s.urls] } : {}),
    };
  });
}

function sortObj(o: Record<string, unknown>): [string, unknown][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
