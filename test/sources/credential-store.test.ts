import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { main as helperMain } from '../../src/cli/auth-helper.js';
import { CredentialStore } from '../../src/sources/credential-store.js';
import { parseHelperPayload } from '../../src/sources/helper-payload.js';
import { SourceError } from '../../src/sources/errors.js';

describe('parseHelperPayload', () => {
  it('parses the c/image payload, normalising reference keys', () => {
    const e = parseHelperPayload(JSON.stringify({
      'docker.io/library/busybox:latest': { username: 'u', password: 'p' },
      ['quay.io/org/app@sha256:' + 'a'.repeat(64)]: { identityToken: 'tok' },
      'localhost:5000/anon:v1': {},
    }));
    expect(e.map((x) => x.ref.string)).toEqual(['docker.io/library/busybox:latest', `quay.io/org/app@sha256:${'a'.repeat(64)}`, 'localhost:5000/anon:v1']);
    expect(e[0]!.credentials).toEqual({ username: 'u', password: 'p' });
    expect(e[1]!.credentials).toEqual({ identityToken: 'tok' });
    expect(e[2]!.credentials).toEqual({});
  });
  it('rejects malformed payloads with a typed error', () => {
    for (const bad of ['', 'null', '[]', '{"busybox": 1}', '{"Not A Ref!": {}}', '{"busybox": {"username": 5, "password": "x"}}', '{"busybox": {"username": "u"}}', '{"busybox": {"username": "u", "password": "p"}']) {
      expect(() => parseHelperPayload(bad), bad).toThrow(SourceError);
    }
    expect(() => parseHelperPayload('{"a": "' + 'x'.repeat(1024 * 1024) + '"}')).toThrow(/1 MiB/);
  });
});

describe('CredentialStore', () => {
  it('matches by registry and repository with Docker Hub aliases, newest first, anonymous does not answer', async () => {
    const s = new CredentialStore({ maxEntries: 3 });
    s.addPayload('{"busybox": {"username": "hub", "password": "1"}}');
    s.addPayload('{"quay.io/a/b:v1": {"username": "qa", "password": "2"}, "quay.io/c/d:v1": {"username": "qc", "password": "3"}}');
    expect(await s.lookup({ registry: 'registry-1.docker.io', repository: 'library/busybox' })).toEqual({ username: 'hub', password: '1' });
    expect(await s.lookup({ domain: 'index.docker.io', path: 'library/busybox' })).toMatchObject({ username: 'hub' });
    expect(await s.lookup({ registry: 'quay.io', repository: 'a/b' })).toMatchObject({ username: 'qa' });
    expect(await s.lookup({ registry: 'quay.io', repository: 'x/y' })).toMatchObject({ username: 'qc' }); // newest for the host
    expect(await s.lookup({ registry: 'ghcr.io', repository: 'a/b' })).toBeUndefined();
    s.addPayload('{"ghcr.io/anon/x:1": {}}'); // evicts the oldest (busybox)
    expect(s.size).toBe(3);
    expect(await s.lookup({ registry: 'docker.io', repository: 'library/busybox' })).toBeUndefined();
    expect(await s.lookup({ registry: 'ghcr.io', repository: 'anon/x' })).toBeUndefined();
  });
});

describe('lazy-als-auth-helper → control socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lazy-als-helper-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('forwards stdin as POST /credentials over the unix socket; the store receives it', async () => {
    const store = new CredentialStore();
    const seen: Array<{ method: string | undefined; url: string | undefined; type: string | undefined }> = [];
    const server = createServer((req, res) => {
      seen.push({ method: req.method, url: req.url, type: req.headers['content-type'] });
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        try {
          store.addPayload(Buffer.concat(chunks));
          res.writeHead(204).end();
        } catch (e) {
          res.writeHead(400).end((e as Error).message);
        }
      });
    });
    const sock = join(dir, 'control.sock');
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const run = async (payload: string, argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; err: string }> => {
        const stdin = new PassThrough();
        const stderr = new PassThrough();
        let err = '';
        stderr.on('data', (d) => (err += d));
        stdin.end(payload);
        const code = await helperMain(argv, { stdin, stdout: new PassThrough(), stderr, env });
        return { code, err };
      };
      expect((await run('{"localhost:5000/x/y:1": {"username": "u", "password": "p"}}', [sock])).code).toBe(0);
      expect(await store.lookup({ registry: 'localhost:5000', repository: 'x/y' })).toEqual({ username: 'u', password: 'p' });
      expect(seen[0]).toEqual({ method: 'POST', url: '/credentials', type: 'application/json' });
      // socket from the environment
      expect((await run('{"quay.io/q/r:1": {"identityToken": "t"}}', [], { LAZY_ALS_SOCKET: sock })).code).toBe(0);
      expect(await store.lookup({ registry: 'quay.io', repository: 'q/r' })).toEqual({ identityToken: 't' });
      // garbage is refused before contacting the daemon
      const bad = await run('not json', [sock]);
      expect(bad.code).toBe(1);
      expect(bad.err).toMatch(/not JSON/);
      expect(seen).toHaveLength(2);
      // no daemon
      const none = await run('{"busybox": {}}', [join(dir, 'missing.sock')]);
      expect(none.code).toBe(1);
      expect(none.err).toMatch(/ENOENT|missing\.sock/);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
