/**
 * One HTTP exchange with a registry endpoint, with authentication and redirects handled, on a
 * bounded keep-alive undici Agent (at most `connectionsPerHost` sockets per origin).
 *
 * Redirects are followed by hand (undici's request() does not follow them): the same method and
 * headers (notably Range) go to the Location, but Authorization only when the origin is unchanged —
 * presigned storage URLs must not see registry credentials. Status handling other than 401 and 3xx
 * is left to the caller, which also decides about retries (see backoff.ts).
 */
import { Agent, request, type Dispatcher } from 'undici';
import type { Logger } from '../../core/log.js';
import { SourceError } from '../errors.js';
import { Authenticator } from './authenticator.js';
import { discard, transportError, type BodyStream } from './body.js';
import type { Endpoint } from './registry-route.js';
import { parseWwwAuthenticate } from './www-authenticate.js';
import type { CredentialProvider } from '../credentials.js';

export interface HttpClientOptions {
  readonly credentials: CredentialProvider;
  readonly logger: Logger;
  readonly now: () => number;
  /** Time to wait for response headers, and the longest idle gap inside a body. */
  readonly timeoutMs: number;
  readonly connectionsPerHost: number;
  readonly userAgent: string;
  readonly maxRedirects: number;
  /** Replace the Agent (tests); the client then does not close it. */
  readonly dispatcher?: Dispatcher;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: BodyStream;
  /** Final URL (after redirects). */
  readonly url: string;
  /** Whether the answer came from a redirect target (another origin). */
  readonly redirected: boolean;
}

export interface HttpRequest {
  readonly method: 'GET' | 'HEAD';
  /** Path under /v2/<repository>, e.g. "/blobs/sha256:…"; ignored when `url` is given. */
  readonly path: string;
  readonly headers?: Record<string, string>;
  /** Start at this absolute URL instead (a cached redirect target); no registry auth is sent to it. */
  readonly url?: string;
  readonly signal?: AbortSignal;
}

export function header(h: HttpResponse['headers'], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

export class HttpClient {
  readonly #o: HttpClientOptions;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly auth: Authenticator;

  constructor(o: HttpClientOptions) {
    this.#o = o;
    this.#ownsDispatcher = o.dispatcher === undefined;
    this.#dispatcher = o.dispatcher ?? new Agent({ connections: o.connectionsPerHost, keepAliveTimeout: 30_000, keepAliveMaxTimeout: 120_000, pipelining: 1 });
    this.auth = new Authenticator({
      credentials: o.credentials,
      dispatcher: this.#dispatcher,
      logger: o.logger,
      now: o.now,
      userAgent: o.userAgent,
      timeoutMs: o.timeoutMs,
    });
  }

  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }

  async send(ep: Endpoint, req: HttpRequest): Promise<HttpResponse> {
    const start = req.url ?? `${ep.origin}/v2/${ep.repository}${req.path}`;
    const direct = req.url !== undefined && new URL(req.url).origin !== ep.origin;
    let authz = direct ? undefined : await this.auth.header(ep, req.signal);
    let res = await this.#follow(ep, start, req, authz, direct);
    if (res.status === 401 && !res.redirected) {
      const challenges = parseWwwAuthenticate(res.headers['www-authenticate']);
      await discard(res.body);
      authz = await this.auth.onUnauthorized(ep, challenges, authz, req.signal);
      res = await this.#follow(ep, start, req, authz, false);
      if (res.status === 401 && !res.redirected) {
        await discard(res.body);
        throw new SourceError(
          'REGISTRY_AUTH',
          `${ep.registry}: still unauthorized after authenticating for ${req.method} ${req.path}`,
          { status: 401, repository: ep.repository, source: ep.origin },
        );
      }
    }
    return res;
  }

  async #follow(ep: Endpoint, startUrl: string, req: HttpRequest, authz: string | undefined, startRedirected: boolean): Promise<HttpResponse> {
    let url = startUrl;
    let redirected = startRedirected;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': this.#o.userAgent, ...req.headers };
      const sameOrigin = new URL(url).origin === ep.origin;
      if (authz !== undefined && sameOrigin && !redirected) headers['authorization'] = authz;
      let r: Dispatcher.ResponseData;
      try {
        r = await request(
          url,
          { method: req.method, headers, dispatcher: this.#dispatcher, signal: req.signal, headersTimeout: this.#o.timeoutMs, bodyTimeout: this.#o.timeoutMs },
        );
      } catch (e) {
        if (req.signal?.aborted) throw e;
        throw transportError(`${req.method} ${redactUrl(url)}`, e, { repository: ep.repository, source: ep.origin });
      }
      const location = r.headers['location'];
      if (r.statusCode >= 300 && r.statusCode < 400 && r.statusCode !== 304 && typeof location === 'string') {
        await discard(r.body);
        if (hop >= this.#o.maxRedirects) {
          throw new SourceError(
            'REGISTRY_HTTP',
            `too many redirects for ${req.method} ${req.path}`,
            { status: r.statusCode, repository: ep.repository, source: ep.origin },
          );
        }
        const next = new URL(location, url).toString();
        if (new URL(next).origin !== ep.origin) redirected = true;
        this.#o.logger.debug('registry.redirect', { from: redactUrl(url), to: redactUrl(next), status: r.statusCode });
        url = next;
        continue;
      }
      return { status: r.statusCode, headers: r.headers, body: r.body as unknown as BodyStream, url, redirected };
    }
  }
}

/** Presigned URLs carry secrets in the query string: never log it. */
export function redactUrl(u: string): string {
  const q = u.indexOf('?');
  return q < 0 ? u : u.slice(0, q) + '?…';
}
