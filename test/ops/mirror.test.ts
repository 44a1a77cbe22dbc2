/**
 * Mirrors that are real distributed caches: a REAL docker-registry in proxy mode (pull-through
 * cache) in front of a REAL origin registry, named as the origin's mirror in registries.conf. Lazy
 * reads go through the mirror (the store asks the origin for no blob bytes), and when the mirror
 * dies they fall back to the origin; every byte is verified either way.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { blobBytes, LAZY_ALS_AGENT, LogCursor } from '../e2e/registry-log.js';
import { probe, val } from '../integration/support/commands.js';
import { leakedMounts, RealDaemon } from '../integration/support/daemon.js';
import { L1_FILES, L2_FILES, pushTestImage, refElem, sha256hex, type TestImage } from '../integration/support/images.js';

let origin: RegistryHandle;
let mirror: RegistryHandle;
let dir: string;
let daemon: RealDaemon | undefined;
let img: TestImage;

beforeAll(async () => {
  origin = await startRegistry();
  mirror = await startRegistry({ proxyOf: origin.url });
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-ops-mirror-'));
  img = await pushTestImage(origin);
});

afterAll(async () => {
  if (daemon) {
    await daemon.stop().catch(() => undefined);
    await daemon.forceUnmount();
  }
  await mirror?.stop();
  await origin?.stop();
  if (dir) {
    expect(await leakedMounts([dir])).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  }
});

const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

describe('registries.conf mirror = a pull-through cache', () => {
  it('lazy reads go through the proxy-mode registry, fall back to the origin when it dies, verified either way', async () => {
    const conf = join(dir, 'registries.conf');
    await writeFile(conf, `[[registry]]\nlocation = "${origin.host}"\ninsecure = true\n\n[[registry.mirror]]\nlocation = "${mirror.host}"\ninsecure = true\n`);
    daemon = await RealDaemon.start({ dir: join(dir, 'd'), registriesConf: conf });
    const R = refElem(`${origin.host}/${img.repo}:${img.tag}`); // the LOGICAL reference: the origin's name
    const L1 = join(daemon.mnt, R, img.l1.tocDigest);
    const L2 = join(daemon.mnt, R, img.l2.tocDigest);
    const originLog = new LogCursor(origin.logPath);
    const mirrorLog = new LogCursor(mirror.logPath);

    const got = (await probe([{ op: 'read', path: join(L1, 'diff', 'big', 'cold-a.bin') }])).map(val);
    expect(got[0].sha256).toBe(sha256hex(L1_FILES['big/cold-a.bin']));
    expect(sum(blobBytes(mirrorLog.since(), { agent: LAZY_ALS_AGENT }))).toBeGreaterThan(0);
    expect(sum(blobBytes(originLog.since(), { agent: LAZY_ALS_AGENT }))).toBe(0); // the origin saw only the mirror

    // The mirror dies: the next cold read comes from the origin, still verified.
    await mirror.kill();
    const fallback = (await probe([{ op: 'read', path: join(L2, 'diff', 'z', 'cold.bin') }])).map(val);
    expect(fallback[0].sha256).toBe(sha256hex(L2_FILES['z/cold.bin']));
    expect(sum(blobBytes(originLog.since(), { agent: LAZY_ALS_AGENT }))).toBeGreaterThan(0);
    await mirror.restart();
  });
});
