/**
 * eStargz fixtures converted by the real `ctr-remote` (Debian bookworm package stargz-snapshotter
 * 0.12.0, which needs a containerd daemon: package containerd 1.6.20). Offline: the source is a
 * podman-made gzip OCI layout (fixtures-podman.ts), imported into a private containerd, converted
 * with `ctr-remote images convert --estargz --oci`, exported to an OCI layout, then pulled into a
 * fresh podman 5 storage like every other fixture (podmanFixtureFromLayout) for the reference diff
 * dirs.
 *
 * The containerd is private to the fixtures: root, state and sockets under the fixtures temp dir,
 * CRI disabled, started inside `unshare -m` (its snapshotter mounts cannot reach the host; imports
 * use --no-unpack so there are none anyway), pid file `containerd.pid` beside its config, stopped
 * by cleanupPodmanFixtures(). scripts/teardown.sh finds a stray one by the config path in its argv.
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  onFixturesCleanup,
  podmanFeatureImage,
  podmanFixtureFromLayout,
  podmanFixturesDir,
  podmanGzipLayer,
  type FeatureImageFixture,
  type PodmanImageFixture,
  type PodmanLayerFixture,
} from './fixtures-podman.js';
import { FEATURE_PATHS } from './rootfs.js';
import { spawnCollect } from './podman.js';

const CTR_REMOTE = '/usr/bin/ctr-remote';
const CONTAINERD = '/usr/bin/containerd';
const NAMESPACE = 'lazy-als-test';

/** What is missing to make eStargz fixtures (empty when ctr-remote and containerd are installed). */
export function estargzPrerequisites(): string[] {
  const missing: string[] = [];
  if (!existsSync(CTR_REMOTE)) missing.push('ctr-remote (apt package stargz-snapshotter)');
  if (!existsSync(CONTAINERD)) missing.push('containerd (apt package containerd)');
  return missing;
}

interface Containerd {
  dir: string;
  socket: string;
  pid: number;
}
let daemon: Promise<Containerd> | undefined;
const converted = new Map<string, Promise<PodmanImageFixture>>();
let seq = 0;

