/**
 * The daemon as a child process (real `serve` command, real mount, real signals); layers come from
 * the stand-in catalog (test/fuse/helpers/stand-in-provider.ts).
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/daemon/control-socket.js';
import { KEY1 } from '../fuse/fixtures.js';
import { isMounted, probe1, run, waitUnmounted } from '../fuse/helpers/mount-fixture.js';
import { removeDaemonBuild, runFixture, startDaemon, type Daemon } from './daemon-process.js';

let dir: string;
let mnt: string;
let sock: string;
const daemons: Daemon[] = [];

function serveArgs(extra: string[] = []): string[] {
  return ['serve', '--state-dir', join(dir, 'state'), '--socket', sock, '--log-level', 'info', ...extra, mnt];
}

async function start(extra: string[] = []): Promise<Daemon> {
  const d = await startDaemon(serveArgs(extra));
  daemons.push(d);
  await d.waitFor('daemon.ready');
  return d;
}

/** Pids of processes whose command line mentions both `word` and `path` (the auto_unmount helper). */
async function pidsWith(word: string, path: string): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(word) && cmd.includes(path)) out.push(Number(e));
  }
  return out;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-daemon-'));
  mnt = join(dir, 'store');
  sock = join(dir, 'control.sock');
});

afterEach(async () => {
  for (const d of daemons.splice(0)) {
    if (d.child.exitCode === null && d.child.signalCode === null) {
      d.child.kill('SIGKILL');
      await d.exited;
    }
  }
  if (await isMounted(mnt)) await run('fusermount3', ['-uz', mnt]);
  await waitUnmounted(mnt);
  await rm(dir, { recursive: true, force: true });
});

afterAll(removeDaemonBuild);

