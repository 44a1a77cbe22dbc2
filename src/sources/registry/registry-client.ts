/**
 * Registry operations on one endpoint: manifests (with the Accept list and a size cap), small blobs
 * (configs), blob probes (size + redirect target) and whole-blob streams (export). Retries with
 * backoff on 429/5xx/transport errors. Verification of what is fetched happens in the callers
 * (image-resolver.ts for documents, export for blobs, formats/ for layer bytes).
 */
import { parseDigest, type Digest } from '../../core/digest.js';
import type { Logger } from '../../core/log.js';
import { SourceError, type SourceErrorContext } from '../errors.js';
import { MANIFEST_ACCEPT, MAX_DOCUMENT_BYTES } from '../image-document.js';
import type { FetchedDocument } from '../image-resolver.js';
import { withRetry, type RetryPolicy } from './backoff.js';
import { discard, readCapped, type BodyStream } from './body.js';
import { header, type HttpClient, type HttpResponse } from './http-client.js';
import { parseContentRange } from './range-plan.js';
import { RegistryBlob, type RangeOptions } from './registry-blob.js';
import type { SharedBufferPool } from '../../core/buffer-pool.js';
import type { Endpoint } from './registry-route.js';

export interface RegistryClientOptions {
  readonly http: HttpClient;
  readonly retry: RetryPolicy;
  readonly logger: Logger;
  readonly ranges: RangeOptions;
  /** Reused memory for range bodies, shared by every blob (see core/buffer-pool.ts). */
  readonly pool?: SharedBufferPool;
}

function statusError(what: string, res: HttpResponse, ctx: SourceErrorContext): SourceError {
  const s = res.status;
  if (s === 401 || s === 403) return new SourceError('REGISTRY_AUTH', `${what}: access denied`, { ...ctx, status: s });
  return new SourceError('REGISTRY_HTTP', `${what}: unexpected status`, { ...ctx, status: s }, { retryable: s === 429 || s >= 500 });
}

export class RegistryClient {
  readonly #o: RegistryClientOptions;
  constructor(o: RegistryClientOptions) {
    this.#o = o;
  }

