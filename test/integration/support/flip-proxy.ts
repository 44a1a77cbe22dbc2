/**
 * A FAKE in front of the real registry, for the one fault a real registry cannot produce on demand:
 * corrupted blob bytes. Every request is forwarded to the real docker-registry; while `flipAt` is
 * set, any blob response body that covers that absolute blob offset has that one byte inverted
 * (single-range 206, multipart/byteranges 206 and full 200 bodies are all handled). Setting
 * `flipAt = undefined` makes it a plain pass-through. `flipped` counts the bytes corrupted so far,
 * so a test can prove the corruption really happened.
 */
import type { IncomingMessage } from 'node:http';
import { startHttpProxy, type Forwarded, type HttpFake } from '../../helpers/registry-proxy.js';

export interface FlipProxy extends HttpFake {
  /** Blob digest whose bytes are corrupted. */
  blob: string | undefined;
  /** Absolute blob offset of the byte to invert; undefined = pass-through. */
  flipAt: number | undefined;
  readonly flipped: number;
}

function flipInBody(f: Forwarded, at: number): number {
  if (f.status === 200) {
    if (at < f.body.length) {
      f.body[at] = f.body[at]! ^ 0xff;
      return 1;
    }
    return 0;
  }
  if (f.status !== 206) return 0;
  const ct = String(f.headers['content-type'] ?? '');
  if (!/multipart\/byteranges/i.test(ct)) {
    const m = /bytes (\d+)-(\d+)\//.exec(String(f.headers['content-range'] ?? ''));
    if (!m) return 0;
    const first = Number(m[1]);
    const last = Number(m[2]);
    if (at < first || at > last) return 0;
    f.body[at - first] = f.body[at - first]! ^ 0xff;
    return 1;
  }
  // multipart: find each part's Content-Range header; its data starts after the blank line.
  let n = 0;
  const text = f.body.toString('latin1');
  const re = /Content-Range:\s*bytes (\d+)-(\d+)\/\d+\r\n(?:[^\r\n]*\r\n)*?\r\n/gi;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const first = Number(m[1]);
    const last = Number(m[2]);
    if (at >= first && at <= last) {
      const i = m.index + m[0].length + (at - first);
      f.body[i] = f.body[i]! ^ 0xff;
      n++;
    }
  }
  return n;
}

export async function startFlipProxy(upstream: string): Promise<FlipProxy> {
  let flipped = 0;
  const state: { blob: string | undefined; flipAt: number | undefined } = { blob: undefined, flipAt: undefined };
  const fake = await startHttpProxy(upstream, async (req: IncomingMessage, _res, ctx) => {
    const f = await ctx.fetchUpstream();
    const at = state.flipAt;
    if (at !== undefined && state.blob !== undefined && req.method === 'GET' && (req.url ?? '').includes(`/blobs/${state.blob}`)) {
      flipped += flipInBody(f, at);
    }
    ctx.send(f);
  });
  return Object.defineProperties(fake as FlipProxy, {
    blob: { get: () => state.blob, set: (v: string | undefined) => (state.blob = v), enumerable: true },
    flipAt: { get: () => state.flipAt, set: (v: number | undefined) => (state.flipAt = v), enumerable: true },
    flipped: { get: () => flipped, enumerable: true },
  });
}
