/**
 * Real podman for tests, with state that belongs to one test only.
 *
 * Two generations matter to lazy-als: podman 4.3.1 (the Debian 12 host) looks up Additional Layer
 * Store entries by compressed blob digest; podman 5.4.2 (a Debian 13 chroot made by
 * test/e2e/setup-chroot.sh) looks them up by TOC digest. `createPodman(4|5, …)` gives a handle
 * whose storage (graphroot, runroot), configs, blob-info cache, tmp dirs and network config all sit
 * under `workDir`, so tests can run side by side and never touch /var/lib/containers.
 *
 * Every command goes through test/helpers/podman-env.sh, which enters a private mount namespace
 * (so overlay mounts made by podman never reach the host's mount table and vanish when the
 * command ends), applies this VM's fixes (hybrid cgroups, blob-info cache) and, for podman 5,
 * chroots into the trixie tree with /proc /sys /dev, `workDir`, the ALS dir and any `binds`
 * rbind-mounted at the same paths. Only argv arrays are spawned; no shell strings.
 *
 * A FUSE ALS must be mounted before `run` is called: a namespace copies the mounts that exist when
 * it starts.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type PodmanVersion = 4 | 5;

/** Root of every temp dir the podman/fixture helpers create; scripts/teardown.sh cleans it. */
export const TEST_TMP_ROOT = process.env['LAZY_ALS_TEST_TMP'] ?? '/tmp/lazy-als-test';
/** The trixie chroot holding podman 5 (test/e2e/setup-chroot.sh). */
export const CHROOT_DIR = process.env['LAZY_ALS_CHROOT'] ?? '/var/lib/lazy-als-test/trixie';
/** Environment marker podman-env.sh puts on every process it starts (value: the instance dir). */
export const PODMAN_MARKER_ENV = 'LAZY_ALS_TEST_PODMAN';

const WRAPPER = fileURLToPath(new URL('./podman-env.sh', import.meta.url));

export interface PodmanOptions {
  /** Absolute dir owned by this instance (created if missing, deleted by cleanup()). Keep it short:
   *  conmon socket paths under it must stay below 108 bytes. */
  workDir: string;
  /** Additional Layer Store: `additionallayerstores = ["<dir>:ref"]` (or `["<dir>"]` if withRef is false). */
  als?: { dir: string; withRef?: boolean };
  /** Registries reachable over plain HTTP; the first one is also the unqualified-search registry. */
  registries?: { host: string; insecure: true }[];
  /** Raw TOML appended to registries.conf (e.g. a docker.io mirror). */
  registriesConfExtra?: string;
  /** Raw TOML lines appended to [storage.options] in storage.conf. */
  storageOptionsExtra?: string;
  /** Extra host dirs podman 5 must see (build contexts, oci: layouts outside workDir). Ignored for 4. */
  binds?: string[];
  /** Override the podman 5 chroot (default CHROOT_DIR). */
  chroot?: string;
}

export interface RunOptions {
  /** Bytes for stdin (default: stdin is empty). */
  input?: string | Buffer;
  /** Kill the whole process group after this many ms (default 300 s). */
  timeoutMs?: number;
  /** Throw PodmanCommandError when the exit code is not 0. */
  check?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class PodmanCommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: RunResult,
  ) {
    super(
      `podman-env: \`${argv.join(' ')}\` exited ${result.code}\n` +
        `--- stderr (tail) ---\n${result.stderr.slice(-4000)}\n--- stdout (tail) ---\n${result.stdout.slice(-2000)}`,
    );
    this.name = 'PodmanCommandError';
  }
}

