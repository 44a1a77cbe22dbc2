/**
 * The daemon's control channel: HTTP/1.1 over a unix socket (root-only, mode 0600).
 *   GET  /status       → JSON: mount, filesystem and catalog state
 *   POST /gc           → JSON: what the catalog's garbage collection did; body {"all": true} empties
 *                        the cache of everything not in use (`lazy-als gc --all` / `purge`)
 *   POST /credentials  → the auth helper's JSON payload (docs/als-contract.md §9), forwarded to the
 *                        credential sink; 204 on success
 * Errors answer {"error": {code, message}} with 4xx/5xx. `controlRequest` is the client side used
 * by `lazy-als status|gc` and the auth helper.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { LazyAlsError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { DaemonError } from './errors.js';

export interface ControlHandlers {
  status(): unknown;
  gc(options: GcOptions): unknown;
  credentials?(payload: unknown): unknown;
}

export interface GcOptions {
  /** Evict every cached object not needed by a layer in use (default: trim to the configured size). */
  readonly all?: boolean;
}

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    req.on('data', (d: Buffer) => {
      n += d.length;
      if (n > MAX_BODY) {
        reject(new DaemonError('CONTROL_SOCKET', `request body over ${MAX_BODY} bytes`));
        req.destroy();
      } else parts.push(d);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

export async function startControlSocket(path: string, handlers: ControlHandlers, logger: Logger): Promise<ControlServer> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  // A socket file left by a dead daemon refuses connections; one that answers belongs to a live daemon.
  if (await isControlAlive(path)) throw new DaemonError('MOUNT_BUSY', `another lazy-als answers on ${path}`);
  await unlink(path).catch(() => undefined);
  const server = createServer((req, res) => {
    void (async () => {
      const route = `${req.method ?? ''} ${(req.url ?? '').split('?')[0]}`;
      try {
        switch (route) {
          case 'GET /status':
            return send(res, 200, await handlers.status());
          case 'POST /gc': {
            const text = (await readBody(req)).toString('utf8').trim();
            let body: unknown = {};
            try {
              body = text === '' ? {} : JSON.parse(text);
            } catch {
              return send(res, 400, { error: { code: 'INVALID_ARGUMENT', message: 'body is not JSON' } });
            }
            const all = (body as { all?: unknown } | null)?.all === true;
            return send(res, 200, await handlers.gc({ all }));
          }
          case 'POST /credentials': {
            if (!handlers.credentials) return send(res, 501, { error: { code: 'NOT_SUPPORTED', message: 'no credential sink configured' } });
            let payload: unknown;
            try {
              payload = JSON.parse((await readBody(req)).toString('utf8'));
            } catch {
              return send(res, 400, { error: { code: 'CREDENTIALS_INVALID', message: 'body is not JSON' } });
            }
            await handlers.credentials(payload);
            return send(res, 204);
          }
          default:
            return send(res, 404, { error: { code: 'NOT_FOUND', message: `no route ${route}` } });
        }
      } catch (e) {
        logger.error('control.request_failed', { route, error: e });
        const code = e instanceof LazyAlsError ? e.code : 'INTERNAL';
        send(res, code === 'CREDENTIALS_INVALID' ? 400 : 500, { error: { code, message: (e as Error).message } });
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  logger.info('control.listening', { path });
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }).then(() => unlink(path).catch(() => undefined)),
  };
}

export interface ControlResponse {
  readonly status: number;
  readonly body: unknown;
}

export function controlRequest(path: string, method: 'GET' | 'POST', url: string, body?: unknown, timeoutMs = 30_000): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      {
        socketPath: path,
        method,
        path: url,
        timeout: timeoutMs,
        headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let parsed: unknown;
          if (text.trim()) {
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = text;
            }
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('timeout', () => req.destroy(new DaemonError('CONTROL_SOCKET', `no answer from ${path} within ${timeoutMs} ms`)));
    req.on('error', (e) =>
      reject(e instanceof DaemonError ? e : new DaemonError('CONTROL_SOCKET', `cannot reach the lazy-als daemon at ${path}: ${e.message}`, {}, { cause: e })),
    );
    req.end(payload);
  });
}

export async function isControlAlive(path: string, timeoutMs = 2000): Promise<boolean> {
  try {
    const r = await controlRequest(path, 'GET', '/status', undefined, timeoutMs);
    return r.status === 200;
  } catch {
    return false;
  }
}
