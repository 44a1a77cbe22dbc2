/**
 * The REAL daemon as a child process: `node bin/lazy-als.js serve` (compiled dist/, run
 * `npm run build` first) with the real LayerCatalog, registry client and on-disk cache, on a temp
 * mountpoint and state dir.
 *
 * Synchronisation is by observation, never by sleeping: start() returns once the mountpoint is a
 * FUSE mount in /proc/self/mountinfo and the daemon has logged `daemon.ready`. stop() sends SIGTERM,
 * waits for the exit and for the mount to disappear; if it does not (a bug: reported by the test
 * that calls stop() through its own expectations), it detaches with `umount -l` so the next test is
 * not poisoned. kill9() simulates a crash, optionally killing fuse's auto_unmount helper too so the
 * dead mount stays behind (ENOTCONN), which is what a restart must then clear.
 */
import { controlRequest } from '../../../src/daemon/control-socket.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cmd as run } from './commands.js';

export const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
export const CLI = join(ROOT, 'bin', 'lazy-als.js');

export interface DaemonOptions {
  /** Caller-owned dir: `<dir>/{store,state,control.sock}` are used. */
  readonly dir: string;
  readonly registriesConf: string;
  readonly extraArgs?: readonly string[];
}

/** Unescape mountinfo's octal escapes. */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The mount entries at or under `path` (fstype per entry), from /proc/self/mountinfo. */
export async function mountsUnder(path: string): Promise<{ mountpoint: string; fstype: string }[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out: { mountpoint: string; fstype: string }[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 10) continue;
    const mp = unescape(f[4]!);
    if (mp !== path && !mp.startsWith(path + '/')) continue;
    out.push({ mountpoint: mp, fstype: f[f.indexOf('-') + 1] ?? '' });
  }
  return out;
}

export async function isFuseMounted(path: string): Promise<boolean> {
  return (await mountsUnder(path)).some((m) => m.mountpoint === path && m.fstype.startsWith('fuse'));
}

async function poll(what: string, timeoutMs: number, cond: () => Promise<boolean> | boolean): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Write a registries.conf (v2) marking each host insecure (plain HTTP). */
export async function writeRegistriesConf(path: string, hosts: readonly string[]): Promise<string> {
  await writeFile(path, hosts.map((h) => `[[registry]]\nlocation = "${h}"\ninsecure = true\n`).join('\n'));
  return path;
}

export class RealDaemon {
  readonly dir: string;
  readonly mnt: string;
  readonly stateDir: string;
  readonly socket: string;
  readonly #opts: DaemonOptions;
  #child: ChildProcess | undefined;
  #exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  /** stderr of the current process. */
  stderr = '';
  /** stderr of every process started so far. */
  allStderr = '';
  /** stdout of the current process (the ready line). */
  stdout = '';

  constructor(opts: DaemonOptions) {
    this.#opts = opts;
    this.dir = opts.dir;
    this.mnt = join(opts.dir, 'store');
    this.stateDir = join(opts.dir, 'state');
    this.socket = join(opts.dir, 'control.sock');
  }

  static async start(opts: DaemonOptions): Promise<RealDaemon> {
    const d = new RealDaemon(opts);
    await d.start();
    return d;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Start (or start again after stop/kill9) on the same dirs; resolves when mounted and ready. */
  async start(): Promise<void> {
    if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ missing: run `npm run build` first');
    if (this.running) throw new Error('daemon already running');
    await mkdir(this.dir, { recursive: true });
    const args = [
      CLI, 'serve',
      '--state-dir', this.stateDir,
      '--socket', this.socket,
      '--registries-conf', this.#opts.registriesConf,
      '--log-level', 'info',
      // `trust` here only (the product default is `verify`): these tests exercise podman 4 lazy pulls
      // of TOC layers by blob digest; extraArgs may override (last flag wins). Minimal on purpose.
      '--era-a-toc-layers', 'trust',
      ...(this.#opts.extraArgs ?? []),
      this.mnt,
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REGISTRY_AUTH_FILE: join(this.dir, 'no-auth.json') } });
    this.#child = child;
    this.stderr = '';
    this.stdout = '';
    child.stdout!.on('data', (b: Buffer) => (this.stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => {
      const s = b.toString();
      this.stderr += s;
      this.allStderr += s;
    });
    this.#exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    let exited = false;
    void this.#exited.then(() => (exited = true));
    await poll(`the mount at ${this.mnt} and daemon.ready`, 30_000, async () => {
      if (exited) throw new Error(`daemon exited during start-up:\n${this.stderr}`);
      return this.stderr.includes('"event":"daemon.ready"') && (await isFuseMounted(this.mnt));
    });
  }

  /** JSON log lines of the current process (or of all processes). */
  events(all = false): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const l of (all ? this.allStderr : this.stderr).split('\n')) {
      if (!l.startsWith('{')) continue;
      try {
        out.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        /* a partial last line */
      }
    }
    return out;
  }

  /** SIGTERM, wait for the exit; returns the exit and whether the mount went away by itself. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null; unmountedByDaemon: boolean }> {
    let res: { code: number | null; signal: NodeJS.Signals | null } = { code: null, signal: null };
    if (this.#child && this.#exited) {
      if (this.running) this.#child.kill('SIGTERM');
      const t = setTimeout(() => this.#child?.kill('SIGKILL'), 20_000);
      res = await this.#exited;
      clearTimeout(t);
    }
    const unmountedByDaemon = !(await isFuseMounted(this.mnt));
    await this.forceUnmount();
    return { ...res, unmountedByDaemon };
  }

  /** Resolve once no chunk fetch or background cache write is in flight (GET /status). */
  async settle(): Promise<void> {
    await poll('the store cache to settle', 60_000, async () => {
      const r = await controlRequest(this.socket, 'GET', '/status');
      const c = (r.body as { catalog?: { cache?: { inFlight?: number; pendingStores?: number } } }).catalog?.cache;
      return c !== undefined && c.inFlight === 0 && c.pendingStores === 0;
    });
  }

  /** Crash: SIGKILL the daemon (and, with `helpers`, fuse's auto_unmount helper first). */
  async kill9(opts: { helpers?: boolean } = {}): Promise<void> {
    if (opts.helpers) for (const pid of await pidsWith('fusermount', this.mnt)) process.kill(pid, 'SIGKILL');
    if (this.running) this.#child!.kill('SIGKILL');
    await this.#exited;
  }

  /** Detach whatever is left at or under the mountpoint (`umount -l`), and wait until it is gone. */
  async forceUnmount(): Promise<void> {
    for (const m of (await mountsUnder(this.mnt)).reverse()) await run('umount', ['-l', m.mountpoint]);
    await poll(`${this.mnt} to be unmounted`, 10_000, async () => (await mountsUnder(this.mnt)).length === 0);
  }
}

/** Pids of processes whose command line mentions both `word` and `path` (fuse's auto_unmount helper). */
export async function pidsWith(word: string, path: string): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(word) && cmd.includes(path)) out.push(Number(e));
  }
  return out;
}

/** Every mount whose mountpoint lies under one of `dirs` (afterAll leak check). */
export async function leakedMounts(dirs: readonly string[]): Promise<string[]> {
  const text = await readFile('/proc/mounts', 'utf8');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const mp = unescape(line.split(' ')[1] ?? '');
    if (dirs.some((d) => mp === d || mp.startsWith(d + '/'))) out.push(mp);
  }
  return out;
}
