/**
 * The real store for end-to-end tests: `node bin/lazy-als.js serve` as a child process on a temp
 * mountpoint, with its own state dir, control socket and registries.conf.
 *
 * Synchronisation is by observation, never by sleeping: start() returns once the mountpoint shows
 * up as a FUSE mount in /proc/self/mountinfo *and* the control socket answers; stop() sends SIGTERM,
 * waits for the exit and checks the mount is gone (a mount left behind fails the test and is
 * detached so the next test is not poisoned). kill9() simulates a crash (the mount may stay behind,
 * dead); restart() starts a new daemon on the same state dir and mountpoint — the daemon's own
 * stale-mount recovery has to cope with what the crash left.
 *
 * The daemon runs from dist/: ensureBuilt() runs `npm run build` once per process when a file in
 * src/ is newer than its compiled output, so the tests never run a stale daemon.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlRequest } from '../../src/daemon/control-socket.js';
import { spawnCollect } from '../helpers/podman.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(ROOT, 'bin', 'lazy-als.js');

export interface StoreOptions {
  /** A dir owned by the caller; the store uses `<dir>/{store,state,control.sock,daemon.log}`. */
  readonly dir: string;
  /** Registries the store may reach over plain HTTP (non-loopback hosts need this). */
  readonly insecureRegistries?: readonly string[];
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
  readonly extraArgs?: readonly string[];
  /**
   * Default `trust` HERE ONLY (the product default is `verify`): tests and benches written for podman 4
   * lazy pulls of eStargz/zstd:chunked layers by blob digest keep testing those lazy paths. A test of
   * the verify mode passes 'verify'. (Minimal on purpose; see docs/security.md.)
   */
  readonly eraATocLayers?: 'verify' | 'trust';
  /** argv prefix for the daemon, e.g. `nsenter --net=/run/netns/X` (must exec, keeping the pid). */
  readonly wrap?: readonly string[];
}

/** One served layer as `GET /status` reports it (catalog.layers[]). */
export interface LayerStatus {
  ref?: string;
  key: string;
  keyKind: 'blob' | 'toc';
  format?: string;
  blobSize?: number;
  uses: number;
  /** Bytes this layer fetched from its source (registry) so far. */
  fetchedBytes: number;
  [k: string]: unknown;
}

export interface StoreStatus {
  pid: number;
  mountpoint: string;
  rssBytes: number;
  fuse: { layers: number; openFiles: number; resolving: number };
  catalog: {
    layers?: LayerStatus[];
    /** older shape: the catalog's own status at the top */
    served?: LayerStatus[];
    catalog?: { useCounts?: { refElem?: string; key: string; count: number }[] };
    useCounts?: { refElem?: string; key: string; count: number }[];
    [k: string]: unknown;
  } | null;
}

/** Served layers from a status answer (tolerates the catalog-only and the provider shapes). */
export function servedLayers(st: StoreStatus): LayerStatus[] {
  return st.catalog?.layers ?? st.catalog?.served ?? [];
}

/** The use count of (ref, key): +1 per `use` create, −1 per rmdir of the layer dir. */
export function useCount(st: StoreStatus, ref: string, key: string): number {
  const elem = Buffer.from(ref).toString('base64');
  const counts = st.catalog?.catalog?.useCounts ?? st.catalog?.useCounts ?? [];
  return counts.find((c) => c.key === key && c.refElem === elem)?.count ?? 0;
}

/** Bytes fetched from sources for the layers with these keys (any ref). */
export function fetchedFor(st: StoreStatus, keys: readonly string[]): number {
  let n = 0;
  const seen = new Set<string>();
  for (const l of servedLayers(st)) {
    if (!keys.includes(l.key) || seen.has(l.key)) continue;
    seen.add(l.key);
    n += l.fetchedBytes;
  }
  return n;
}

export interface Store {
  readonly mountpoint: string;
  readonly stateDir: string;
  readonly socketPath: string;
  readonly logPath: string;
  readonly pid: number;
  status(): Promise<StoreStatus>;
  /** Resolve once no chunk fetch or cache write is in flight (before a kill -9 that must not lose them). */
  settle(): Promise<void>;
  /** The daemon's log (JSON lines) of every start so far. */
  log(): string;
  /** Peak RSS of the running daemon (VmHWM) in bytes. */
  peakRss(): number;
  /** SIGTERM, wait for the exit, check the mount is gone. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL (a crash); the mount may stay behind. */
  kill9(): Promise<void>;
  /** Start again on the same state dir and mountpoint (after stop() or kill9()). */
  restart(): Promise<void>;
}

let built: Promise<void> | undefined;

