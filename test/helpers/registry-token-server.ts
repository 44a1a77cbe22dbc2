/**
 * A token server for the real registry's `auth: token` mode (distribution token spec), for tests.
 * Issues ES256 JWTs whose header carries the signing certificate (x5c); the registry trusts them
 * because that certificate is its `rootcertbundle`. Optional Basic credentials, a configurable
 * token lifetime (to expire tokens mid-pull), and a log of requests for assertions.
 */
import { createPrivateKey, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface TokenRequestLog {
  readonly scope: string[];
  readonly account: string | null;
  readonly authorized: boolean;
}

export interface TokenServer {
  readonly url: string;
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  readonly certPath: string;
  readonly requests: TokenRequestLog[];
  /** Seconds until tokens issued from now on stop being accepted by the registry. */
  lifetimeSeconds: number;
  /** expires_in reported to clients (lets a test make clients keep a token the registry rejects). */
  reportedExpiresIn: number;
  stop(): Promise<void>;
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url');
}

/** Registry 2.8 accepts exp/nbf with 60 s of leeway: exp is set this much earlier. */
export const REGISTRY_JWT_LEEWAY_S = 60;

export function makeSigningCert(dir: string): { keyPath: string; certPath: string } {
  const keyPath = join(dir, 'token-key.pem');
  const certPath = join(dir, 'token-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=lazy-als-test-token'], { stdio: 'ignore' });
  return { keyPath, certPath };
}

export async function startTokenServer(opts: { dir: string; users?: Record<string, string>; lifetimeSeconds?: number }): Promise<TokenServer> {
  const { keyPath, certPath } = makeSigningCert(opts.dir);
  const key: KeyObject = createPrivateKey(readFileSync(keyPath));
  const certDer = new X509Certificate(readFileSync(certPath)).raw;
  const service = 'lazy-als-test-registry';
  const issuer = 'lazy-als-test-issuer';
  const requests: TokenRequestLog[] = [];
  const state = { lifetimeSeconds: opts.lifetimeSeconds ?? 300, reportedExpiresIn: opts.lifetimeSeconds ?? 300 };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const u = new URL(req.url ?? '/', 'http://x');
    const scope = u.searchParams.getAll('scope');
    const account = u.searchParams.get('account');
    let authorized = false;
    const ah = req.headers['authorization'];
    if (ah?.startsWith('Basic ')) {
      const [user, ...rest] = Buffer.from(ah.slice(6), 'base64').toString().split(':');
      authorized = opts.users !== undefined && user !== undefined && opts.users[user] === rest.join(':');
      if (!authorized) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
        requests.push({ scope, account, authorized });
        return;
      }
    }
    requests.push({ scope, account, authorized });
    // Without credentials (when users are configured) grant nothing: the registry then answers 401.
    const grant = opts.users === undefined || authorized;
    const access = grant
      ? scope.map((s) => {
          const [type, ...rest] = s.split(':');
          const actions = rest.pop() ?? '';
          return { type, name: rest.join(':'), actions: actions.split(',') };
        })
      : [];
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'ES256', typ: 'JWT', x5c: [certDer.toString('base64')] };
    const claims = { iss: issuer, sub: account ?? '', aud: service, exp: now + state.lifetimeSeconds - REGISTRY_JWT_LEEWAY_S, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    const token = `${input}.${b64url(sig)}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: state.reportedExpiresIn, issued_at: new Date().toISOString() }));
  };
  const server: Server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    realm: `${url}/token`,
    service,
    issuer,
    certPath,
    requests,
    get lifetimeSeconds() {
      return state.lifetimeSeconds;
    },
    set lifetimeSeconds(v: number) {
      state.lifetimeSeconds = v;
    },
    get reportedExpiresIn() {
      return state.reportedExpiresIn;
    },
    set reportedExpiresIn(v: number) {
      state.reportedExpiresIn = v;
    },
    stop: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
