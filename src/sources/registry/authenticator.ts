/**
 * Registry authentication (distribution token spec, as containers/image does it).
 *
 * We learn the scheme from the first 401 a registry origin sends (no separate GET /v2/ ping) and
 * remember it per origin. Basic: send credentials directly. Bearer: fetch a token for
 * `repository:<repo>:pull` from the realm (anonymously when we have no credentials; with an
 * identity token via the OAuth2 refresh_token grant), cache it per origin+scope until
 * issued_at + expires_in (expires_in < 60 counts as 60, as c/image does), and on a 401 with a
 * token drop it and fetch a fresh one. Concurrent requests share one in-flight token fetch.
 */
import { request, type Dispatcher } from 'undici';
import type { Logger } from '../../core/log.js';
import { SourceError } from '../errors.js';
import { hasSecret, type CredentialProvider, type Credentials } from '../credentials.js';
import { readCapped, transportError } from './body.js';
import type { Endpoint } from './registry-route.js';
import type { Challenge } from './www-authenticate.js';

export interface AuthenticatorOptions {
  readonly credentials: CredentialProvider;
  readonly dispatcher: Dispatcher;
  readonly logger: Logger;
  readonly now: () => number;
  readonly userAgent: string;
  readonly timeoutMs: number;
}

interface CachedToken {
  readonly header: string;
  readonly expiresAt: number;
}

const MAX_TOKEN_BODY = 1024 * 1024;
const EXPIRY_SLACK_MS = 5_000;

export class Authenticator {
  readonly #o: AuthenticatorOptions;
  readonly #challenges = new Map<string, Challenge>();
  readonly #tokens = new Map<string, CachedToken>();
  readonly #inflight = new Map<string, Promise<string>>();

  constructor(o: AuthenticatorOptions) {
    this.#o = o;
  }

  /** The Authorization header to send up front, if this origin is known to want one. */
  async header(ep: Endpoint, signal?: AbortSignal): Promise<string | undefined> {
    const ch = this.#challenges.get(ep.origin);
    if (!ch) return undefined;
    return this.#headerFor(ep, ch, false, signal);
  }

  /**
   * A request got 401. Remember the challenge, drop the token we sent, and return a header to retry
   * with. Throws REGISTRY_AUTH when there is nothing new to try.
   */
  async onUnauthorized(ep: Endpoint, challenges: readonly Challenge[], sent: string | undefined, signal?: AbortSignal): Promise<string> {
    const ch = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
    if (!ch) throw new SourceError(
      'REGISTRY_AUTH',
      `${ep.registry}: 401 without a usable WWW-Authenticate challenge`,
      { status: 401, repository: ep.repository, source: ep.origin },
    );
    this.#challenges.set(ep.origin, ch);
    if (ch.scheme === 'basic' && sent?.startsWith('Basic ')) {
      throw new SourceError('REGISTRY_AUTH', `${ep.registry}: credentials rejected`, { status: 401, repository: ep.repository, source: ep.origin });
    }
    return this.#headerFor(ep, ch, sent !== undefined, signal);
  }

  async #credentials(ep: Endpoint): Promise<Credentials | undefined> {
    return this.#o.credentials.lookup({ registry: ep.registry, repository: ep.repository });
  }

  async #headerFor(ep: Endpoint, ch: Challenge, refresh: boolean, signal?: AbortSignal): Promise<string> {
    if (ch.scheme === 'basic') {
      const c = await this.#credentials(ep);
      if (!c || c.username === undefined || c.password === undefined) {
        throw new SourceError(
          'REGISTRY_AUTH',
          `${ep.registry}: registry wants Basic auth and no credentials are configured`,
          { status: 401, repository: ep.repository, source: ep.origin },
        );
      }
      return 'Basic ' + Buffer.from(`${c.username}:${c.password}`).toString('base64');
    }
    const scope = `repository:${ep.repository}:pull`;
    const key = `${ep.origin} ${scope}`;
    const cached = this.#tokens.get(key);
    if (cached && !refresh && cached.expiresAt > this.#o.now()) return cached.header;
    if (refresh) this.#tokens.delete(key);
    let p = this.#inflight.get(key);
    if (!p) {
      p = this.#fetchToken(ep, ch, scope, signal)
        .then((t) => {
          this.#tokens.set(key, t);
          return t.header;
        })
        .finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, p);
    }
    return p;
  }

  async #fetchToken(ep: Endpoint, ch: Challenge, scope: string, signal?: AbortSignal): Promise<CachedToken> {
    const realm = ch.params['realm'];
    const ctx = { repository: ep.repository, source: realm ?? ep.origin };
    if (!realm || !/^https?:\/\//i.test(realm)) throw new SourceError('REGISTRY_AUTH', `${ep.registry}: Bearer challenge without an http(s) realm`, ctx);
    const creds = await this.#credentials(ep);
    const service = ch.params['service'];
    const scopes = [scope];
    const chScope = ch.params['scope'];
    if (chScope && chScope !== scope) scopes.push(chScope);
    const started = this.#o.now();
    const headers: Record<string, string> = { 'user-agent': this.#o.userAgent, accept: 'application/json' };
    let res: Dispatcher.ResponseData;
    try {
      if (creds?.identityToken) {
        const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'lazy-als' });
        if (service) form.set('service', service);
        for (const s of scopes) form.append('scope', s);
        headers['content-type'] = 'application/x-www-form-urlencoded';
        res = await request(realm, {
          method: 'POST',
          headers,
          body: form.toString(),
          dispatcher: this.#o.dispatcher,
          signal,
          headersTimeout: this.#o.timeoutMs,
          bodyTimeout: this.#o.timeoutMs,
        });
      } else {
        const u = new URL(realm);
        if (service) u.searchParams.set('service', service);
        for (const s of scopes) u.searchParams.append('scope', s);
        if (hasSecret(creds) && creds.username !== undefined) {
          u.searchParams.set('account', creds.username);
          headers['authorization'] = 'Basic ' + Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64');
        }
        res = await request(
          u,
          { method: 'GET', headers, dispatcher: this.#o.dispatcher, signal, headersTimeout: this.#o.timeoutMs, bodyTimeout: this.#o.timeoutMs },
        );
      }
    } catch (e) {
      throw transportError(`token request to ${realm}`, e, ctx);
    }
    const body = await readCapped(res.body, MAX_TOKEN_BODY, `token response from ${realm}`, ctx);
    if (res.statusCode !== 200) {
      const retryable = res.statusCode === 429 || res.statusCode >= 500;
      throw new SourceError('REGISTRY_AUTH', `token request to ${realm} failed`, { ...ctx, status: res.statusCode }, { retryable });
    }
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new SourceError('REGISTRY_AUTH', `token response from ${realm} is not JSON`, ctx, { cause: e });
    }
    const token = typeof j['token'] === 'string' && j['token'] ? j['token'] : j['access_token'];
    if (typeof token !== 'string' || !token) throw new SourceError('REGISTRY_AUTH', `token response from ${realm} has no token`, ctx);
    let expiresIn = typeof j['expires_in'] === 'number' ? j['expires_in'] : 60;
    if (expiresIn < 60) expiresIn = 60;
    // issued_at is the server's clock; measuring from our own request start avoids clock skew.
    const base = started;
    this.#o.logger.debug('registry.token', { registry: ep.registry, repository: ep.repository, expiresIn, anonymous: !hasSecret(creds) });
    return { header: `Bearer ${token}`, expiresAt: base + expiresIn * 1000 - EXPIRY_SLACK_MS };
  }
}