function newestMtime(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n = Math.max(n, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return n;
}

/** `npm run build` when dist/ is missing or older than src/. */
export function ensureBuilt(): Promise<void> {
  built ??= (async () => {
    const main = join(ROOT, 'dist', 'cli', 'main.js');
    if (existsSync(main) && newestMtime(join(ROOT, 'dist')) >= newestMtime(join(ROOT, 'src'))) return;
    const r = await spawnCollect(['npm', 'run', 'build'], { timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(`npm run build failed:\n${r.stdout}\n${r.stderr}`);
  })();
  return built;
}

/** The visible mount at `path` (last mountinfo entry), or undefined. */
export function mountAt(path: string): { fstype: string } | undefined {
  let found: { fstype: string } | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length < 10) continue;
    const mp = (f[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp !== path) continue;
    found = { fstype: f[f.indexOf('-') + 1] ?? '' };
  }
  return found;
}

/** Polls `cond` every `everyMs` until it is true; throws `what()` after `timeoutMs`. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, what: () => string, timeoutMs = 60_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child: ChildProcess): Promise<void> {
  if (exited(child)) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

export async function startStore(o: StoreOptions): Promise<Store> {
  if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (FUSE mounts, podman)');
  if (!existsSync('/dev/fuse')) throw new Error('/dev/fuse is missing: the e2e tests cannot run here');
  await ensureBuilt();
  const mountpoint = join(o.dir, 'store');
  const stateDir = join(o.dir, 'state');
  const socketPath = join(o.dir, 'control.sock');
  const logPath = join(o.dir, 'daemon.log');
  await mkdir(mountpoint, { recursive: true });
  const regConf = join(o.dir, 'store-registries.conf');
  await writeFile(
    regConf,
    ['unqualified-search-registries = []', '', ...(o.insecureRegistries ?? []).flatMap((h) => ['[[registry]]', `location = ${JSON.stringify(h)}`, 'insecure = true', ''])].join('\n'),
  );
  const args = [CLI, 'serve', '--state-dir', stateDir, '--socket', socketPath, '--log-level', o.logLevel ?? 'info', '--registries-conf', regConf, '--era-a-toc-layers', o.eraATocLayers ?? 'trust', ...(o.extraArgs ?? []), mountpoint];
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    const fd = openSync(logPath, 'a');
    const [cmd, ...pre] = [...(o.wrap ?? []), process.execPath];
    const c = spawn(cmd!, [...pre, ...args], { stdio: ['ignore', fd, fd], cwd: ROOT });
    closeSync(fd);
    child = c;
    let exitInfo = '';
    c.once('exit', (code, sig) => (exitInfo = `exit ${code ?? ''}${sig ?? ''}`));
    const alive = async (): Promise<boolean> => {
      try {
        return (await controlRequest(socketPath, 'GET', '/status', undefined, 2000)).status === 200;
      } catch {
        return false;
      }
    };
    await waitUntil(
      async () => {
        if (exited(c)) throw new Error(`lazy-als serve ${exitInfo} before mounting:\n${readLog().slice(-3000)}`);
        return mountAt(mountpoint)?.fstype.startsWith('fuse') === true && (await alive());
      },
      () => `lazy-als serve did not mount ${mountpoint}:\n${readLog().slice(-3000)}`,
    );
  };
  const readLog = (): string => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  const current = (): ChildProcess => {
    if (!child) throw new Error('store not started');
    return child;
  };
  const detachLeftover = async (): Promise<boolean> => {
    if (!mountAt(mountpoint)) return false;
    await spawnCollect(['fusermount3', '-uz', mountpoint], { timeoutMs: 30_000 });
    if (mountAt(mountpoint)) await spawnCollect(['umount', '-l', mountpoint], { timeoutMs: 30_000 });
    return true;
  };

  await launch();
  const store: Store = {
    mountpoint,
    stateDir,
    socketPath,
    logPath,
    get pid() {
      return current().pid ?? -1;
    },
    async status() {
      const r = await controlRequest(socketPath, 'GET', '/status');
      if (r.status !== 200) throw new Error(`status: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      return r.body as StoreStatus;
    },
    log: readLog,
    peakRss() {
      const s = readFileSync(`/proc/${current().pid}/status`, 'utf8');
      const m = /^VmHWM:\s+(\d+) kB/m.exec(s);
      return m ? Number(m[1]) * 1024 : 0;
    },
    async stop() {
      const c = child;
      if (!c || exited(c)) {
        if (await detachLeftover()) throw new Error(`${mountpoint} was still mounted after the store exited`);
        return;
      }
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 30_000);
      await waitExit(c);
      clearTimeout(t);
      if (await detachLeftover()) throw new Error(`lazy-als serve left ${mountpoint} mounted after SIGTERM:\n${readLog().slice(-2000)}`);
      if (c.exitCode !== 0) throw new Error(`lazy-als serve exited ${c.exitCode ?? c.signalCode} on SIGTERM:\n${readLog().slice(-2000)}`);
    },
    async settle() {
      // Wait until no chunk fetch or background cache write is in flight (GET /status).
      for (let i = 0; i < 600; i++) {
        const body = (await controlRequest(socketPath, 'GET', '/status')).body as { catalog?: { cache?: { inFlight?: number; pendingStores?: number } } };
        const c = body.catalog?.cache;
        if (c && c.inFlight === 0 && c.pendingStores === 0) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('store did not settle within 60 s');
    },
    async kill9() {
      const c = current();
      c.kill('SIGKILL');
      await waitExit(c);
    },
    async restart() {
      if (child && !exited(child)) throw new Error('restart() while the store runs: stop() or kill9() first');
      await launch();
    },
  };
  return store;
}