export interface PodmanHandle {
  readonly version: PodmanVersion;
  readonly workDir: string;
  readonly graphRoot: string;
  readonly runRoot: string;
  readonly storageConf: string;
  readonly containersConf: string;
  readonly registriesConf: string;
  /** `podman ARGS…` in the isolated environment. */
  run(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Any command (skopeo, strace podman …, sh -c …) in the same environment. */
  exec(argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Pids of live processes of this instance: the environment marker (podman-env.sh, podman,
   *  crun, …) or an argument inside workDir (conmon). Container processes themselves have neither. */
  processes(): Promise<number[]>;
  /** Removes containers, kills stray processes of this instance, checks nothing stays mounted
   *  under workDir on the host, and deletes workDir. Safe to call twice. */
  cleanup(): Promise<void>;
}

/** A fresh dir `<TEST_TMP_ROOT>/<prefix>-<8 hex>` (keep prefixes short: socket paths must stay < 108 bytes). */
export async function makeTestDir(prefix: string): Promise<string> {
  await mkdir(TEST_TMP_ROOT, { recursive: true });
  // lower case only: podman 4 names an image pulled from `oci:<path>` after the path, and image
  // names must be lower case (mkdtemp's suffix is mixed case)
  for (;;) {
    const dir = join(TEST_TMP_ROOT, `${prefix}-${randomBytes(4).toString('hex')}`);
    try {
      await mkdir(dir);
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

/** What is missing to run podman `version` here (empty when everything is in place). */
export function podmanPrerequisites(version: PodmanVersion, chroot = CHROOT_DIR): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root');
  if (!existsSync('/dev/fuse')) missing.push('/dev/fuse');
  if (!existsSync('/usr/bin/unshare')) missing.push('unshare (util-linux)');
  if (version === 4 && !existsSync('/usr/bin/podman')) missing.push('host podman (scripts/setup.sh)');
  if (version === 5 && !existsSync(join(chroot, '.lazy-als-ready'))) {
    missing.push(`podman 5 chroot ${chroot} (bash test/e2e/setup-chroot.sh)`);
  }
  return missing;
}

const toml = (s: string): string => JSON.stringify(s); // TOML basic strings accept JSON escapes

export async function createPodman(version: PodmanVersion, opts: PodmanOptions): Promise<PodmanHandle> {
  const workDir = resolve(opts.workDir);
  const chroot = opts.chroot ?? CHROOT_DIR;
  const graphRoot = join(workDir, 'graph');
  const runRoot = join(workDir, 'run');
  const storageConf = join(workDir, 'storage.conf');
  const containersConf = join(workDir, 'containers.conf');
  const registriesConf = join(workDir, 'registries.conf');
  for (const d of ['graph', 'run', 'cache', 'tmp', 'libpod-tmp', 'net']) {
    await mkdir(join(workDir, d), { recursive: true });
  }
  const alsDir = opts.als ? resolve(opts.als.dir) : undefined;
  const storage = (withAls: boolean): string =>
    [
      '[storage]',
      'driver = "overlay"',
      `graphroot = ${toml(graphRoot)}`,
      `runroot = ${toml(runRoot)}`,
      '',
      '[storage.options]',
      withAls && alsDir ? `additionallayerstores = [${toml(opts.als?.withRef === false ? alsDir : `${alsDir}:ref`)}]` : '',
      opts.storageOptionsExtra ?? '',
      '',
    ].join('\n');
  await writeFile(storageConf, storage(true));
  // lets scripts/teardown.sh run `podman rm -af` for an instance a crashed test left behind
  await writeFile(join(workDir, 'instance.env'), `VERSION=${version}\nCHROOT=${chroot}\n`);
  // cleanup() must work even when the ALS (a FUSE mount) is already gone: podman refuses to start
  // when an additionallayerstores dir does not exist
  await writeFile(join(workDir, 'storage-noals.conf'), storage(false));
  await writeFile(
    containersConf,
    [
      '[containers]',
      // this VM's root lacks CAP_SYS_RESOURCE; podman raises NOFILE to 1048576 and lowers its own
      // NPROC hard limit to 32768, so crun fails "setrlimit …: Operation not permitted"
      'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
      // no network namespace, no bridge/iptables/CNI state on the host
      'netns = "none"',
      'log_driver = "k8s-file"',
      '',
      '[network]',
      `network_config_dir = ${toml(join(workDir, 'net'))}`,
      '',
      '[engine]',
      'runtime = "crun"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = ${toml(join(workDir, 'events.log'))}`,
      `tmp_dir = ${toml(join(workDir, 'libpod-tmp'))}`,
      '',
    ].join('\n'),
  );
  const regs = opts.registries ?? [];
  await writeFile(
    registriesConf,
    [
      `unqualified-search-registries = [${regs.map((r) => toml(r.host)).join(', ')}]`,
      'short-name-mode = "permissive"',
      '',
      ...regs.flatMap((r) => ['[[registry]]', `location = ${toml(r.host)}`, 'insecure = true', '']),
      opts.registriesConfExtra ?? '',
      '',
    ].join('\n'),
  );

  const binds = version === 5 ? [...new Set([...(alsDir ? [alsDir] : []), ...(opts.binds ?? []).map((b) => resolve(b))])] : [];
  const wrapperArgs = (dir: string): string[] => {
    const a = ['--version', String(version), '--dir', dir];
    if (version === 5) a.push('--chroot', chroot);
    for (const b of binds) if (b !== workDir && !b.startsWith(`${workDir}/`)) a.push('--bind', b);
    return a;
  };

  const exec = (argv: readonly string[], ro?: RunOptions): Promise<RunResult> =>
    spawnCollect(['/bin/bash', WRAPPER, ...wrapperArgs(workDir), '--', ...argv], ro).then((r) => {
      if (ro?.check && r.code !== 0) throw new PodmanCommandError(argv, r);
      return r;
    });

  const processes = (): Promise<number[]> => pidsWithMarker(workDir);
  let cleaned = false;

  return {
    version,
    workDir,
    graphRoot,
    runRoot,
    storageConf,
    containersConf,
    registriesConf,
    run: (args, ro) => exec(['podman', ...args], ro),
    exec,
    processes,
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      if (existsSync(storageConf)) {
        // containers left running hold overlay mounts (inside their namespace) and conmon processes
        await spawnCollect(
          ['/bin/bash', WRAPPER, ...wrapperArgs(workDir), '--', 'env',
            `CONTAINERS_STORAGE_CONF=${join(workDir, 'storage-noals.conf')}`, 'podman', 'rm', '-af', '-t', '0'],
          { timeoutMs: 60_000 },
        );
      }
      await killMarked(workDir);
      const left = await mountsUnder(workDir);
      for (const m of left.reverse()) {
        await spawnCollect(['umount', '-l', m], { timeoutMs: 30_000 });
      }
      const still = await mountsUnder(workDir);
      if (still.length > 0) throw new Error(`still mounted under ${workDir}: ${still.join(', ')}`);
      // (binds outside /tmp leave empty mount-point dirs in the chroot; they are harmless)
      await rmTree(workDir);
    },
  };
}

/** Spawns argv (no shell) in its own process group and collects its output. */
export function spawnCollect(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new Error('empty argv'));
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => undefined); // the command may exit without reading stdin
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }, opts.timeoutMs ?? 300_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8') + (signal ? `\n[killed by ${signal}]` : '');
      resolvePromise({ code: code ?? 128, stdout: Buffer.concat(out).toString('utf8'), stderr });
    });
  });
}

