/**
 * lazy-als-auth-helper: what registries.conf's `additional-layer-store-auth-helper` runs. c/image
 * writes `{"<ref>": {"username","password","identityToken"}}` to stdin and passes no arguments;
 * we check the payload and forward it unchanged as one `POST /credentials` (application/json) to
 * the daemon's control socket: argv[0] (a wrapper may pass one), else $LAZY_ALS_SOCKET, else the
 * daemon's default: /run/lazy-als/control.sock, or for rootless podman (which runs the helper as
 * root of its user namespace, with $_CONTAINERS_ROOTLESS_UID and the user's $XDG_RUNTIME_DIR)
 * $XDG_RUNTIME_DIR/lazy-als/control.sock. Exit 0 when the daemon accepted it (2xx).
 */
import { request } from 'node:http';
import { defaultPaths } from '../daemon/paths.js';
import { parseHelperPayload, MAX_HELPER_PAYLOAD_BYTES } from '../sources/helper-payload.js';


export interface HelperIo {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

async function readAll(s: NodeJS.ReadableStream, cap: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of s) {
    const b = typeof c === 'string' ? Buffer.from(c) : (c as Buffer);
    n += b.length;
    if (n > cap) throw new Error(`stdin larger than ${cap} bytes`);
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

export function postCredentials(socketPath: string, body: Buffer, timeoutMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method: 'POST',
        path: '/credentials',
        headers: { 'content-type': 'application/json', 'content-length': body.length, host: 'lazy-als' },
        timeout: timeoutMs,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (text.length < 4096) text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

export async function main(argv: string[], io: HelperIo): Promise<number> {
  const env = io.env ?? process.env;
  const socket = argv[0] || env['LAZY_ALS_SOCKET'] || defaultPaths(env).socketPath;
  try {
    const body = await readAll(io.stdin, MAX_HELPER_PAYLOAD_BYTES);
    const entries = parseHelperPayload(body); // refuse garbage here, with a readable message
    const res = await postCredentials(socket, body, io.timeoutMs ?? 10_000);
    if (res.status < 200 || res.status >= 300) {
      io.stderr.write(`lazy-als-auth-helper: daemon at ${socket} answered HTTP ${res.status}: ${res.text.trim().slice(0, 300)}\n`);
      return 1;
    }
    io.stderr.write(`lazy-als-auth-helper: forwarded credentials for ${entries.length} reference(s)\n`);
    return 0;
  } catch (e) {
    io.stderr.write(`lazy-als-auth-helper: ${(e as Error).message}\n`);
    return 1;
  }
}
