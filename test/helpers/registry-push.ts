/**
 * A tiny registry pusher for tests (no podman/skopeo needed): monolithic blob uploads
 * (POST /v2/<repo>/blobs/uploads/ then PUT <location>&digest=…), manifest PUTs, and helpers to push
 * a whole image (arbitrary layer blobs + a config with diff_ids) or a multi-platform index.
 * Handles Basic and Bearer challenges with the registry's test users. Reuse it to push eStargz or
 * zstd:chunked blobs made by the format writers: pass their bytes and annotations as layers.
 */
import { createHash } from 'node:crypto';
import type { RegistryHandle } from './registry.js';

export interface PushTarget {
  readonly url: string;
  readonly users?: Record<string, string>;
}

export interface LayerInput {
  readonly bytes: Buffer;
  readonly mediaType?: string;
  readonly annotations?: Record<string, string>;
  /** diff_id to record in the config (default: sha256 of bytes, correct for uncompressed tar). */
  readonly diffId?: string;
}

export interface PushedDescriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Record<string, string>;
  readonly platform?: { os: string; architecture: string; variant?: string };
}

export interface PushedImage {
  readonly manifest: PushedDescriptor;
  readonly manifestBytes: Buffer;
  readonly config: PushedDescriptor;
  readonly configBytes: Buffer;
  readonly layers: PushedDescriptor[];
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';

export function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

const tokenCache = new WeakMap<object, Map<string, string>>();

async function authFor(t: PushTarget, res: Response, repo: string): Promise<string | undefined> {
  const ch = res.headers.get('www-authenticate') ?? '';
  const [user, pass] = Object.entries(t.users ?? {})[0] ?? [];
  if (/^basic/i.test(ch)) return user ? 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64') : undefined;
  const realm = /realm="([^"]+)"/.exec(ch)?.[1];
  const service = /service="([^"]+)"/.exec(ch)?.[1];
  if (!realm) return undefined;
  const u = new URL(realm);
  if (service) u.searchParams.set('service', service);
  u.searchParams.set('scope', `repository:${repo}:pull,push`);
  const r = await fetch(u, user ? { headers: { authorization: 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64') } } : {});
  const j = (await r.json()) as { token?: string };
  return j.token ? `Bearer ${j.token}` : undefined;
}

/** fetch() with one authentication round when the registry answers 401. */
async function call(t: PushTarget, repo: string, url: string, init: RequestInit): Promise<Response> {
  let cache = tokenCache.get(t);
  if (!cache) tokenCache.set(t, (cache = new Map()));
  const withAuth = (a: string | undefined): RequestInit => ({ ...init, headers: { ...(init.headers as Record<string, string>), ...(a ? { authorization: a } : {}) } });
  let res = await fetch(url, withAuth(cache.get(repo)));
  if (res.status === 401) {
    await res.arrayBuffer();
    const a = await authFor(t, res, repo);
    if (a) cache.set(repo, a);
    res = await fetch(url, withAuth(a));
  }
  return res;
}

export async function pushBlob(t: PushTarget, repo: string, bytes: Buffer): Promise<{ digest: string; size: number }> {
  const digest = sha256(bytes);
  const start = await call(t, repo, `${t.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  await start.arrayBuffer();
  if (start.status !== 202) throw new Error(`blob upload start: HTTP ${start.status}`);
  const loc = new URL(start.headers.get('location') ?? '', t.url);
  loc.searchParams.set('digest', digest);
  const put = await call(t, repo, loc.toString(), { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
  await put.arrayBuffer();
  if (put.status !== 201) throw new Error(`blob upload PUT ${digest}: HTTP ${put.status}`);
  return { digest, size: bytes.length };
}

export async function pushManifest(t: PushTarget, repo: string, reference: string, bytes: Buffer, mediaType: string): Promise<string> {
  const res = await call(t, repo, `${t.url}/v2/${repo}/manifests/${reference}`, { method: 'PUT', body: bytes, headers: { 'content-type': mediaType } });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`manifest PUT ${repo}:${reference}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return sha256(bytes);
}

export interface ImageInput {
  readonly layers: readonly LayerInput[];
  /** Extra config fields; rootfs is filled in. */
  readonly config?: Record<string, unknown>;
  readonly platform?: { os: string; architecture: string; variant?: string };
  readonly manifestMediaType?: string;
}

/** Push layers, config and manifest; tag it when `tag` is given (else only by digest). */
export async function pushImage(t: PushTarget | RegistryHandle, repo: string, tag: string | undefined, img: ImageInput): Promise<PushedImage> {
  const layers: PushedDescriptor[] = [];
  for (const l of img.layers) {
    const { digest, size } = await pushBlob(t, repo, l.bytes);
    layers.push({ mediaType: l.mediaType ?? OCI_LAYER_GZIP, digest, size, ...(l.annotations ? { annotations: l.annotations } : {}) });
  }
  const platform = img.platform ?? { os: 'linux', architecture: 'amd64' };
  const configBytes = Buffer.from(
    JSON.stringify({ ...platform, ...img.config, rootfs: { type: 'layers', diff_ids: img.layers.map((l) => l.diffId ?? sha256(l.bytes)) } }),
  );
  const c = await pushBlob(t, repo, configBytes);
  const config: PushedDescriptor = { mediaType: OCI_CONFIG, digest: c.digest, size: c.size };
  const mediaType = img.manifestMediaType ?? OCI_MANIFEST;
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, config, layers }, null, 2));
  const digest = await pushManifest(t, repo, tag ?? sha256(manifestBytes), manifestBytes, mediaType);
  return { manifest: { mediaType, digest, size: manifestBytes.length, platform }, manifestBytes, config, configBytes, layers };
}

/** Push an image index over already-pushed manifests. Returns its digest and bytes. */
export async function pushIndex(t: PushTarget | RegistryHandle, repo: string, tag: string, manifests: readonly PushedDescriptor[], annotations?: Record<string, string>): Promise<{ digest: string; bytes: Buffer }> {
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests, ...(annotations ? { annotations } : {}) }, null, 2));
  const digest = await pushManifest(t, repo, tag, bytes, OCI_INDEX);
  return { digest, bytes };
}