describe('lazy-als serve', () => {
  it('serves the store, answers status/gc on the control socket, and SIGTERM unmounts and exits 0', async () => {
    const d = await start();
    expect(await isMounted(mnt)).toBe(true);
    const r = await probe1('read', join(mnt, KEY1, 'diff', 'etc', 'base.txt'));
    expect(r.ok && r.value.text).toBe('hello from base layer\n');

    const st = await controlRequest(sock, 'GET', '/status');
    expect(st.status).toBe(200);
    expect(st.body).toMatchObject({ pid: d.child.pid, mountpoint: mnt, catalog: { standIn: true, layers: 2 }, fuse: { layers: 1 } });
    const cli = await runFixture(['status', '--json', '--socket', sock]);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ mountpoint: mnt });
    const gc = await runFixture(['gc', '--json', '--socket', sock]);
    expect(gc.code).toBe(0);
    expect(JSON.parse(gc.stdout)).toEqual({ standInGc: 1 });

    d.child.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    expect(await isMounted(mnt)).toBe(false);
    expect(d.stderr).toContain('"event":"daemon.stopped"');
    const after = await runFixture(['status', '--socket', sock]);
    expect(after.code).toBe(1);
    expect(after.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('SIGINT also unmounts and exits 0', async () => {
    const d = await start();
    d.child.kill('SIGINT');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    expect(await isMounted(mnt)).toBe(false);
  });

  it('after kill -9 (auto_unmount helper killed too) the mount is dead; a restart clears it and serves again', async () => {
    const d1 = await start();
    const helpers = await pidsWith('fusermount', mnt);
    expect(helpers.length).toBeGreaterThan(0); // auto_unmount is on
    for (const pid of helpers) process.kill(pid, 'SIGKILL');
    d1.child.kill('SIGKILL');
    await d1.exited;
    // A name never looked up (the root's own attributes may still come from the kernel's cache).
    const dead = await probe1('stat', join(mnt, 'never-looked-up'));
    expect(dead).toEqual({ ok: false, code: 'ENOTCONN' });

    const d2 = await start();
    expect(d2.stderr).toContain('"event":"daemon.stale_mount_cleared"');
    const r = await probe1('read', join(mnt, KEY1, 'diff', 'etc', 'base.txt'));
    expect(r.ok && r.value.text).toBe('hello from base layer\n');
    d2.child.kill('SIGTERM');
    expect((await d2.exited).code).toBe(0);
  });

  it('after a plain kill -9 a restart serves (auto_unmount normally removes the mount first)', async () => {
    const d1 = await start();
    d1.child.kill('SIGKILL');
    await d1.exited;
    // auto_unmount's helper usually detaches the mount within ms, but under load it was seen to
    // take > 10 s; either way the restart must serve (it clears what is left).
    await waitUnmounted(mnt, 20_000).catch(() => undefined);
    const d2 = await start();
    expect((await probe1('stat', join(mnt, KEY1, 'diff'))).ok).toBe(true);
    d2.child.kill('SIGTERM');
    expect((await d2.exited).code).toBe(0);
  });

  it('refuses to start a second daemon on a served mountpoint', async () => {
    await start();
    const second = await runFixture(serveArgs());
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/MOUNT_BUSY/);
    expect(await isMounted(mnt)).toBe(true);
  });

  it('an invalid config file or flag is one clear line and exit 2', async () => {
    const bad = join(dir, 'bad.toml');
    await writeFile(bad, 'state_dir = "/x"\ncache_sise = "1GiB"\n');
    const r1 = await runFixture(['serve', '--config', bad, mnt]);
    expect(r1.code).toBe(2);
    expect(r1.stderr.trim().split('\n')).toHaveLength(1);
    expect(r1.stderr).toContain('cache_sise: unknown setting');
    const r2 = await runFixture(['serve', '--cache-size', 'lots', mnt]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('--cache-size');
    const r3 = await runFixture(['serve', '--no-such-flag', mnt]);
    expect(r3.code).toBe(2);
    const notToml = join(dir, 'x.toml');
    await writeFile(notToml, 'this is = = not toml');
    const r4 = await runFixture(['serve', '--config', notToml, mnt]);
    expect(r4.code).toBe(2);
    expect(r4.stderr.trim().split('\n')).toHaveLength(1);
    expect(await isMounted(mnt)).toBe(false);
  });

  it('takes settings from a TOML config file, overridden by flags', async () => {
    const cfg = join(dir, 'c.toml');
    await mkdir(join(dir, 'other'));
    await writeFile(cfg, `state_dir = "${join(dir, 'state')}"\nsocket = "/nonexistent/sock"\nlog_level = "info"\n[fuse]\nlookup_timeout_ms = 5000\n`);
    const d = await startDaemon(['serve', '--config', cfg, '--socket', sock, mnt]);
    daemons.push(d);
    await d.waitFor('daemon.ready');
    const st = await controlRequest(sock, 'GET', '/status');
    expect(st.body).toMatchObject({ configFile: cfg, stateDir: join(dir, 'state') });
  });

  it('tells systemd READY=1 once mounted and STOPPING=1 on shutdown (NOTIFY_SOCKET)', async () => {
    const nsock = join(dir, 'notify.sock');
    // A unix datagram listener (node:dgram cannot do unix sockets; python can).
    const listener = spawn('python3', ['-c', `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    print(s.recv(4096).decode().replace("\\n", " "), flush=True)
`, nsock], { stdio: ['ignore', 'pipe', 'inherit'] });
    let got = '';
    listener.stdout.on('data', (b: Buffer) => (got += b.toString()));
    try {
      while (!got.includes('bound')) await new Promise((r) => setTimeout(r, 20));
      const d = await startDaemon(serveArgs(), { ...process.env, NOTIFY_SOCKET: nsock });
      daemons.push(d);
      await d.waitFor('daemon.ready');
      for (let i = 0; i < 100 && !got.includes('READY=1'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(got).toContain('READY=1');
      expect(got).not.toContain('STOPPING=1');
      d.child.kill('SIGTERM');
      expect((await d.exited).code).toBe(0);
      expect(got).toContain('STOPPING=1');
    } finally {
      listener.kill('SIGKILL');
    }
  });
});