/** Mount points (from /proc/self/mountinfo) equal to or below `dir`, in mount order. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const root = resolve(dir);
  return text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined)
    .map((m) => m.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === root || m.startsWith(`${root}/`));
}

/**
 * Live pids belonging to podman instances at or below `under` (every instance if omitted):
 * processes whose environment has PODMAN_MARKER_ENV=<dir> (podman-env.sh, podman, crun, …), and,
 * when `under` is given, processes with an argument naming a path at or below it (conmon, whose
 * environment podman sanitizes, gets --exit-dir/-b/-p paths inside the instance dir).
 */
export async function pidsWithMarker(under?: string): Promise<number[]> {
  const root = under === undefined ? undefined : resolve(under);
  const inside = (v: string): boolean => root === undefined || v === root || v.startsWith(`${root}/`);
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let env: string;
    let cmdline: string;
    try {
      env = await readFile(`/proc/${name}/environ`, 'utf8');
      cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    if (cmdline === '') continue; // zombie or kernel thread
    const v = env
      .split('\0')
      .find((e) => e.startsWith(`${PODMAN_MARKER_ENV}=`))
      ?.slice(PODMAN_MARKER_ENV.length + 1);
    const byEnv = v !== undefined && inside(v);
    const byArgv = root !== undefined && cmdline.split('\0').some((a) => inside(a.replace(/^--?[\w-]+=/, '')));
    if (byEnv || byArgv) pids.push(Number(name));
  }
  return pids;
}

async function killMarked(instanceDir: string): Promise<void> {
  for (let round = 0; round < 50; round++) {
    const pids = await pidsWithMarker(instanceDir);
    if (pids.length === 0) return;
    for (const p of pids) {
      try {
        process.kill(p, round < 10 ? 'SIGTERM' : 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`processes of ${instanceDir} survive SIGKILL: ${(await pidsWithMarker(instanceDir)).join(' ')}`);
}

/** rm -rf that never crosses into a mount (a leftover mount is reported, not emptied). */
async function rmTree(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  const r = await spawnCollect(['rm', '-rf', '--one-file-system', '--', dir], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`rm -rf ${dir}: ${r.stderr}`);
}
