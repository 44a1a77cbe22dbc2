/**
 * The auth helper as the container engine calls it (issue 13, item 4): registries.conf names
 * `additional-layer-store-auth-helper`, and podman runs it with the pull's credentials on stdin —
 * the path CRI-O takes for a pod's pull secret (CRI-O itself is not packaged in Debian 12 or 13,
 * so crictl cannot be tested here). REAL docker-registry with htpasswd auth, the REAL store with
 * no credentials of its own, REAL podman given the credentials on its command line (`--creds`,
 * c/image's DockerAuthConfig, where CRI-O puts a pull secret).
 *
 *  - podman 5.4.2 (c/image 5.34) runs the helper: the store gets the credentials before it
 *    resolves the layers, so the pull goes through the store and a lazy read authenticates.
 *  - podman 4.3.1 (c/image 5.23) predates the key (c/image 5.31): it never runs the helper; the
 *    store cannot authenticate, answers "no such layer", and podman pulls the layers itself.
 *
 * The chroot holding podman 5 has no node, so the helper named in registries.conf is a two-line
 * wrapper that runs the real `lazy-als-auth-helper` with the host's node in the host's root
 * (`chroot /proc/<this test's pid>/root`; pid 1's root is closed here), passing the test store's
 * socket; stdin is c/image's, untouched.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobGets, LAZY_ALS_AGENT, LogCursor, PODMAN_AGENT } from '../e2e/registry-log.js';
import { ROOT, servedLayers, startStore, type Store } from '../e2e/store.js';
import { createPodman, makeTestDir, podmanPrerequisites, spawnCollect, type PodmanHandle } from '../helpers/podman.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushRootlessImage, type RootlessImage } from './rootless-image.js';

let reg: RegistryHandle;
let img: RootlessImage;
const dirs: string[] = [];

beforeAll(async () => {
  const missing = [...new Set([...podmanPrerequisites(4), ...podmanPrerequisites(5)])];
  if (missing.length > 0) throw new Error(`e2e prerequisites missing: ${missing.join(', ')}`);
  reg = await startRegistry({ auth: 'basic' });
  img = await pushRootlessImage(reg, 'ops/private', 'v1');
}, 300_000);

afterAll(async () => {
  await reg?.stop();
  for (const d of dirs) await spawnCollect(['rm', '-rf', '--one-file-system', '--', d]);
});

describe.each([5, 4] as const)('podman %i with additional-layer-store-auth-helper in registries.conf', (version) => {
  let store: Store;
  let pm: PodmanHandle;
  let helperLog: string;

  beforeAll(async () => {
    const dir = await makeTestDir(`ah${version}`);
    dirs.push(dir);
    store = await startStore({ dir, insecureRegistries: [reg.host] });
    // the helper c/image runs (an absolute path: c/image execs the name as given, else via $PATH)
    const bin = join(dir, 'bin');
    await mkdir(bin);
    helperLog = join(dir, 'helper.calls');
    const helper = join(bin, 'lazy-als-auth-helper');
    await writeFile(
      helper,
      `#!/bin/sh\necho called >> ${helperLog}\nexec chroot /proc/${process.pid}/root ${process.execPath} ${join(ROOT, 'bin', 'lazy-als-auth-helper.js')} ${store.socketPath} 2>> ${helperLog}.err\n`,
    );
    await chmod(helper, 0o755);
    pm = await createPodman(version, {
      workDir: join(dir, 'podman'),
      als: { dir: store.mountpoint },
      registries: [{ host: reg.host, insecure: true }],
      binds: [dir],
    });
    // top-level key: it must precede the [[registry]] tables podman.ts wrote
    const conf = await readFile(pm.registriesConf, 'utf8');
    await writeFile(pm.registriesConf, `additional-layer-store-auth-helper = ${JSON.stringify(helper)}\n${conf}`);
  }, 300_000);

  afterAll(async () => {
    await pm?.cleanup();
    await store?.stop();
  });

  const keys = (): string[] => img.layers.map((l) => (version === 4 ? l.digest : l.tocDigest));
  const [user, pass] = ['testuser', 'testpass'];

  it(version === 5 ? 'runs the helper: the store gets the pull credentials and serves the image lazily' : 'never runs the helper: the store cannot authenticate and podman pulls the layers itself', async () => {
    const log = new LogCursor(reg.logPath);
    const pull = await pm.run(['pull', '-q', '--creds', `${user}:${pass}`, img.ref], { timeoutMs: 300_000 });
    expect(pull.code, pull.stderr).toBe(0);
    const entries = log.since();
    const podmanLayerGets = blobGets(entries, { agent: PODMAN_AGENT }).filter((d) => img.layers.some((l) => l.digest === d));
    const served = servedLayers(await store.status()).filter((l) => keys().includes(l.key));
    const called = await readFile(helperLog, 'utf8').catch(() => '');
    if (version === 5) {
      expect(called).toContain('called');
      expect(podmanLayerGets).toEqual([]);
      expect(served.length).toBe(img.layers.length);
      const creds = JSON.parse(await readFile(join(store.stateDir, 'credentials.json'), 'utf8')) as Record<string, { credentials: { username: string } }>;
      expect(creds[img.ref]?.credentials.username).toBe(user);
      // a lazy read after the pull authenticates with them
      const run = await pm.run(['run', '--rm', img.ref, 'cat', '/etc/base.txt'], { check: true });
      expect(run.stdout).toBe('hello from base layer\n');
      expect(blobGets(log.since(), { agent: LAZY_ALS_AGENT }).length).toBeGreaterThan(0);
    } else {
      expect(called).toBe('');
      expect(served).toEqual([]);
      expect(podmanLayerGets.sort()).toEqual(img.layers.map((l) => l.digest).sort());
      const run = await pm.run(['run', '--rm', img.ref, 'cat', '/etc/base.txt'], { check: true });
      expect(run.stdout).toBe('hello from base layer\n');
    }
  });
});
