import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../src/core/digest.js';
import { AuthFileCredentials } from '../../src/sources/registry/auth-file.js';
import { parseReference } from '../../src/sources/reference.js';
import { PassThrough } from 'node:stream';
import { run as resolveCmd } from '../../src/cli/commands/resolve.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushImage, type PushedImage } from '../helpers/registry-push.js';
import { credentialsFor, staticCredentials, testSource } from '../helpers/registry-source.js';

describe('Basic auth (htpasswd, real registry)', () => {
  let reg: RegistryHandle;
  let img: PushedImage;
  const dir = mkdtempSync(join(tmpdir(), 'lazy-als-auth-'));
  const layer = randomBytes(200_000);
  beforeAll(async () => {
    reg = await startRegistry({ auth: 'basic' });
    img = await pushImage(reg, 'priv/app', 'v1', { layers: [{ bytes: layer }] });
  });
  afterAll(async () => {
    await reg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('pulls with credentials from an auth.json (namespaced key wins over the host key)', async () => {
    const authFile = join(dir, 'auth.json');
    writeFileSync(authFile, JSON.stringify({
      auths: {
        [reg.host]: { auth: Buffer.from('testuser:wrong').toString('base64') },
        [`${reg.host}/priv`]: { auth: Buffer.from('testuser:testpass').toString('base64') },
      },
    }));
    const src = testSource({ credentials: [new AuthFileCredentials({ authFile, env: {}, home: dir })] });
    try {
      const ref = parseReference(`${reg.host}/priv/app:v1`);
      const r = await src.resolve(ref);
      expect(r.manifests[0]!.digest).toBe(img.manifest.digest);
      const blob = await src.openBlob(ref, img.layers[0]!.digest as Digest, undefined);
      expect(await blob.read(1000, 5000)).toEqual(layer.subarray(1000, 6000));
    } finally {
      await src.close();
    }
  });

  it('lazy-als resolve prints manifests, layers and the answering source (--auth-file, --registries-conf)', async () => {
    const authFile = join(dir, 'cli-auth.json');
    // 0600 like podman login writes it (a file others can read gets a warning on stderr)
    writeFileSync(authFile, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('testuser:testpass').toString('base64') } } }), { mode: 0o600 });
    const confFile = join(dir, 'registries.conf');
    writeFileSync(confFile, `[[registry]]\nlocation = "${reg.host}"\ninsecure = true\n`);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (d) => (out += d));
    stderr.on('data', (d) => (err += d));
    const code = await resolveCmd([`${reg.host}/priv/app:v1`, '--auth-file', authFile, '--registries-conf', confFile], { stdout, stderr });
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toContain(`${reg.host}/priv/app:v1  ${img.manifest.digest}`);
    expect(out).toContain(`source: registry http://${reg.host}/priv/app`);
    expect(out).toContain(`blob=${img.layers[0]!.digest} size=${layer.length} toc=- diffID=${img.layers[0]!.digest}`);
    const bad = new PassThrough();
    let badErr = '';
    bad.on('data', (d) => (badErr += d));
    expect(await resolveCmd([`${reg.host}/priv/app:v1`, '--registries-conf', confFile, '--auth-file', join(dir, 'none.json')], { stdout, stderr: bad })).toBe(1);
    expect(badErr).toMatch(/REGISTRY_AUTH/);
  });

  it('fails with REGISTRY_AUTH without or with wrong credentials', async () => {
    const none = testSource();
    const wrong = testSource({ credentials: [staticCredentials({ [reg.host]: { username: 'testuser', password: 'nope' } })] });
    try {
      const ref = parseReference(`${reg.host}/priv/app:v1`);
      await expect(none.resolve(ref)).rejects.toMatchObject({ code: 'REGISTRY_AUTH' });
      await expect(wrong.resolve(ref)).rejects.toMatchObject({ code: 'REGISTRY_AUTH', status: 401 });
    } finally {
      await none.close();
      await wrong.close();
    }
  });
});

describe('Bearer token auth (real registry + test token server)', () => {
  let reg: RegistryHandle;
  let img: PushedImage;
  const layer = randomBytes(300_000);
  beforeAll(async () => {
    reg = await startRegistry({ auth: 'token' });
    img = await pushImage(reg, 'tok/app', 'v1', { layers: [{ bytes: layer }] });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('gets a repository-scoped pull token with Basic credentials and caches it', async () => {
    const ts = reg.tokenServer!;
    ts.requests.length = 0;
    const src = testSource({ credentials: [credentialsFor(reg)] });
    try {
      const ref = parseReference(`${reg.host}/tok/app:v1`);
      await src.resolve(ref);
      const blob = await src.openBlob(ref, img.layers[0]!.digest as Digest, undefined);
      for (let i = 0; i < 5; i++) expect(await blob.read(i * 1000, 10)).toEqual(layer.subarray(i * 1000, i * 1000 + 10));
      expect(ts.requests).toHaveLength(1);
      expect(ts.requests[0]).toMatchObject({ scope: ['repository:tok/app:pull'], account: 'testuser', authorized: true });
    } finally {
      await src.close();
    }
  });

  it('anonymous token without access → typed REGISTRY_AUTH error', async () => {
    const src = testSource();
    try {
      await expect(src.resolve(parseReference(`${reg.host}/tok/app:v1`))).rejects.toMatchObject({ code: 'REGISTRY_AUTH' });
      expect(reg.tokenServer!.requests.at(-1)?.authorized).toBe(false);
    } finally {
      await src.close();
    }
  });

  it('re-authenticates when the registry starts rejecting a cached token mid-pull', async () => {
    const ts = reg.tokenServer!;
    // Tokens the registry accepts for ~2 s while the client is told they last 5 minutes, so the
    // client keeps using it until the registry answers 401.
    ts.lifetimeSeconds = 2;
    ts.reportedExpiresIn = 300;
    ts.requests.length = 0;
    const src = testSource({ credentials: [credentialsFor(reg)] });
    try {
      const ref = parseReference(`${reg.host}/tok/app:v1`);
      const blob = await src.openBlob(ref, img.layers[0]!.digest as Digest, undefined);
      expect(await blob.read(0, 100)).toEqual(layer.subarray(0, 100));
      expect(ts.requests).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 3500)); // let the token expire (not a timing assertion)
      expect(await blob.read(5000, 100)).toEqual(layer.subarray(5000, 5100));
      expect(ts.requests).toHaveLength(2);
    } finally {
      ts.lifetimeSeconds = 300;
      await src.close();
    }
  });
});
