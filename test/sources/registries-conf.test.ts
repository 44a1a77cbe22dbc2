import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadRegistriesConf, parseRegistriesConf } from '../../src/sources/registry/registries-conf.js';
import { routeFor } from '../../src/sources/registry/registry-route.js';
import { parseReference } from '../../src/sources/reference.js';
import { startRegistry } from '../helpers/registry.js';
import { pushImage } from '../helpers/registry-push.js';
import { testSource } from '../helpers/registry-source.js';

const conf = (text: string) => ({ registries: parseRegistriesConf(text, 'test.conf'), files: ['test.conf'] });

describe('registries.conf routing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lazy-als-regconf-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('defaults: Docker Hub API host, HTTPS, HTTP for loopback', () => {
    const empty = { registries: [], files: [] };
    expect(routeFor(empty, parseReference('busybox')).endpoints).toEqual([{ registry: 'docker.io', origin: 'https://registry-1.docker.io', repository: 'library/busybox', mirror: false }]);
    expect(routeFor(empty, parseReference('quay.io/a/b')).endpoints[0]!.origin).toBe('https://quay.io');
    for (const h of ['localhost:5000', '127.0.0.1:5000', '127.1.2.3', '[::1]:5000']) {
      expect(routeFor(empty, parseReference(`${h}/x`)).endpoints[0]!.origin).toBe(`http://${h}`);
    }
  });

  it('mirrors in order then the rewritten location; insecure; pull-from-mirror; longest prefix; blocked; wildcard', () => {
    const c = conf(`
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "mirror.local:5000/hub"
insecure = true
[[registry.mirror]]
location = "digests.local"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "docker.io/library/secret"
blocked = true

[[registry]]
prefix = "example.com/foo"
location = "internal.example:8443/bar"

[[registry]]
location = "localhost:5000"
insecure = false

[[registry]]
prefix = "*.corp.example"
insecure = true
`);
    const hub = routeFor(c, parseReference('busybox:1')).endpoints;
    expect(hub.map((e) => `${e.origin}/${e.repository}`)).toEqual(['http://mirror.local:5000/hub/library/busybox', 'https://registry-1.docker.io/library/busybox']);
    const hubDigest = routeFor(c, parseReference(`busybox@sha256:${'1'.repeat(64)}`)).endpoints;
    expect(hubDigest.map((e) => e.origin)).toEqual(['http://mirror.local:5000', 'https://digests.local', 'https://registry-1.docker.io']);
    expect(() => routeFor(c, parseReference('docker.io/library/secret:1'))).toThrow(/blocked/);
    expect(routeFor(c, parseReference('docker.io/library/secretive:1')).endpoints).toHaveLength(2); // prefix is path-component based
    expect(routeFor(c, parseReference('example.com/foo/app:1')).endpoints).toEqual([{ registry: 'internal.example:8443', origin: 'https://internal.example:8443', repository: 'bar/app', mirror: false }]);
    expect(routeFor(c, parseReference('localhost:5000/x')).endpoints[0]!.origin).toBe('https://localhost:5000'); // explicit insecure=false
    expect(routeFor(c, parseReference('reg.corp.example/a/b')).endpoints[0]).toMatchObject({ origin: 'http://reg.corp.example', repository: 'a/b' });
  });

  it('loads drop-ins in lexical order (same prefix replaced), v1 lists, and reports bad TOML', async () => {
    const main = join(dir, 'registries.conf');
    writeFileSync(main, '[[registry]]\nprefix = "a.example"\nblocked = true\n[registries.insecure]\nregistries = ["old.example"]\n');
    mkdirSync(`${main}.d`);
    writeFileSync(join(`${main}.d`, '10-a.conf'), '[[registry]]\nprefix = "a.example"\nlocation = "b.example"\n');
    writeFileSync(join(`${main}.d`, 'ignored.txt'), 'not toml at all [[[');
    const c = await loadRegistriesConf({ path: main });
    expect(c.files).toEqual([main, join(`${main}.d`, '10-a.conf')]);
    expect(routeFor(c, parseReference('a.example/x')).endpoints[0]!.origin).toBe('https://b.example');
    expect(routeFor(c, parseReference('old.example/x')).endpoints[0]!.origin).toBe('http://old.example');
    expect((await loadRegistriesConf({ path: join(dir, 'missing.conf') })).registries).toEqual([]);
    writeFileSync(join(dir, 'bad.conf'), '[[registry]\nprefix=');
    await expect(loadRegistriesConf({ path: join(dir, 'bad.conf') })).rejects.toMatchObject({ code: 'REGISTRY_CONFIG' });
  });

  it('resolves docker.io/library/… offline through a mirror (real registry), skipping a dead mirror', async () => {
    const reg = await startRegistry();
    try {
      const img = await pushImage(reg, 'library/busybox', 'e2e', { layers: [{ bytes: randomBytes(100) }] });
      const c = conf(`[[registry]]\nprefix = "docker.io"\nlocation = "registry.invalid"\n[[registry.mirror]]\nlocation = "127.0.0.1:9"\n[[registry.mirror]]\nlocation = "${reg.host}"\n`);
      const src = testSource({ registries: c, retry: { retries: 0 } });
      try {
        const r = await src.resolve(parseReference('busybox:e2e'));
        expect(r.reference.string).toBe('docker.io/library/busybox:e2e'); // the logical name, never the mirror's
        expect(r.manifests[0]!.digest).toBe(img.manifest.digest);
        expect(r.sourceName).toContain(reg.host);
        const blob = await src.openBlob(r.reference, img.layers[0]!.digest as never, undefined);
        expect(blob.size).toBe(100);
      } finally {
        await src.close();
      }
    } finally {
      await reg.stop();
    }
  });
});
