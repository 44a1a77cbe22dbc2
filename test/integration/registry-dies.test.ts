/**
 * The real registry dies while the REAL daemon serves a layer whose TOC it already read. A read of
 * never-fetched content must fail with EIO (well within --read-timeout-ms, which bounds it anyway),
 * the mount must stay alive, and once the registry is back (same storage, same port) the same read
 * must succeed. Two ways to die: killed between requests, and killed in the middle of a response
 * (the second needs a FAKE relay to stop at a known byte — a real registry cannot be killed at a
 * chosen byte; see support/stall-relay.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probe, val } from './support/commands.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { leakedMounts, RealDaemon, writeRegistriesConf } from './support/daemon.js';
import { L1_FILES, L2_FILES, pushTestImage, refElem, sha256hex, type TestImage } from './support/images.js';
import { startStallRelay, type StallRelay } from './support/stall-relay.js';

let reg: RegistryHandle;
let relay: StallRelay;
let dir: string;
let daemon: RealDaemon | undefined;
let img: TestImage;

const READ_TIMEOUT_MS = 15_000;
const v = val;

beforeAll(async () => {
  reg = await startRegistry();
  relay = await startStallRelay(reg.port);
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-it-dies-'));
  img = await pushTestImage(reg);
  const conf = await writeRegistriesConf(join(dir, 'registries.conf'), [reg.host, relay.host]);
  daemon = await RealDaemon.start({ dir: join(dir, 'd'), registriesConf: conf, extraArgs: ['--read-timeout-ms', String(READ_TIMEOUT_MS)] });
});

afterAll(async () => {
  if (daemon) {
    const r = await daemon.stop();
    expect(r).toMatchObject({ code: 0, unmountedByDaemon: true });
  }
  await relay?.stop();
  await reg?.stop();
  if (dir) {
    expect(await leakedMounts([dir])).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  }
});

describe('the registry dies mid-read', () => {
  // The mid-body case runs first: the catalog shares one source handle per blob digest across refs,
  // so once a read through the registry's own name has opened the layer's blob, later reads of the
  // same digest under the relay's name go straight to the registry and the relay would see nothing.
  it('killed in the middle of a response body: EIO, the mount stays alive, and after a restart the read succeeds', async () => {
    const d = daemon!;
    const L = join(d.mnt, refElem(`${relay.host}/${img.repo}:${img.tag}`), img.l1.tocDigest);
    const file = join(L, 'diff', 'big', 'cold-b.bin');
    expect((await probe([{ op: 'stat', path: file }])).map(v)[0]).toMatchObject({ size: L1_FILES['big/cold-b.bin'].length });

    const stalled = relay.arm(200_000); // well inside the first 1 MiB chunk's response
    const reading = probe([{ op: 'read', path: file }]);
    await stalled;
    await reg.kill();
    const r = (await reading).map(v);
    expect(r[0]).toBe('EIO');
    expect((await probe([{ op: 'stat', path: join(L, 'diff', 'etc', 'passwd') }])).map(v)[0]).toMatchObject({ type: 'reg' });

    await reg.restart();
    const again = (await probe([{ op: 'read', path: file }])).map(v);
    expect(again[0].sha256).toBe(sha256hex(L1_FILES['big/cold-b.bin']));
  });

  it('killed after the TOC was read: EIO, the mount stays alive, and after a restart the read succeeds', async () => {
    const d = daemon!;
    const L = join(d.mnt, refElem(`${reg.host}/${img.repo}:${img.tag}`), img.l2.tocDigest);
    const file = join(L, 'diff', 'z', 'cold.bin');
    expect((await probe([{ op: 'stat', path: file }])).map(v)[0]).toMatchObject({ size: L2_FILES['z/cold.bin'].length });

    await reg.kill();
    const r = (await probe([
      { op: 'read', path: file },
      { op: 'stat', path: join(L, 'diff', 'etc', 'layer2.txt') },
      { op: 'read', path: join(L, 'info') },
      { op: 'stat', path: d.mnt },
    ])).map(v);
    expect(r[0]).toBe('EIO');
    expect(r[1]).toMatchObject({ type: 'reg' });
    expect(JSON.parse(r[2].text)['toc-digest']).toBe(img.l2.tocDigest);
    expect(r[3]).toMatchObject({ type: 'dir' });

    await reg.restart();
    const again = (await probe([{ op: 'read', path: file }])).map(v);
    expect(again[0].sha256).toBe(sha256hex(L2_FILES['z/cold.bin']));
  });
});
