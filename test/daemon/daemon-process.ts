/** Build the daemon fixture once (esbuild, node_modules external) and run it as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// Inside the repo's node_modules so the bundle's bare imports (fuse-native, smol-toml…) resolve.
const OUT = join(ROOT, 'node_modules', '.cache', 'lazy-als-test', `daemon-main-${process.pid}.mjs`);
let built: Promise<string> | undefined;

export function buildDaemon(): Promise<string> {
  built ??= (async () => {
    await mkdir(join(OUT, '..'), { recursive: true });
    await build({
      entryPoints: [join(ROOT, 'test/daemon/fixtures/daemon-main.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      outfile: OUT,
      logLevel: 'error',
    });
    return OUT;
  })();
  return built;
}

export interface Daemon {
  readonly child: ChildProcess;
  stderr: string;
  stdout: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when a stderr log line has this event. */
  waitFor(event: string, timeoutMs?: number): Promise<void>;
}

export async function startDaemon(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<Daemon> {
  const bundle = await buildDaemon();
  const child = spawn(process.execPath, [bundle, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const d: Daemon = {
    child,
    stderr: '',
    stdout: '',
    exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))),
    waitFor(event, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => d.stderr.includes(`"event":"${event}"`);
        if (check()) return resolve();
        const t = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms; stderr:\n${d.stderr}`)), timeoutMs);
        const on = (): void => {
          if (check()) {
            clearTimeout(t);
            child.stderr!.off('data', on);
            resolve();
          }
        };
        child.stderr!.on('data', on);
        void d.exited.then(() => {
          clearTimeout(t);
          if (!check()) reject(new Error(`daemon exited before ${event}; stderr:\n${d.stderr}`));
        });
      });
    },
  };
  child.stdout!.on('data', (b: Buffer) => (d.stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (d.stderr += b.toString()));
  return d;
}

/** Run a fixture command to completion. */
export async function runFixture(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const d = await startDaemon(args);
  const { code } = await d.exited;
  return { code, stdout: d.stdout, stderr: d.stderr };
}

/** Remove this worker's bundle (call from afterAll). */
export async function removeDaemonBuild(): Promise<void> {
  if (built) await rm(await built, { force: true });
  built = undefined;
}