async function startContainerd(): Promise<Containerd> {
  const dir = join(await podmanFixturesDir(), 'containerd');
  await mkdir(dir, { recursive: true });
  const socket = join(dir, 'c.sock');
  const config = join(dir, 'config.toml');
  await writeFile(
    config,
    [
      'version = 2',
      `root = ${JSON.stringify(join(dir, 'root'))}`,
      `state = ${JSON.stringify(join(dir, 'state'))}`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = ${JSON.stringify(socket)}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(`${socket}.ttrpc`)}`,
      '',
    ].join('\n'),
  );
  const log = openSync(join(dir, 'containerd.log'), 'a');
  // unshare execs containerd (no --fork): the pid is containerd's
  const child = spawn('unshare', ['-m', '--propagation', 'slave', CONTAINERD, '--config', config], {
    stdio: ['ignore', log, log],
    detached: true,
  });
  closeSync(log);
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error('containerd did not start');
  await writeFile(join(dir, 'containerd.pid'), `${pid}\n`);
  const d: Containerd = { dir, socket, pid };
  await onFixturesCleanup(() => stopContainerd(d));
  for (let i = 0; i < 100; i++) {
    if (existsSync(socket) && (await ctr(d, ['version'])).code === 0) return d;
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail = (await readFile(join(dir, 'containerd.log'), 'utf8').catch(() => '')).slice(-2000);
  throw new Error(`containerd did not come up on ${socket}:\n${tail}`);
}

async function stopContainerd(d: Containerd): Promise<void> {
  daemon = undefined;
  converted.clear();
  for (let i = 0; i < 60 && (await alive(d.pid)); i++) {
    try {
      process.kill(d.pid, i < 30 ? 'SIGTERM' : 'SIGKILL');
    } catch {
      /* gone */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (await alive(d.pid)) throw new Error(`containerd pid ${d.pid} survives SIGKILL`);
}

/** Running (a zombie waiting for its parent to reap it counts as gone). */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== '' && state !== 'Z' && state !== 'X';
}

function ctr(d: Containerd, args: readonly string[]) {
  return spawnCollect([CTR_REMOTE, '--address', d.socket, '--namespace', NAMESPACE, ...args], { timeoutMs: 600_000 });
}

async function ctrOk(d: Containerd, args: readonly string[]): Promise<string> {
  const r = await ctr(d, args);
  if (r.code !== 0) throw new Error(`ctr-remote ${args.join(' ')} exited ${r.code}: ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

/** eStargz version of a podman fixture (normally a gzip one), converted by ctr-remote. */
export function ctrRemoteEstargz(src: PodmanImageFixture): Promise<PodmanImageFixture> {
  let p = converted.get(src.ociRef);
  if (!p) {
    p = (async () => {
      daemon ??= startContainerd();
      const d = await daemon;
      const n = ++seq;
      const t = Date.now();
      const work = join(d.dir, `conv${n}`);
      await mkdir(work);
      const srcTar = join(work, 'src.tar');
      const outTar = join(work, 'out.tar');
      const ociDir = join(await podmanFixturesDir(), 'oci', `estargz${n}`);
      const tag = `estargz${n}`;
      const dstName = `localhost/lazy-als-estargz:${tag}`;
      await run(['tar', '-C', src.ociDir, '-cf', srcTar, '.']);
      // --no-unpack: no snapshots, so no mounts
      await ctrOk(d, ['images', 'import', '--no-unpack', srcTar]);
      const srcRef = await importedRef(d, src.tag);
      await ctrOk(d, ['images', 'convert', '--estargz', '--oci', srcRef, dstName]);
      await ctrOk(d, ['images', 'export', outTar, dstName]);
      await mkdir(ociDir, { recursive: true });
      await run(['tar', '-C', ociDir, '-xf', outTar]);
      await run(['rm', '-rf', work]);
      // the exported index names the image `dstName`; re-tag it for `oci:<dir>:<tag>`
      const indexPath = join(ociDir, 'index.json');
      const index = JSON.parse(await readFile(indexPath, 'utf8')) as { manifests: { annotations?: Record<string, string> }[] };
      for (const m of index.manifests) m.annotations = { ...m.annotations, 'org.opencontainers.image.ref.name': tag };
      await writeFile(indexPath, JSON.stringify(index));
      return podmanFixtureFromLayout(ociDir, tag, 'estargz', { buildS: src.timings.buildS, pushS: (Date.now() - t) / 1000 });
    })();
    converted.set(src.ociRef, p);
  }
  return p;
}

/** Single-layer eStargz image of `rootfsDir` (podman gzip build, then ctr-remote convert). */
export async function ctrRemoteEstargzLayer(rootfsDir: string): Promise<PodmanLayerFixture> {
  const f = await ctrRemoteEstargz(await podmanGzipLayer(rootfsDir));
  const layer = f.layers[0];
  if (f.layers.length !== 1 || !layer) throw new Error(`expected 1 layer, got ${f.layers.length}`);
  return { ...f, layer };
}

/** The feature image (see FEATURE_PATHS) converted to eStargz. */
export async function ctrRemoteEstargzFeatureImage(): Promise<FeatureImageFixture> {
  const f = await ctrRemoteEstargz(await podmanFeatureImage('gzip'));
  return { ...f, paths: FEATURE_PATHS };
}

/**
 * eStargz by ctr-remote straight to a registry: imports `srcArchive` (an OCI archive whose index
 * names the image `srcTag`, e.g. from `podman push IMG oci-archive:<path>:<srcTag>`), converts it
 * with `ctr-remote images convert --estargz --oci` to `dstRef` (`<host>/<repo>:<tag>`) and pushes
 * that over plain HTTP. The private containerd is stopped by cleanupPodmanFixtures().
 */
export async function ctrRemoteEstargzPush(srcArchive: string, srcTag: string, dstRef: string): Promise<void> {
  daemon ??= startContainerd();
  const d = await daemon;
  await ctrOk(d, ['images', 'import', '--no-unpack', srcArchive]);
  const srcRef = await importedRef(d, srcTag);
  await ctrOk(d, ['images', 'convert', '--estargz', '--oci', srcRef, dstRef]);
  // A push is idempotent; on this 2-vCPU machine under load the registry was seen to drop one
  // upload connection ("unexpected EOF"), so a failed push is tried again before the test fails.
  for (let attempt = 1; ; attempt++) {
    const r = await ctr(d, ['images', 'push', '--plain-http', dstRef]);
    if (r.code === 0) return;
    if (attempt === 3) throw new Error(`ctr-remote images push --plain-http ${dstRef} exited ${r.code}: ${r.stderr.slice(-2000)}`);
  }
}

/** ctr names an imported image `import-<date>:<ref.name of the layout>`. */
async function importedRef(d: Containerd, tag: string): Promise<string> {
  const out = await ctrOk(d, ['images', 'ls', '-q']);
  const ref = out.split('\n').find((n) => n.startsWith('import-') && n.endsWith(`:${tag}`));
  if (!ref) throw new Error(`imported image for tag ${tag} not found among: ${out}`);
  return ref;
}

async function run(argv: string[]): Promise<void> {
  const r = await spawnCollect(argv, { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
}
