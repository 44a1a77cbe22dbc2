/**
 * The reference store, stargz-store (stargz-snapshotter's Additional Layer Store), as the
 * benchmarks run it beside lazy-als. Debian's stargz-snapshotter package ships only ctr-remote;
 * bench/reference/build-stargz-store.sh builds a minimal stargz-store command from Debian's
 * golang-github-containerd-stargz-snapshotter-dev (its store package, the same code upstream's
 * command mounts) into bench/reference/.build/stargz-store (install it as /usr/local/bin/stargz-store
 * to keep it after the Go packages are gone). BENCH_STARGZ_STORE names another binary.
 *
 * It serves podman ≤ 5.0's blob-digest lookups of eStargz layers (no zstd:chunked, no TOC keys).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnCollect } from '../../test/helpers/podman.js';
import { mountAt, ROOT, waitUntil } from '../../test/e2e/store.js';

const CANDIDATES = [join(ROOT, 'bench', 'reference', '.build', 'stargz-store'), '/usr/local/bin/stargz-store'];
export const STARGZ_STORE = process.env['BENCH_STARGZ_STORE'] ?? CANDIDATES.find((p) => existsSync(p)) ?? CANDIDATES[0]!;

export interface ReferenceStore {
  readonly mountpoint: string;
  stop(): Promise<void>;
}

/** Why the reference store cannot run here, or undefined when it can. */
export function referenceStoreMissing(): string | undefined {
  if (existsSync(STARGZ_STORE)) return undefined;
  return `stargz-store not found (${process.env['BENCH_STARGZ_STORE'] ?? CANDIDATES.join(', ')}): Debian's stargz-snapshotter ships only ctr-remote; build it with bash bench/reference/build-stargz-store.sh (needs golang-go and golang-github-containerd-stargz-snapshotter-dev)`;
}

/** stargz-store on `<dir>/mnt` (state in `<dir>/root`, log `<dir>/stargz-store.log`), reaching `insecureHosts` over HTTP. */
export async function startReferenceStore(dir: string, insecureHosts: readonly string[]): Promise<ReferenceStore> {
  const mountpoint = join(dir, 'mnt');
  await mkdir(mountpoint, { recursive: true });
  await mkdir(join(dir, 'root'), { recursive: true });
  const logPath = join(dir, 'stargz-store.log');
  const fd = openSync(logPath, 'a');
  const child: ChildProcess = spawn(STARGZ_STORE, ['--root', join(dir, 'root'), '--insecure', insecureHosts.join(','), mountpoint], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const gone = (): boolean => child.exitCode !== null || child.signalCode !== null;
  const stop = async (): Promise<void> => {
    if (!gone()) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    if (mountAt(mountpoint)) await spawnCollect(['umount', '-l', mountpoint]);
  };
  try {
    await waitUntil(
      () => gone() || mountAt(mountpoint)?.fstype.startsWith('fuse') === true,
      () => `stargz-store did not mount ${mountpoint}: ${readFileSync(logPath, 'utf8').slice(-1000)}`,
    );
    if (gone()) throw new Error(`stargz-store exited: ${readFileSync(logPath, 'utf8').slice(-1000)}`);
  } catch (e) {
    await stop();
    throw e;
  }
  return { mountpoint, stop };
}
