/**
 * Image manifests, indexes and configs (OCI image-spec and Docker schema2): media types, parsing of
 * the fields lazy-als needs, and the layer facts derived from them (TOC digest from annotations,
 * diffID from the config). Parsing only: bytes arrive here already verified by image-resolver.ts.
 */
import { parseDigest, type Digest } from '../core/digest.js';
import type { Logger } from '../core/log.js';
import { SourceError } from './errors.js';
import type { Platform, ResolvedLayer, ResolvedManifest } from './source.js';
import { STARGZ_TOC_DIGEST_ANNOTATION, ZSTD_CHUNKED_TOC_DIGEST_ANNOTATION } from '../formats/constants.js';

export const MT = Object.freeze({
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
});

/** Accept header for manifest GETs (schema1 deliberately absent: it has no layer digests we trust). */
export const MANIFEST_ACCEPT = [MT.ociIndex, MT.ociManifest, MT.dockerList, MT.dockerManifest].join(', ');

/** Cap for manifests and configs, as containers/image. */
export const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;

const ANNOTATION_ESTARGZ_TOC = STARGZ_TOC_DIGEST_ANNOTATION;
const ANNOTATION_ZSTD_CHUNKED_TOC = ZSTD_CHUNKED_TOC_DIGEST_ANNOTATION;

const INDEX_TYPES = new Set<string>([MT.ociIndex, MT.dockerList]);
const MANIFEST_TYPES = new Set<string>([MT.ociManifest, MT.dockerManifest]);

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly annotations: Readonly<Record<string, string>>;
  readonly urls?: readonly string[];
  readonly platform?: Platform;
}

export type ParsedDocument =
  | { readonly kind: 'index'; readonly mediaType: string; readonly manifests: readonly Descriptor[] }
  | { readonly kind: 'manifest'; readonly mediaType: string; readonly config: Descriptor; readonly layers: readonly Descriptor[] };

function invalid(msg: string, source: string): SourceError {
  return new SourceError('MANIFEST_INVALID', msg, { source });
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function parseDescriptor(v: unknown, where: string, source: string): Descriptor {
  const o = obj(v);
  if (!o) throw invalid(`${where}: descriptor is not an object`, source);
  const mediaType = o['mediaType'];
  if (typeof mediaType !== 'string') throw invalid(`${where}: descriptor without mediaType`, source);
  let digest: Digest;
  try {
    digest = parseDigest(o['digest'], `${where}.digest`);
  } catch (e) {
    throw invalid(`${where}: ${(e as Error).message}`, source);
  }
  const size = o['size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(`${where}: bad size`, source);
  const annotations: Record<string, string> = {};
  const a = obj(o['annotations']);
  if (a) for (const [k, val] of Object.entries(a)) if (typeof val === 'string') annotations[k] = val;
  const urlsRaw = o['urls'];
  const urls = Array.isArray(urlsRaw) ? urlsRaw.filter((u): u is string => typeof u === 'string') : undefined;
  const p = obj(o['platform']);
  let platform: Platform | undefined;
  if (p && typeof p['os'] === 'string' && typeof p['architecture'] === 'string') {
    platform = { os: p['os'], architecture: p['architecture'], ...(typeof p['variant'] === 'string' ? { variant: p['variant'] } : {}) };
  }
  return { mediaType, digest, size, annotations, ...(urls ? { urls } : {}), ...(platform ? { platform } : {}) };
}

/** Classify and parse a manifest or index. `contentType` is the HTTP Content-Type, if any. */
export function parseDocument(bytes: Buffer, contentType: string | undefined, source: string): ParsedDocument {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(bytes.toString('utf8')));
  } catch {
    /* reported below */
  }
  if (!j) throw invalid('manifest is not a JSON object', source);
  const ct = contentType?.split(';')[0]?.trim().toLowerCase();
  const bodyType = typeof j['mediaType'] === 'string' ? (j['mediaType'] as string) : undefined;
  if (j['schemaVersion'] === 1) throw invalid('Docker schema1 manifests are not supported', source);
  let mediaType = bodyType ?? (ct && (INDEX_TYPES.has(ct) || MANIFEST_TYPES.has(ct)) ? ct : undefined);
  if (!mediaType) mediaType = Array.isArray(j['manifests']) ? MT.ociIndex : MT.ociManifest;
  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(j['manifests'])) throw invalid('index without manifests[]', source);
    return { kind: 'index', mediaType, manifests: j['manifests'].map((d, i) => parseDescriptor(d, `manifests[${i}]`, source)) };
  }
  if (MANIFEST_TYPES.has(mediaType)) {
    if (!Array.isArray(j['layers'])) throw invalid('manifest without layers[]', source);
    return {
      kind: 'manifest',
      mediaType,
      config: parseDescriptor(j['config'], 'config', source),
      layers: j['layers'].map((d, i) => parseDescriptor(d, `layers[${i}]`, source)),
    };
  }
  throw invalid(`unsupported manifest media type ${JSON.stringify(mediaType)}`, source);
}

/** config.rootfs.diff_ids, each validated; entries that are not digests become undefined. */
function diffIdsOf(configBytes: Buffer, source: string): (Digest | undefined)[] {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(configBytes.toString('utf8')));
  } catch {
    /* below */
  }
  if (!j) throw invalid('image config is not a JSON object', source);
  const ids = obj(j['rootfs'])?.['diff_ids'];
  if (!Array.isArray(ids)) return [];
  return ids.map((d) => {
    try {
      return parseDigest(d);
    } catch {
      return undefined;
    }
  });
}

export interface ManifestFacts {
  readonly digest: Digest;
  readonly parsed: Extract<ParsedDocument, { kind: 'manifest' }>;
  readonly platform?: Platform;
  readonly manifestBytes: Buffer;
  readonly configBytes: Buffer;
}

export function buildResolvedManifest(f: ManifestFacts, source: string, logger: Logger): ResolvedManifest {
  const diffIds = diffIdsOf(f.configBytes, source);
  const layers: ResolvedLayer[] = f.parsed.layers.map((d, index) => {
    const notes: string[] = [];
    const est = d.annotations[ANNOTATION_ESTARGZ_TOC];
    const zst = d.annotations[ANNOTATION_ZSTD_CHUNKED_TOC];
    let tocDigest: Digest | undefined;
    if (est !== undefined && zst !== undefined) {
      notes.push('both eStargz and zstd:chunked TOC annotations present: ambiguous, no TOC digest (c/image rejects such layers)');
    } else if (est !== undefined || zst !== undefined) {
      try {
        tocDigest = parseDigest(est ?? zst, 'TOC digest annotation');
      } catch {
        notes.push(`malformed TOC digest annotation ${JSON.stringify((est ?? zst)!.slice(0, 80))}`);
      }
    }
    const diffId = diffIds[index];
    if (notes.length) logger.warn('source.layer-note', { source, manifest: f.digest, layer: d.digest, notes });
    return {
      index,
      mediaType: d.mediaType,
      digest: d.digest,
      size: d.size,
      annotations: d.annotations,
      ...(tocDigest ? { tocDigest } : {}),
      ...(diffId ? { diffId } : {}),
      ...(d.urls ? { urls: d.urls } : {}),
      ...(notes.length ? { notes } : {}),
    };
  });
  return {
    digest: f.digest,
    mediaType: f.parsed.mediaType,
    ...(f.platform ? { platform: f.platform } : {}),
    configDigest: f.parsed.config.digest,
    layers,
    manifestBytes: f.manifestBytes,
    configBytes: f.configBytes,
  };
}
