/**
 * An operation that cannot finish answers within its deadline: the REAL daemon reading from a REAL
 * docker-registry that hangs (SIGSTOP: the kernel still accepts its connections, nothing answers —
 * what a wedged registry or a black-holed network looks like to a client). The read answers
 * ETIMEDOUT once `read_timeout_ms` has passed instead of hanging the reader (and with it podman);
 * everything else on the mount keeps answering meanwhile and afterwards.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/daemon/control-socket.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { probe, val } from '../integration/support/commands.js';
import { leakedMounts, pidsWith, RealDaemon, writeRegistriesConf } from '../integration/support/daemon.js';
import { L1_FILES, pushTestImage, refElem, type TestImage } from '../integration/support/images.js';

let reg: RegistryHandle;
let stopped: number[] = [];
let dir: string;
let daemon: RealDaemon | undefined;
let img: TestImage;

beforeAll(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-ops-deadline-'));
  img = await pushTestImage(reg);
});

afterAll(async () => {
  if (daemon) {
    const r = await daemon.stop();
    expect(r).toMatchObject({ code: 0, unmountedByDaemon: true });
  }
  for (const pid of stopped) process.kill(pid, 'SIGCONT');
  await reg?.stop();
  if (dir) {
    expect(await leakedMounts([dir])).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  }
});

describe('deadlines', () => {
  it('a read the registry never answers gets ETIMEDOUT; the mount, the control socket and other reads keep answering', async () => {
    const conf = await writeRegistriesConf(join(dir, 'registries.conf'), [reg.host]);
    daemon = await RealDaemon.start({ dir: join(dir, 'd'), registriesConf: conf, extraArgs: ['--read-timeout-ms', '1500'] });
    const L = join(daemon.mnt, refElem(`${reg.host}/${img.repo}:${img.tag}`), img.l1.tocDigest);
    const file = join(L, 'diff', 'big', 'cold-b.bin');
    expect((await probe([{ op: 'stat', path: file }])).map(val)[0]).toMatchObject({ size: L1_FILES['big/cold-b.bin'].length });

    stopped = await pidsWith('docker-registry', reg.dir);
    expect(stopped.length).toBe(1);
    process.kill(stopped[0]!, 'SIGSTOP'); // the registry hangs
    const reading = probe([{ op: 'read', path: file }]);
    // While the read waits: metadata, info and the control socket answer.
    const meanwhile = (await probe([{ op: 'stat', path: join(L, 'diff', 'etc', 'passwd') }, { op: 'read', path: join(L, 'info') }])).map(val);
    expect(meanwhile[0]).toMatchObject({ type: 'reg' });
    expect(JSON.parse(meanwhile[1].text)['toc-digest']).toBe(img.l1.tocDigest);
    expect((await controlRequest(daemon.socket, 'GET', '/status')).status).toBe(200);
    expect((await reading).map(val)).toEqual(['ETIMEDOUT']);
    expect((await probe([{ op: 'stat', path: daemon.mnt }])).map(val)[0]).toMatchObject({ type: 'dir' });
  });
});
