/**
 * Random access to a registry blob over HTTP Range requests.
 *
 * readMany() sorts and coalesces the wanted ranges (gaps up to `gapBytes` are fetched rather than
 * split) and sends up to `maxRangesPerRequest` of them in one multi-range request. Answers handled:
 * 206 multipart/byteranges (each part placed by its own Content-Range), a 206 the server coalesced
 * into one range, and 200 (the whole blob: we keep the wanted bytes and stop reading past the last).
 * 400/416 to a multi-range request switch this blob to single-range requests for good.
 *
 * Redirects: the first GET goes to the registry, which may redirect to storage; the storage URL is
 * remembered and used directly (without registry auth) until it answers 403 (an expired presigned
 * URL), when we go back to the registry once for a fresh one. Every request is retried with backoff
 * on 429/5xx/transport errors/short bodies; a short body is never returned as data.
 */
import { checkRange, type ByteRange, type RandomAccessBlob } from '../../core/blob.js';
import type { SharedBufferPool } from '../../core/buffer-pool.js';
import type { Digest } from '../../core/digest.js';
import type { Logger } from '../../core/log.js';
import { SourceError, type SourceErrorContext } from '../errors.js';
import { withRetry, type RetryPolicy } from './backoff.js';
import { discard, readCapped, readExact, sharedBuffer, transportError } from './body.js';
import { header, redactUrl, type HttpClient, type HttpResponse } from './http-client.js';
import { boundaryOf, parseMultipartByteranges } from './multipart.js';
import { RangeFill } from './range-fill.js';
import { parseContentRange, planRanges, rangeHeader, type MergedRange } from './range-plan.js';
import type { Endpoint } from './registry-route.js';

export interface RangeOptions {
  /** Merge ranges whose gap is at most this many bytes. */
  readonly gapBytes: number;
  /** Ranges per multi-range request (1 = never multi-range). */
  readonly maxRangesPerRequest: number;
  /**
   * A merged range of at least 2 × this many bytes is fetched as several sub-ranges in parallel
   * (each on its own pooled connection, written straight into one result buffer): one TCP stream
   * is limited by its window and the server's per-request pace, several fill the link.
   */
  readonly splitBytes: number;
  /** Sub-ranges of one large range fetched at once, at most. */
  readonly maxParallel: number;
}

export const DEFAULT_RANGE_OPTIONS: RangeOptions = Object.freeze({ gapBytes: 4096, maxRangesPerRequest: 64, splitBytes: 4 * 1024 * 1024, maxParallel: 4 });

class MultiRangeRefused extends Error {}

export class RegistryBlob implements RandomAccessBlob {
  readonly size: number;
  readonly name: string;
  readonly digest: Digest;
  /** The open's probe got a 206: the server honours Range for this blob (a mirror has it stored). */
  readonly rangeHonoured: boolean;
  readonly #http: HttpClient;
  readonly #ep: Endpoint;
  readonly #retry: RetryPolicy;
  readonly #logger: Logger;
  readonly #opts: RangeOptions;
  /** Where single-range bodies are read into (reused memory: see release()). */
  readonly #pool: SharedBufferPool | undefined;
  #directUrl: string | undefined;
  #multi = true;

  constructor(a: {
    http: HttpClient;
    ep: Endpoint;
    digest: Digest;
    size: number;
    retry: RetryPolicy;
    logger: Logger;
    ranges: RangeOptions;
    directUrl?: string;
    rangeHonoured?: boolean;
    pool?: SharedBufferPool;
  }) {
    this.#pool = a.pool;
    this.rangeHonoured = a.rangeHonoured ?? true;
    this.#http = a.http;
    this.#ep = a.ep;
    this.digest = a.digest;
    this.size = a.size;
    this.#retry = a.retry;
    this.#logger = a.logger;
    this.#opts = a.ranges;
    this.#directUrl = a.directUrl;
    this.name = `${a.ep.registry}/${a.ep.repository}@${a.digest}`;
  }

  /** Whether multi-range requests are still used for this blob. */
  get multiRange(): boolean {
    return this.#multi && this.#opts.maxRangesPerRequest > 1;
  }

  /** Buffers of read/readMany nobody uses any more: their memory goes back to the pool. */
  release(bufs: readonly Buffer[]): void {
    this.#pool?.release(bufs);
  }

