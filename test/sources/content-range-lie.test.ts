/**
 * Issue 9, row 8: a server's Content-Range must never make the client buffer more than it asked
 * for. A real registry cannot lie on demand, so a fake (a proxy in front of the real
 * docker-registry) answers the data read with `206` and a Content-Range claiming 512 MiB, then
 * streams the real first bytes followed by endless filler. Before the fix the client allocated
 * (and filled) a buffer of the claimed size for a 100-byte read.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../src/core/digest.js';
import { parseReference } from '../../src/sources/reference.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { startHttpProxy, type HttpFake } from '../helpers/registry-proxy.js';
import { pushImage, type PushedImage } from '../helpers/registry-push.js';
import { testSource } from '../helpers/registry-source.js';

const CLAIMED = 512 * 1024 * 1024;
const MIB = 1024 * 1024;

describe('a lying Content-Range (fake in front of a real registry)', () => {
  let reg: RegistryHandle;
  let img: PushedImage;
  let front: HttpFake;
  const layer = randomBytes(300_000);
  let sent = 0;
  let peakArrayBuffers = 0;

  beforeAll(async () => {
    reg = await startRegistry();
    img = await pushImage(reg, 'lie/app', 'v1', { layers: [{ bytes: layer }] });
    front = await startHttpProxy(reg.url, async (req, res, ctx) => {
      const range = req.headers.range;
      if (req.method !== 'GET' || !/\/blobs\/sha256:/.test(req.url ?? '') || !range || range === 'bytes=0-0') {
        ctx.send(await ctx.fetchUpstream());
        return;
      }
      // The lie: "here are bytes 0..512MiB-1", then the real first bytes and filler, as fast as the client takes them.
      res.writeHead(206, { 'content-type': 'application/octet-stream', 'content-range': `bytes 0-${CLAIMED - 1}/${CLAIMED}`, 'content-length': String(CLAIMED) });
      const piece = Buffer.alloc(64 * 1024, 0x7a);
      layer.copy(piece, 0, 0, piece.length);
      let closed = false;
      res.on('close', () => (closed = true));
      while (!closed && sent < CLAIMED) {
        peakArrayBuffers = Math.max(peakArrayBuffers, process.memoryUsage().arrayBuffers);
        sent += piece.length;
        if (!res.write(sent === piece.length ? piece : piece.fill(0x7a))) await new Promise((r) => { res.once('drain', r); res.once('close', r); });
      }
      res.end();
    });
  });
  afterAll(async () => {
    await front?.stop();
    await reg?.stop();
  });

  it('a 100-byte read gets its 100 bytes and holds no more than a few pieces of the body', async () => {
    const src = testSource();
    try {
      const before = process.memoryUsage().arrayBuffers;
      const blob = await src.openBlob(parseReference(`${front.host}/lie/app:v1`), img.layers[0]!.digest as Digest, undefined);
      expect(await blob.read(0, 100)).toEqual(layer.subarray(0, 100));
      // The client stopped reading after the bytes it wanted: the server got to send little.
      expect(sent).toBeLessThan(32 * MIB);
      expect(peakArrayBuffers - before).toBeLessThan(64 * MIB);
    } finally {
      await src.close();
    }
  });
});
