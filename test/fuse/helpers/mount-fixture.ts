/**
 * Real FUSE mounts under fresh temp dirs, and ways to poke them from *other* processes.
 * Syscalls must not come from the test process itself: its JS thread serves the mount, and
 * synchronous (or threadpool-saturating) calls from it would deadlock against its own handlers.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, type Logger, type LogSink } from '../../../src/core/log.js';
import type { LayerProvider } from '../../../src/fuse/layer-provider.js';
import { alsMountSettings, DEFAULTS } from '../../../src/daemon/config.js';
import type { OpTimeouts } from '../../../src/fuse/adapter.js';
import { mountAls, type AlsMount, type AlsMountOptions } from '../../../src/fuse/mount-als.js';

export const PROBE = fileURLToPath(new URL('./probe.mjs', import.meta.url));

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: readonly string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    // The child may exit before reading its input: that EPIPE is not the test's business.
    p.stdin.on('error', () => undefined);
    p.stdin.end(opts.input ?? '');
  });
}

export interface ProbeOp {
  op: string;
  path: string;
  to?: string;
  mode?: string;
}
export type ProbeResult = { ok: true; value: any } | { ok: false; code: string }; // eslint-disable-line @typescript-eslint/no-explicit-any

export async function probe(ops: readonly ProbeOp[]): Promise<ProbeResult[]> {
  const r = await run(process.execPath, [PROBE, JSON.stringify(ops)]);
  if (r.code !== 0) throw new Error(`probe failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ProbeResult[];
}

export async function probe1(op: string, path: string, extra: Partial<ProbeOp> = {}): Promise<ProbeResult> {
  return (await probe([{ op, path, ...extra }]))[0]!;
}

/** Lines a logger wrote, parsed. */
export class MemorySink implements LogSink {
  readonly lines: Record<string, unknown>[] = [];
  write(line: string): void {
    this.lines.push(JSON.parse(line) as Record<string, unknown>);
  }
}

export interface TempMount {
  readonly dir: string;
  readonly mnt: string;
  readonly mount: AlsMount;
  readonly log: MemorySink;
  readonly logger: Logger;
  close(): Promise<void>;
}

/** Mount `provider` on <fresh tmp>/mnt. close() unmounts (even after failures) and removes the dir. */
/** Mount options a test may override; the rest are the daemon's defaults (daemon/config.ts). */
export type TempMountOptions = Partial<Omit<AlsMountOptions, 'timeouts'>> & { readonly timeouts?: Partial<OpTimeouts> };

export async function tempMount(provider: LayerProvider, opts: TempMountOptions = {}): Promise<TempMount> {
  const dir = await mkdtemp(join(tmpdir(), 'lazy-als-fuse-'));
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const log = new MemorySink();
  const logger = createLogger('info', log);
  let mount: AlsMount;
  try {
    const settings = alsMountSettings(DEFAULTS.fuse);
    mount = await mountAls({ mountpoint: mnt, provider, logger, ...settings, ...opts, timeouts: { ...settings.timeouts, ...opts.timeouts } });
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    dir,
    mnt,
    mount,
    log,
    logger,
    async close() {
      try {
        await mount.unmount();
      } catch {
        await run('fusermount3', ['-uz', mnt]);
      }
      await waitUnmounted(mnt);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** True while `path` is a mount point in this namespace. */
export async function isMounted(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((l) => l.split(' ')[4] === path);
}

export async function waitUnmounted(path: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (await isMounted(path)) {
    if (Date.now() > until) throw new Error(`${path} still mounted`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function getfattr(path: string, name: string): Promise<{ ok: boolean; value: string; stderr: string }> {
  const r = await run('getfattr', ['-h', '--absolute-names', '--only-values', '-n', name, path]);
  return { ok: r.code === 0, value: r.stdout, stderr: r.stderr };
}

export async function listxattr(path: string): Promise<string[]> {
  const r = await run('getfattr', ['-h', '--absolute-names', '-d', '-m', '-', path]);
  return r.stdout.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split('=')[0]!);
}
