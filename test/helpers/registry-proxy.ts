/**
 * Fakes in front of the real registry, for behaviours it cannot produce on demand (each test that
 * uses one says so): an HTTP proxy whose handler can answer requests itself (5xx bursts, 307
 * redirects, 400 to multi-range, truncated bodies) or forward them (optionally altered), and a TCP
 * relay that can stall a response mid-body so a test can kill the registry mid-transfer.
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse, type Server, type IncomingHttpHeaders } from 'node:http';
import { createServer as createNetServer, connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface Forwarded {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface ProxyContext {
  /** Forward to the upstream (optionally with changed request headers); returns the buffered answer. */
  fetchUpstream(headers?: IncomingHttpHeaders): Promise<Forwarded>;
  /** Send a buffered answer to the client. */
  send(f: Forwarded): void;
}

export type ProxyHandler = (req: IncomingMessage, res: ServerResponse, ctx: ProxyContext) => Promise<void> | void;

export interface RequestRecord {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
}

export interface HttpFake {
  readonly url: string;
  readonly host: string;
  readonly requests: RequestRecord[];
  stop(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function stopServer(server: Server): Promise<void> {
  return new Promise((r) => {
    server.closeAllConnections();
    server.close(() => r());
  });
}

export function forwardTo(upstream: string, req: IncomingMessage, headers: IncomingHttpHeaders = req.headers): Promise<Forwarded> {
  const u = new URL(req.url ?? '/', upstream);
  const h = { ...headers, host: u.host };
  return new Promise((resolve, reject) => {
    const up = httpRequest(u, { method: req.method, headers: h }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => resolve({ status: r.statusCode ?? 502, headers: r.headers, body: Buffer.concat(chunks) }));
      r.on('error', reject);
    });
    up.on('error', reject);
    req.pipe(up);
  });
}

export function sendForwarded(res: ServerResponse, f: Forwarded): void {
  const headers = { ...f.headers };
  delete headers['transfer-encoding'];
  delete headers['connection'];
  headers['content-length'] = String(f.body.length);
  res.writeHead(f.status, headers);
  res.end(f.body);
}

/** An HTTP server: `handler` decides; by default everything is forwarded to `upstream`. */
export async function startHttpProxy(upstream: string, handler?: ProxyHandler): Promise<HttpFake> {
  const requests: RequestRecord[] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const ctx: ProxyContext = {
      fetchUpstream: (headers) => forwardTo(upstream, req, headers),
      send: (f) => sendForwarded(res, f),
    };
    Promise.resolve(handler ? handler(req, res, ctx) : ctx.fetchUpstream().then((f) => ctx.send(f))).catch(() => {
      res.destroy();
    });
  });
  const host = await listen(server);
  return { url: `http://${host}`, host, requests, stop: () => stopServer(server) };
}

/** A plain HTTP server (e.g. a fake storage backend behind a redirect). */
export async function startHttpServer(handler: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>): Promise<HttpFake> {
  const requests: RequestRecord[] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    Promise.resolve(handler(req, res)).catch(() => res.destroy());
  });
  const host = await listen(server);
  return { url: `http://${host}`, host, requests, stop: () => stopServer(server) };
}

export interface TcpRelay {
  readonly url: string;
  readonly host: string;
  /** Resolves when some response has relayed more than `stallAfterBytes` and is now held back. */
  readonly stalled: Promise<void>;
  stop(): Promise<void>;
}

/**
 * A byte relay to `upstreamPort`. Once any response has relayed `stallAfterBytes` bytes, that
 * response is held back (no more bytes to the client) until the upstream closes, which then closes
 * the client side: exactly what a client sees when the registry dies mid-transfer.
 */
export async function startTcpRelay(upstreamPort: number, stallAfterBytes: number): Promise<TcpRelay> {
  let onStall!: () => void;
  const stalled = new Promise<void>((r) => (onStall = r));
  const sockets = new Set<Socket>();
  const server = createNetServer((client) => {
    sockets.add(client);
    const up = connect(upstreamPort, '127.0.0.1');
    sockets.add(up);
    let relayed = 0;
    let held = false;
    client.on('data', (d) => up.write(d));
    up.on('data', (d: Buffer) => {
      if (held) return;
      relayed += d.length;
      if (relayed > stallAfterBytes) {
        held = true;
        client.write(d.subarray(0, d.length - (relayed - stallAfterBytes)));
        onStall();
        return;
      }
      client.write(d);
    });
    const close = (): void => {
      client.destroy();
      up.destroy();
    };
    up.on('close', close);
    up.on('error', close);
    client.on('close', close);
    client.on('error', close);
  });
  const host = await new Promise<string>((r) => server.listen(0, '127.0.0.1', () => r(`127.0.0.1:${(server.address() as AddressInfo).port}`)));
  return {
    url: `http://${host}`,
    host,
    stalled,
    stop: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}