  #retry<T>(what: string, op: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return withRetry(this.#o.retry, op, (e, attempt, delayMs) => this.#o.logger.warn('registry.retry', { what, attempt, delayMs, error: e }), signal);
  }

  /** GET a manifest by tag or digest; undefined on 404. */
  manifest(ep: Endpoint, tagOrDigest: string, signal?: AbortSignal): Promise<FetchedDocument | undefined> {
    const what = `manifest ${ep.registry}/${ep.repository}:${tagOrDigest}`;
    const ctx: SourceErrorContext = { repository: ep.repository, source: ep.registry };
    return this.#retry(
      what,
      async () => {
        const res = await this.#o.http.send(
          ep,
          { method: 'GET', path: `/manifests/${tagOrDigest}`, headers: { accept: MANIFEST_ACCEPT }, ...(signal ? { signal } : {}) },
        );
        if (res.status === 404) {
          await discard(res.body);
          return undefined;
        }
        if (res.status !== 200) {
          await discard(res.body);
          throw statusError(what, res, ctx);
        }
        const len = Number(header(res.headers, 'content-length'));
        if (Number.isFinite(len) && len > MAX_DOCUMENT_BYTES) {
          await discard(res.body);
          throw new SourceError('BODY_TOO_LARGE', `${what}: ${len} bytes is over the ${MAX_DOCUMENT_BYTES}-byte manifest cap`, ctx);
        }
        const bytes = await readCapped(res.body, MAX_DOCUMENT_BYTES, what, ctx);
        const claimed = header(res.headers, 'docker-content-digest');
        let claimedDigest: Digest | undefined;
        if (claimed !== undefined) {
          try {
            claimedDigest = parseDigest(claimed.trim(), 'Docker-Content-Digest');
          } catch (e) {
            throw new SourceError('MANIFEST_INVALID', `${what}: malformed Docker-Content-Digest`, ctx, { cause: e });
          }
        }
        const ct = header(res.headers, 'content-type');
        return { bytes, ...(ct ? { contentType: ct } : {}), ...(claimedDigest ? { claimedDigest } : {}) };
      },
      signal,
    );
  }

  /** GET a small blob (config) whole, capped at 4 MiB. Unverified: the caller checks the digest. */
  smallBlob(ep: Endpoint, digest: Digest, signal?: AbortSignal): Promise<Buffer> {
    const what = `blob ${ep.registry}/${ep.repository}@${digest}`;
    const ctx: SourceErrorContext = { blob: digest, repository: ep.repository, source: ep.registry };
    return this.#retry(
      what,
      async () => {
        const res = await this.#o.http.send(ep, { method: 'GET', path: `/blobs/${digest}`, ...(signal ? { signal } : {}) });
        if (res.status === 404) {
          await discard(res.body);
          throw new SourceError('BLOB_NOT_FOUND', `${what}: not found`, { ...ctx, status: 404 });
        }
        if (res.status !== 200) {
          await discard(res.body);
          throw statusError(what, res, ctx);
        }
        return readCapped(res.body, MAX_DOCUMENT_BYTES, what, ctx);
      },
      signal,
    );
  }

  /**
   * Probe a blob with `Range: bytes=0-0`: learns its size (Content-Range total, or Content-Length of
   * a 200) and any redirect target. undefined on 404.
   */
  async openBlob(ep: Endpoint, digest: Digest, size: number | undefined, signal?: AbortSignal): Promise<RegistryBlob | undefined> {
    const what = `blob ${ep.registry}/${ep.repository}@${digest}`;
    const ctx: SourceErrorContext = { blob: digest, repository: ep.repository, source: ep.registry };
    return this.#retry(
      what,
      async () => {
        const req = {
          method: 'GET' as const,
          path: `/blobs/${digest}`,
          headers: { range: 'bytes=0-0', 'accept-encoding': 'identity' },
          ...(signal ? { signal } : {}),
        };
        let res = await this.#o.http.send(ep, req);
        if (res.redirected && res.status === 403) {
          // storage refused the URL it was just given (expired presigned URL): ask the registry again, once
          await discard(res.body);
          res = await this.#o.http.send(ep, req);
        }
        if (res.status === 404) {
          await discard(res.body);
          return undefined;
        }
        let total: number | undefined;
        if (res.status === 206) total = parseContentRange(header(res.headers, 'content-range'))?.total;
        else if (res.status === 200) total = Number(header(res.headers, 'content-length'));
        else {
          await discard(res.body);
          throw statusError(what, res, ctx);
        }
        if (res.status === 200) (res.body as { destroy?: () => void }).destroy?.();
        else await discard(res.body);
        if (total !== undefined && !Number.isSafeInteger(total)) total = undefined;
        if (size !== undefined && total !== undefined && size !== total) {
          throw new SourceError('RANGE_RESPONSE_INVALID', `${what}: registry reports ${total} bytes, descriptor says ${size}`, ctx);
        }
        const blobSize = size ?? total;
        if (blobSize === undefined) throw new SourceError('RANGE_RESPONSE_INVALID', `${what}: cannot learn the blob size`, ctx);
        return new RegistryBlob({
          http: this.#o.http,
          ep,
          digest,
          size: blobSize,
          retry: this.#o.retry,
          logger: this.#o.logger,
          ranges: this.#o.ranges,
          rangeHonoured: res.status === 206,
          ...(this.#o.pool ? { pool: this.#o.pool } : {}),
          ...(res.redirected ? { directUrl: res.url } : {}),
        });
      },
      signal,
    );
  }

  /** The whole blob as a stream (export). The caller hashes it. */
  streamBlob(ep: Endpoint, digest: Digest, signal?: AbortSignal): Promise<{ body: BodyStream; length: number | undefined }> {
    const what = `blob ${ep.registry}/${ep.repository}@${digest}`;
    const ctx: SourceErrorContext = { blob: digest, repository: ep.repository, source: ep.registry };
    return this.#retry(
      what,
      async () => {
        const res = await this.#o.http.send(
          ep,
          { method: 'GET', path: `/blobs/${digest}`, headers: { 'accept-encoding': 'identity' }, ...(signal ? { signal } : {}) },
        );
        if (res.status !== 200) {
          await discard(res.body);
          if (res.status === 404) throw new SourceError('BLOB_NOT_FOUND', `${what}: not found`, { ...ctx, status: 404 });
          throw statusError(what, res, ctx);
        }
        const len = Number(header(res.headers, 'content-length'));
        return { body: res.body, length: Number.isSafeInteger(len) ? len : undefined };
      },
      signal,
    );
  }
}
