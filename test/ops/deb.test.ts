/**
 * The Debian package, installed for real on this machine and removed again: scripts/build-deb.sh
 * builds it; `apt-get install ./lazy-als_*.deb` installs it; the INSTALLED `lazy-als serve` runs on
 * the packaged defaults (/etc/lazy-als/config.toml, /var/lib/lazy-als, /run/lazy-als — exactly what
 * the unit runs) and podman 4 pulls an image through it without fetching a layer blob itself; the
 * daemon then crashes (kill -9, fuse's unmount helper too: a dead mount stays behind) and
 * `apt-get purge` leaves no mount, no unit, no file, no state behind.
 *
 * It refuses to run (fails) when lazy-als is already installed or /var/lib/lazy-als exists, so it
 * never takes over a developer's real installation; afterAll removes everything it made.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPodman, podmanPrerequisites, type PodmanHandle } from '../helpers/podman.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { blobGets, LogCursor, PODMAN_AGENT } from '../e2e/registry-log.js';
import { cmd } from '../integration/support/commands.js';
import { isFuseMounted, mountsUnder, pidsWith, ROOT, writeRegistriesConf } from '../integration/support/daemon.js';
import { pushTestImage, type TestImage } from '../integration/support/images.js';

const STATE = '/var/lib/lazy-als';
const STORE = '/var/lib/lazy-als/store';
const PACKAGED = ['/usr/bin/lazy-als', '/usr/bin/lazy-als-auth-helper', '/usr/lib/lazy-als', '/lib/systemd/system/lazy-als.service', '/usr/lib/systemd/user/lazy-als.service', '/etc/lazy-als/config.toml', '/usr/share/lazy-als/storage.conf.d/50-lazy-als.conf'];

let reg: RegistryHandle;
let dir: string;
let img: TestImage;
let pm: PodmanHandle | undefined;
let daemon: ChildProcess | undefined;
let installed = false;

const installedVersion = async (): Promise<string> => (await cmd('dpkg-query', ['-W', '-f=${Status}', 'lazy-als'])).stdout;

beforeAll(async () => {
  if ((await installedVersion()).includes('installed')) throw new Error('lazy-als is installed on this machine: this test would replace it; remove it first');
  if (existsSync(STATE)) throw new Error(`${STATE} exists: this test would take it over; move it away first`);
  const missing = podmanPrerequisites(4);
  if (missing.length > 0) throw new Error(`prerequisites missing: ${missing.join(', ')}`);
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-ops-deb-'));
  img = await pushTestImage(reg);
}, 120_000);

afterAll(async () => {
  if (daemon && daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
  for (const pid of await pidsWith('fusermount', STORE)) process.kill(pid, 'SIGKILL');
  await pm?.cleanup();
  if (installed && (await installedVersion()).includes('installed')) await cmd('dpkg', ['--purge', 'lazy-als']);
  for (const m of (await mountsUnder(STATE)).reverse()) await cmd('umount', ['-l', m.mountpoint]);
  await rm(STATE, { recursive: true, force: true });
  await rm('/run/lazy-als', { recursive: true, force: true });
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('Debian package', () => {
  it('builds, installs with apt, serves podman from the packaged defaults, and purges without a trace', async () => {
    const build = await cmd('bash', [join(ROOT, 'scripts/build-deb.sh'), join(dir, 'out')]);
    expect(build.code, build.stderr).toBe(0);
    const deb = build.stdout.trim().split('\n').pop()!;
    expect(deb).toMatch(/\/lazy-als_[0-9.]+_[a-z0-9]+\.deb$/);
    const contents = (await cmd('dpkg-deb', ['-c', deb])).stdout;
    expect(contents).not.toMatch(/node_modules\/(vitest|typescript|fast-check|@biomejs)\//); // production only

    const inst = await cmd('apt-get', ['install', '-y', '--no-install-recommends', deb]);
    installed = true;
    expect(inst.code, inst.stderr + inst.stdout).toBe(0);
    for (const p of PACKAGED) expect(existsSync(p), p).toBe(true);
    expect((await cmd('dpkg-query', ['-W', '-f=${Conffiles}', 'lazy-als'])).stdout).toContain('/etc/lazy-als/config.toml');
    const unit = await readFile('/lib/systemd/system/lazy-als.service', 'utf8');
    expect(unit).toContain('ExecStart=/usr/bin/lazy-als serve --config /etc/lazy-als/config.toml');
    const help = await cmd('/usr/bin/lazy-als', ['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('lazy-als doctor');

    // The installed daemon, as the unit runs it (plus a registries.conf for the plain-HTTP test registry).
    const conf = await writeRegistriesConf(join(dir, 'registries.conf'), [reg.host]);
    let out = '';
    let err = '';
    daemon = spawn('/usr/bin/lazy-als', ['serve', '--config', '/etc/lazy-als/config.toml', '--registries-conf', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    daemon.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    await waitFor('the ready line', () => out.includes('lazy-als: ready') || daemon!.exitCode !== null);
    expect(out, err).toMatch(new RegExp(`^lazy-als: ready, serving ${STORE} \\(state ${STATE}, backend [a-z-]+, control /run/lazy-als/control.sock\\)\\n$`));
    expect(await isFuseMounted(STORE)).toBe(true);
    expect((await cmd('ps', ['-o', 'args=', '-p', String(daemon.pid)])).stdout).toContain('/usr/lib/lazy-als/node /usr/lib/lazy-als/bin/lazy-als.js serve');

    pm = await createPodman(4, { workDir: join(dir, 'p4'), als: { dir: STORE }, registries: [{ host: reg.host, insecure: true }] });
    const log = new LogCursor(reg.logPath);
    await pm.run(['pull', '-q', `${reg.host}/${img.repo}:${img.tag}`], { check: true, timeoutMs: 300_000 });
    const digests = { l1: img.l1.blobDigest, l2: img.l2.blobDigest, l3: img.l3.blobDigest };
    // podman GETs the config blob only: every layer came from the store
    expect(blobGets(log.since(), { agent: PODMAN_AGENT }).filter((d) => Object.values(digests).includes(d))).toEqual([]);
    const st = await cmd('/usr/bin/lazy-als', ['status', '--json']);
    expect(st.code, st.stderr).toBe(0);
    const layers = (JSON.parse(st.stdout) as { catalog: { layers: { key: string }[] } }).catalog.layers;
    expect(layers.map((l) => l.key).sort()).toEqual([img.l1.blobDigest, img.l2.blobDigest, img.l3.blobDigest].sort());
    await pm.cleanup();
    pm = undefined;

    // A crash that leaves a dead mount behind, then purge.
    for (const pid of await pidsWith('fusermount', STORE)) process.kill(pid, 'SIGKILL');
    daemon.kill('SIGKILL');
    await waitFor('the daemon to die', () => daemon!.signalCode !== null);
    expect((await mountsUnder(STORE)).length).toBe(1);
    const purge = await cmd('apt-get', ['purge', '-y', 'lazy-als']);
    expect(purge.code, purge.stderr + purge.stdout).toBe(0);
    expect(await installedVersion()).not.toContain('installed');
    for (const p of [...PACKAGED, '/etc/lazy-als', STATE, '/run/lazy-als']) expect(existsSync(p), p).toBe(false);
    expect(await mountsUnder(STATE)).toEqual([]);
  }, 900_000);
});
