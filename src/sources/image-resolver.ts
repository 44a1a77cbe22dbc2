/**
 * The resolve() algorithm shared by every source: fetch the document the reference names, verify it
 * (by the digest it was fetched by, or hash it and check any digest the server claimed), and for an
 * index resolve its platform manifests (store keys may name a layer of any platform), each fetched
 * by digest and verified, with its config blob (verified) for diff_ids.
 *
 * An index is scanned lazily and boundedly: entries in order of preference (the host's platform
 * first, then index order; attestations never), one at a time, stopping at the first manifest the
 * caller wants and after `maxIndexEntries` fetched manifests in any case — a 62 KB index of
 * hundreds of entries costs a few requests, not hundreds, and only the scanned documents are kept.
 */
import { sha256Of, verifyBytes, type Digest } from '../core/digest.js';
import type { Logger } from '../core/log.js';
import { DigestMismatchError } from '../core/errors.js';
import { SourceError } from './errors.js';
import { buildResolvedManifest, parseDocument, type Descriptor } from './image-document.js';
import type { ImageReference } from './reference.js';
import type { ManifestWanted, Platform, ResolvedImage, ResolvedManifest } from './source.js';

export interface FetchedDocument {
  readonly bytes: Buffer;
  readonly contentType?: string;
  /** Digest the server claims (Docker-Content-Digest) for a tag fetch. */
  readonly claimedDigest?: Digest;
}

export interface DocumentFetcher {
  /** By tag or by digest; `undefined` when the source does not have it (404). */
  manifest(tagOrDigest: string, signal?: AbortSignal): Promise<FetchedDocument | undefined>;
  /** A config blob by digest (size from the descriptor, for a cap check). */
  config(digest: Digest, size: number, signal?: AbortSignal): Promise<Buffer>;
}

const ATTESTATION = 'vnd.docker.reference.type';

/**
 * Platform manifests fetched per index at most, by default (config `max_index_entries`). Real
 * multi-platform indexes list a handful to a dozen platforms; 16 covers them (the host's first) and
 * bounds what a hostile index of hundreds of entries costs: ≤ 1 + 2 × 16 requests, 16 manifests kept.
 */
export const DEFAULT_MAX_INDEX_ENTRIES = 16;

export interface ResolveImageOptions {
  /** Stop at the first platform manifest this accepts. */
  readonly want?: ManifestWanted;
  /** Platform manifests fetched per index at most (default DEFAULT_MAX_INDEX_ENTRIES). */
  readonly maxIndexEntries?: number;
  /** Preferred platform (default: this host's). */
  readonly platform?: Platform;
}

const NODE_TO_OCI_ARCH: Readonly<Record<string, string>> = {
  x64: 'amd64',
  ia32: '386',
  arm64: 'arm64',
  arm: 'arm',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
};

/** This host's platform in OCI terms. */
export function hostPlatform(): Platform {
  return { os: process.platform, architecture: NODE_TO_OCI_ARCH[process.arch] ?? process.arch };
}

export async function resolveImage(
  ref: ImageReference,
  f: DocumentFetcher,
  sourceName: string,
  logger: Logger,
  signal?: AbortSignal,
  opts: ResolveImageOptions = {},
): Promise<ResolvedImage | undefined> {
  const wanted = ref.digest ?? ref.tag ?? 'latest';
  const top = await f.manifest(wanted, signal);
  if (!top) return undefined;
  const ctx = { source: `${sourceName} ${ref.string}` };
  let digest: Digest;
  if (ref.digest) {
    digest = ref.digest;
    verifyBytes(top.bytes, ref.digest, `manifest ${ref.string}`, ctx);
  } else {
    digest = sha256Of(top.bytes);
    if (top.claimedDigest && top.claimedDigest !== digest) {
      if (top.claimedDigest.startsWith('sha256:')) throw new DigestMismatchError(
        `manifest ${ref.string} (Docker-Content-Digest)`,
        top.claimedDigest,
        digest,
        ctx,
      );
      verifyBytes(top.bytes, top.claimedDigest, `manifest ${ref.string} (Docker-Content-Digest)`, ctx);
    }
  }
  const doc = parseDocument(top.bytes, top.contentType, ctx.source);
  if (doc.kind === 'manifest') {
    const configBytes = await fetchConfig(f, doc.config, signal);
    const m = buildResolvedManifest({ digest, parsed: doc, manifestBytes: top.bytes, configBytes }, ctx.source, logger);
    return { reference: ref, digest, mediaType: doc.mediaType, manifests: [m], sourceName };
  }
  const max = Math.max(1, opts.maxIndexEntries ?? DEFAULT_MAX_INDEX_ENTRIES);
  const host = opts.platform ?? hostPlatform();
  const isHost = (d: Descriptor): boolean => d.platform?.os === host.os && d.platform.architecture === host.architecture;
  const entries = doc.manifests.filter((d) => d.annotations[ATTESTATION] !== 'attestation-manifest');
  const ordered = [...entries.filter(isHost), ...entries.filter((d) => !isHost(d))];
  const manifests: ResolvedManifest[] = [];
  let fetched = 0;
  let found = false;
  for (const d of ordered) {
    if (fetched >= max) {
      logger.warn('source.index_truncated', { source: ctx.source, index: digest, entries: entries.length, fetched, limit: max });
      break;
    }
    fetched++;
    const m = await resolvePlatform(d, f, ctx.source, logger, signal);
    if (!m) continue;
    manifests.push(m);
    if (opts.want?.(m)) {
      found = true;
      break;
    }
  }
  if (manifests.length === 0) throw new SourceError('MANIFEST_INVALID', `index ${digest} has no fetchable image manifest among the ${fetched} tried`, ctx);
  const complete = !found && fetched === ordered.length;
  return { reference: ref, digest, mediaType: doc.mediaType, manifests, indexBytes: top.bytes, sourceName, complete };
}

async function resolvePlatform(d: Descriptor, f: DocumentFetcher, source: string, logger: Logger, signal?: AbortSignal): Promise<ResolvedManifest | undefined> {
  const got = await f.manifest(d.digest, signal);
  if (!got) {
    logger.warn('source.platform-missing', { source, manifest: d.digest, platform: d.platform });
    return undefined;
  }
  verifyBytes(got.bytes, d.digest, `platform manifest ${d.digest}`, { source });
  const doc = parseDocument(got.bytes, got.contentType ?? d.mediaType, source);
  if (doc.kind !== 'manifest') {
    logger.warn('source.nested-index-skipped', { source, manifest: d.digest });
    return undefined;
  }
  const configBytes = await fetchConfig(f, doc.config, signal);
  return buildResolvedManifest(
    { digest: d.digest, parsed: doc, manifestBytes: got.bytes, configBytes, ...(d.platform ? { platform: d.platform } : {}) },
    source,
    logger,
  );
}

async function fetchConfig(f: DocumentFetcher, c: Descriptor, signal?: AbortSignal): Promise<Buffer> {
  const bytes = await f.config(c.digest, c.size, signal);
  return verifyBytes(bytes, c.digest, `config ${c.digest}`, { blob: c.digest });
}
