/**
 * Behaviours the real registry (filesystem storage) cannot produce on demand are made by fakes in
 * front of it (test/helpers/registry-proxy.ts): redirects to a storage URL, 403 from an expired
 * storage URL, 5xx bursts, truncated bodies, servers without multi-range, tampered manifests.
 * The registry itself stays real; "killed mid-transfer" kills the real process.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../src/core/digest.js';
import { DigestMismatchError } from '../../src/core/errors.js';
import { SourceError } from '../../src/sources/errors.js';
import { parseReference } from '../../src/sources/reference.js';
import type { RegistryBlob } from '../../src/sources/registry/registry-blob.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { forwardTo, startHttpProxy, startHttpServer, startTcpRelay, type HttpFake } from '../helpers/registry-proxy.js';
import { pushImage, type PushedImage } from '../helpers/registry-push.js';
import { credentialsFor, staticCredentials, testSource } from '../helpers/registry-source.js';

const isBlobGet = (url: string | undefined, method: string | undefined): boolean => method === 'GET' && /\/blobs\/sha256:/.test(url ?? '');

describe('registry faults (fakes in front of a real registry)', () => {
  let reg: RegistryHandle;
  let img: PushedImage;
  const layer = randomBytes(1024 * 1024 + 3);
  const fakes: HttpFake[] = [];
  beforeAll(async () => {
    reg = await startRegistry({ auth: 'basic' });
    img = await pushImage(reg, 'f/app', 'v1', { layers: [{ bytes: layer }] });
  });
  afterEach(async () => {
    for (const f of fakes.splice(0)) await f.stop();
  });
  afterAll(async () => {
    await reg?.stop();
  });
  const digest = (): Digest => img.layers[0]!.digest as Digest;
  const creds = (host: string) => staticCredentials({ [host]: { username: 'testuser', password: 'testpass' } });
  const basic = 'Basic ' + Buffer.from('testuser:testpass').toString('base64');

  it('follows a 307 to storage without Authorization, keeps Range, reuses the storage URL, re-resolves after 403', async () => {
    let storage403 = 1;
    // Fake storage backend (what S3 behind a redirect would be): serves the registry's bytes itself.
    const storage = await startHttpServer(async (req, res) => {
      if (storage403-- > 0) {
        res.writeHead(403).end('expired');
        return;
      }
      const dg = new URL(req.url!, 'http://x').pathname.split('/').pop()!;
      const f = await forwardTo(reg.url, { ...req, url: `/v2/f/app/blobs/${dg}`, pipe: (d: NodeJS.WritableStream) => d.end() } as never, { range: req.headers.range, authorization: basic });
      res.writeHead(f.status, { 'content-type': String(f.headers['content-type']), 'content-range': String(f.headers['content-range'] ?? ''), 'content-length': String(f.body.length) }).end(f.body);
    });
    fakes.push(storage);
    const front = await startHttpProxy(reg.url, async (req, res, ctx) => {
      if (isBlobGet(req.url, req.method) && req.headers.authorization) {
        res.writeHead(307, { location: `${storage.url}/bucket/${req.url!.split('/').pop()}?X-Sig=secret` }).end();
        return;
      }
      ctx.send(await ctx.fetchUpstream());
    });
    fakes.push(front);
    const src = testSource({ credentials: [creds(front.host)] });
    try {
      const ref = parseReference(`${front.host}/f/app:v1`);
      const blob = await src.openBlob(ref, digest(), undefined); // probe: 307 → 403 … then re-resolve
      expect(await blob.read(100, 1000)).toEqual(layer.subarray(100, 1100));
      const got = await blob.readMany!([{ offset: 0, length: 10 }, { offset: 500_000, length: 10 }]);
      expect(got[1]).toEqual(layer.subarray(500_000, 500_010));
      expect(storage.requests.length).toBeGreaterThanOrEqual(3);
      for (const r of storage.requests) {
        expect(r.headers.authorization).toBeUndefined();
        expect(r.headers.range).toMatch(/^bytes=/);
      }
      // After the storage URL was learned, data reads go straight to storage.
      const frontBlobGets = front.requests.filter((r) => isBlobGet(r.url, r.method) && r.headers.authorization);
      expect(frontBlobGets.length).toBe(1 + 1); // the probe's 307 (→403) and the re-resolve's 307
    } finally {
      await src.close();
    }
  });

  it('retries a burst of 5xx with backoff and succeeds', async () => {
    let failures = 3;
    const front = await startHttpProxy(reg.url, async (req, res, ctx) => {
      if (isBlobGet(req.url, req.method) && req.headers.range !== 'bytes=0-0' && failures-- > 0) {
        res.writeHead(failures % 2 ? 503 : 429).end('busy');
        return;
      }
      ctx.send(await ctx.fetchUpstream());
    });
    fakes.push(front);
    const sleeps: number[] = [];
    const src = testSource({ credentials: [creds(front.host)], sleeps });
    try {
      const blob = await src.openBlob(parseReference(`${front.host}/f/app:v1`), digest(), undefined);
      expect(await blob.read(7, 70_000)).toEqual(layer.subarray(7, 70_007));
      expect(sleeps).toHaveLength(3);
      expect(sleeps[2]! >= sleeps[0]!).toBe(true); // exponential ceiling with a fixed random
    } finally {
      await src.close();
    }
  });

  it('gives a typed error after too many 5xx', async () => {
    const front = await startHttpProxy(reg.url, async (req, res, ctx) => {
      if (isBlobGet(req.url, req.method) && req.headers.range !== 'bytes=0-0') return void res.writeHead(502).end();
      ctx.send(await ctx.fetchUpstream());
    });
    fakes.push(front);
    const src = testSource({ credentials: [creds(front.host)] });
    try {
      const blob = await src.openBlob(parseReference(`${front.host}/f/app:v1`), digest(), undefined);
      const e = await blob.read(0, 10).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(SourceError);
      expect(e).toMatchObject({ code: 'REGISTRY_HTTP', status: 502, repository: 'f/app', context: { blob: digest(), range: [0, 10] } });
    } finally {
      await src.close();
    }
  });

  it('never returns short data from a truncated body: retries, then a typed error', async () => {
    let truncate = 1;
    const mk = (always: boolean) =>
      startHttpProxy(reg.url, async (req, res, ctx) => {
        const f = await ctx.fetchUpstream();
        if (isBlobGet(req.url, req.method) && req.headers.range !== 'bytes=0-0' && (always || truncate-- > 0)) {
          res.writeHead(f.status, { ...f.headers, 'content-length': String(f.body.length) });
          res.write(f.body.subarray(0, f.body.length >> 1));
          setTimeout(() => res.destroy(), 20);
          return;
        }
        ctx.send(f);
      });
    const once = await mk(false);
    const always = await mk(true);
    fakes.push(once, always);
    const a = testSource({ credentials: [creds(once.host)] });
    const b = testSource({ credentials: [creds(always.host)] });
    try {
      const blobA = await a.openBlob(parseReference(`${once.host}/f/app:v1`), digest(), undefined);
      expect(await blobA.read(1000, 200_000)).toEqual(layer.subarray(1000, 201_000));
      const blobB = await b.openBlob(parseReference(`${always.host}/f/app:v1`), digest(), undefined);
      const e = await blobB.read(1000, 200_000).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(SourceError);
      expect(['BODY_TRUNCATED', 'REGISTRY_TRANSPORT']).toContain((e as SourceError).code);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a large range is fetched as parallel sub-ranges into one buffer; a piece that always fails fails the read, typed', async () => {
    let failPiece: string | undefined;
    const f = await startHttpProxy(reg.url, async (req, res, ctx) => {
      if (isBlobGet(req.url, req.method) && failPiece !== undefined && req.headers.range === failPiece) {
        const up = await ctx.fetchUpstream();
        res.writeHead(up.status, { ...up.headers, 'content-length': String(up.body.length) });
        res.write(up.body.subarray(0, 100));
        setTimeout(() => res.destroy(), 20);
        return;
      }
      ctx.send(await ctx.fetchUpstream());
    });
    fakes.push(f);
    const src = testSource({ credentials: [creds(f.host)], ranges: { splitBytes: 128 * 1024, maxParallel: 4 } });
    try {
      const blob = (await src.openBlob(parseReference(`${f.host}/f/app:v1`), digest(), layer.length)) as RegistryBlob;
      const from = f.requests.length;
      const got = await blob.read(1001, 1024 * 1024 - 2000);
      expect(got.equals(layer.subarray(1001, 1001 + 1024 * 1024 - 2000))).toBe(true);
      const ranges = f.requests.slice(from).filter((r) => isBlobGet(r.url, r.method)).map((r) => String(r.headers.range));
      expect(ranges).toHaveLength(4); // 4 sub-ranges, in parallel, covering the range exactly
      const spans = ranges.map((r) => r.slice(6).split('-').map(Number) as [number, number]).sort((a, b) => a[0] - b[0]);
      expect(spans[0]![0]).toBe(1001);
      for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBe(spans[i - 1]![1] + 1);
      expect(spans.at(-1)![1]).toBe(1001 + 1024 * 1024 - 2000 - 1);
      failPiece = ranges.sort()[2];
      const e = await blob.read(1001, 1024 * 1024 - 2000).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(SourceError);
      expect(['BODY_TRUNCATED', 'REGISTRY_TRANSPORT']).toContain((e as SourceError).code);
    } finally {
      await src.close();
    }
  });

  it('handles a server that ignores Range (200 full body) and one that refuses multi-range (400)', async () => {
    const ignore = await startHttpProxy(reg.url, async (req, _res, ctx) => {
      const h = { ...req.headers };
      delete h.range;
      ctx.send(await ctx.fetchUpstream(h));
    });
    const refuse = await startHttpProxy(reg.url, async (req, res, ctx) => {
      if (String(req.headers.range ?? '').includes(',')) return void res.writeHead(400).end();
      ctx.send(await ctx.fetchUpstream());
    });
    fakes.push(ignore, refuse);
    const ranges = [{ offset: 10, length: 10 }, { offset: 600_000, length: 3000 }, { offset: 900_000, length: 1 }];
    for (const f of [ignore, refuse]) {
      const src = testSource({ credentials: [creds(f.host)] });
      try {
        const blob = (await src.openBlob(parseReference(`${f.host}/f/app:v1`), digest(), layer.length)) as RegistryBlob;
        const got = await blob.readMany(ranges);
        ranges.forEach((r, i) => expect(got[i]!.equals(layer.subarray(r.offset, r.offset + r.length))).toBe(true));
        if (f === refuse) {
          expect(blob.multiRange).toBe(false);
          expect(f.requests.filter((r) => String(r.headers.range).includes(',') && r.headers.authorization)).toHaveLength(1);
        }
      } finally {
        await src.close();
      }
    }
  });

  it('rejects a tampered manifest (digest mismatch) and a Docker-Content-Digest that lies', async () => {
    const tamper = await startHttpProxy(reg.url, async (req, _res, ctx) => {
      const f = await ctx.fetchUpstream();
      if (/\/manifests\//.test(req.url ?? '') && f.status === 200) {
        const j = JSON.parse(f.body.toString());
        j.annotations = { evil: 'yes' };
        f.body = Buffer.from(JSON.stringify(j));
      }
      ctx.send(f);
    });
    fakes.push(tamper);
    const src = testSource({ credentials: [creds(tamper.host)] });
    try {
      await expect(src.resolve(parseReference(`${tamper.host}/f/app@${img.manifest.digest}`))).rejects.toBeInstanceOf(DigestMismatchError);
      // by tag: the body is hashed and must match the Docker-Content-Digest the registry sent
      await expect(src.resolve(parseReference(`${tamper.host}/f/app:v1`))).rejects.toBeInstanceOf(DigestMismatchError);
    } finally {
      await src.close();
    }
  });
});

describe('registry killed mid-transfer (real process killed)', () => {
  let reg: RegistryHandle;
  afterAll(async () => {
    await reg?.stop();
  });
  it('the client gets a typed error, not a hang and not short data', async () => {
    reg = await startRegistry();
    const layer = randomBytes(4 * 1024 * 1024);
    const img = await pushImage(reg, 'k/app', 'v1', { layers: [{ bytes: layer }] });
    // The relay holds the response back after 1 MiB, so the kill lands mid-body.
    const relay = await startTcpRelay(reg.port, 1024 * 1024);
    const src = testSource({ credentials: [credentialsFor(reg)] });
    try {
      const blob = await src.openBlob(parseReference(`${relay.host}/k/app:v1`), img.layers[0]!.digest as Digest, layer.length);
      const pending = blob.read(0, layer.length).catch((e: unknown) => e);
      await relay.stalled;
      await reg.kill();
      const e = await pending;
      expect(e).toBeInstanceOf(SourceError);
      expect(['REGISTRY_TRANSPORT', 'BODY_TRUNCATED']).toContain((e as SourceError).code);
    } finally {
      await src.close();
      await relay.stop();
    }
  });
});