  #alloc(length: number): Buffer {
    return this.#pool ? this.#pool.acquire(length) : sharedBuffer(length);
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const [b] = await this.readMany([{ offset, length }], signal);
    return b!;
  }

  async readMany(ranges: readonly ByteRange[], signal?: AbortSignal): Promise<Buffer[]> {
    for (const r of ranges) checkRange(this, r.offset, r.length);
    const plan = planRanges(ranges, this.#opts.gapBytes);
    const merged = plan.merged;
    const data: Buffer[] = new Array<Buffer>(merged.length);
    const per = this.multiRange ? this.#opts.maxRangesPerRequest : 1;
    const split = this.#opts.splitBytes;
    // Large ranges go alone, split over parallel connections; the small ones are batched.
    const large = merged.flatMap((m, i) => (split > 0 && m.length >= 2 * split ? [i] : []));
    const small = merged.flatMap((m, i) => (split > 0 && m.length >= 2 * split ? [] : [i]));
    const batches: number[][] = [];
    for (let i = 0; i < small.length; i += per) batches.push(small.slice(i, i + per));
    await Promise.all([
      ...batches.map(async (idx) => {
        const got = await this.#fetchBatch(idx.map((i) => merged[i]!), signal);
        for (const [k, i] of idx.entries()) data[i] = got[k]!;
      }),
      ...large.map(async (i) => {
        data[i] = await this.#fetchSplit(merged[i]!, signal);
      }),
    ]);
    return plan.slices.map((s) => (s.merged < 0 ? Buffer.alloc(0) : data[s.merged]!.subarray(s.start, s.start + s.length)));
  }

  async #fetchBatch(targets: readonly MergedRange[], signal?: AbortSignal): Promise<Buffer[]> {
    if (targets.length > 1 && this.#multi) {
      try {
        return await this.#fetchOnce(targets, signal);
      } catch (e) {
        if (!(e instanceof MultiRangeRefused)) throw e;
        this.#multi = false;
        this.#logger.info('registry.multirange-off', { blob: this.name, status: e.message });
      }
    }
    if (targets.length === 1) return this.#fetchOnce(targets, signal);
    return Promise.all(targets.map(async (t) => (await this.#fetchOnce([t], signal))[0]!));
  }

  /** One large range as parallel sub-range requests, each written into its place in one buffer. */
  async #fetchSplit(t: MergedRange, signal?: AbortSignal): Promise<Buffer> {
    const out = this.#alloc(t.length);
    const n = Math.max(1, Math.min(Math.max(1, this.#opts.maxParallel), Math.floor(t.length / this.#opts.splitBytes)));
    const piece = Math.ceil(t.length / n);
    const subs: MergedRange[] = [];
    for (let off = 0; off < t.length; off += piece) subs.push({ offset: t.offset + off, length: Math.min(piece, t.length - off) });
    // one failed piece aborts its siblings (no point finishing a read that will be rejected)
    const ac = new AbortController();
    const onAbort = (): void => ac.abort(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.all(
        subs.map((sub) =>
          this.#fetchOnce([sub], ac.signal, out.subarray(sub.offset - t.offset, sub.offset - t.offset + sub.length)).catch((e: unknown) => {
            ac.abort(e);
            throw e;
          }),
        ),
      );
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    return out;
  }

  #ctx(targets: readonly MergedRange[], status?: number): SourceErrorContext {
    const first = targets[0]!;
    const last = targets[targets.length - 1]!;
    return {
      blob: this.digest,
      range: [first.offset, last.offset + last.length],
      repository: this.#ep.repository,
      source: this.#ep.registry,
      ...(status !== undefined ? { status } : {}),
    };
  }

  /** `into` (single target only): the buffer the bytes are written to, instead of a new one. */
  #fetchOnce(targets: readonly MergedRange[], signal?: AbortSignal, into?: Buffer): Promise<Buffer[]> {
    return withRetry(
      this.#retry,
      async () => {
        const res = await this.#get(rangeHeader(targets), signal);
        const got = await this.#consume(res, targets, into);
        if (into && got[0] !== into) got[0]!.copy(into);
        return into ? [into] : got;
      },
      (e, attempt, delayMs) => this.#logger.warn('registry.retry', { blob: this.name, attempt, delayMs, error: e }),
      signal,
    );
  }

  /** GET with Range, via the cached storage URL when we have one; 403 from storage → re-resolve once. */
  async #get(range: string, signal?: AbortSignal): Promise<HttpResponse> {
    const req = { method: 'GET' as const, path: `/blobs/${this.digest}`, headers: { range, 'accept-encoding': 'identity' }, ...(signal ? { signal } : {}) };
    const cached = this.#directUrl;
    let res = await this.#http.send(this.#ep, cached ? { ...req, url: cached } : req);
    if (res.redirected && res.status === 403) {
      await discard(res.body);
      this.#logger.info('registry.redirect-reresolve', { blob: this.name, url: redactUrl(res.url) });
      this.#directUrl = undefined;
      res = await this.#http.send(this.#ep, req);
    }
    if (res.redirected && (res.status === 200 || res.status === 206)) this.#directUrl = res.url;
    return res;
  }

  async #consume(res: HttpResponse, targets: readonly MergedRange[], into?: Buffer): Promise<Buffer[]> {
    const status = res.status;
    const ctx = this.#ctx(targets, status);
    const what = `GET ${this.name} ${rangeHeader(targets)}`;
    if (status === 206) {
      const fill = new RangeFill(targets);
      // (RangeFill allocates lazily, so the no-copy single-range path below costs nothing extra)
      const boundary = boundaryOf(header(res.headers, 'content-type'));
      if (boundary !== undefined) {
        const want = targets.reduce((s, t) => s + t.length, 0);
        const body = await readCapped(res.body, want + 512 * targets.length + 65536, what, ctx);
        const parts = parseMultipartByteranges(body, boundary);
        if (typeof parts === 'string') throw new SourceError('RANGE_RESPONSE_INVALID', `${what}: ${parts}`, ctx, { retryable: /truncated/.test(parts) });
        for (const p of parts) fill.put(p.range.first, p.data);
      } else {
        const cr = parseContentRange(header(res.headers, 'content-range'));
        if (!cr) {
          await discard(res.body);
          throw new SourceError('RANGE_RESPONSE_INVALID', `${what}: 206 without a valid Content-Range`, ctx);
        }
        const only = targets.length === 1 ? targets[0]! : undefined;
        if (only !== undefined && cr.first === only.offset && cr.last - cr.first + 1 === only.length) {
          return [await readExact(res.body, only.length, what, ctx, into ?? this.#alloc(only.length))]; // common case: no copy
        }
        // Coalesced, shifted or lying: the claimed length never sizes a buffer. Keep the requested
        // bytes as they stream past and stop after the last one (a server claiming 1.5 GB for a
        // 100-byte read costs 100 bytes of memory).
        await this.#streamInto(res, cr, fill, what, ctx);
      }
      const gap = fill.firstGap();
      if (gap >= 0) throw new SourceError('RANGE_RESPONSE_INVALID', `${what}: response does not cover range ${gap}`, ctx);
      return fill.buffers;
    }
    if (status === 200) return this.#fromFullBody(res, targets, what, ctx);
    await discard(res.body);
    if ((status === 400 || status === 416) && targets.length > 1) throw new MultiRangeRefused(String(status));
    if (status === 404) throw new SourceError('BLOB_NOT_FOUND', `${what}: blob not found`, ctx);
    if (status === 401 || status === 403) throw new SourceError('REGISTRY_AUTH', `${what}: access denied`, ctx);
    throw new SourceError('REGISTRY_HTTP', `${what}: unexpected status`, ctx, { retryable: status === 429 || status >= 500 });
  }

  /** A single-part 206 whose Content-Range is not exactly the request: copy what overlaps it. */
  async #streamInto(res: HttpResponse, cr: { first: number; last: number }, fill: RangeFill, what: string, ctx: SourceErrorContext): Promise<void> {
    const end = Math.min(fill.end, cr.last + 1);
    let pos = cr.first;
    try {
      for await (const c of res.body) {
        if (pos + c.byteLength > cr.last + 1) throw new SourceError('RANGE_RESPONSE_INVALID', `${what}: body longer than its Content-Range`, ctx);
        fill.put(pos, c);
        pos += c.byteLength;
        if (pos >= end) break; // leaving the loop destroys the body
      }
    } catch (e) {
      throw transportError(what, e, ctx);
    }
    if (pos < end) throw new SourceError('BODY_TRUNCATED', `${what}: body ended at ${pos}, before ${end}`, ctx, { retryable: true });
  }

  /** 200: the server ignored Range. Keep the wanted bytes, stop once past the last one. */
  async #fromFullBody(res: HttpResponse, targets: readonly MergedRange[], what: string, ctx: SourceErrorContext): Promise<Buffer[]> {
    const fill = new RangeFill(targets);
    const end = fill.end;
    let pos = 0;
    try {
      for await (const c of res.body) {
        fill.put(pos, c);
        pos += c.byteLength;
        if (pos >= end) break; // leaving the loop destroys the body
      }
    } catch (e) {
      throw transportError(what, e, ctx);
    }
    if (pos < end) throw new SourceError('BODY_TRUNCATED', `${what}: full body ended at ${pos}, before ${end}`, ctx, { retryable: true });
    if (fill.firstGap() >= 0) throw new SourceError('RANGE_RESPONSE_INVALID', `${what}: full body did not cover the request`, ctx);
    return fill.buffers;
  }
}
