/**
 * Image fixtures made by REAL podman 5 (c/image 5.34, c/storage 1.57), written to OCI layouts on
 * disk (no registry needed), plus podman's own unpacked copy of every layer to compare against.
 *
 * Flow per fixture: build (`FROM scratch` + `ADD rootfs.tar /` …, `--network=none --timestamp
 * 1704067200`, so file mtimes and the config are fixed) in a builder storage; `podman push
 * --compression-format <c> --force-compression IMG oci:<dir>:<tag>`; then `podman pull
 * oci:<dir>:<tag>` into a FRESH podman 5 storage and locate each layer's
 * `<graphroot>/overlay/<layerId>/diff` through overlay-images/images.json → overlay-layers/layers.json
 * (the parent chain of the image's top layer). That diff dir is the reference for `lazy-als
 * extract`: whiteouts are char 0:0 devices, opaque dirs carry trusted.overlay.opaque=y, the diff
 * root is mode 0555. A pull from an oci: layout is never a partial (chunked) pull, so layer IDs are
 * chain IDs and layers.json has no toc-digest.
 *
 * Results are memoized per process (one vitest file) in one temp dir under TEST_TMP_ROOT; call
 * `cleanupPodmanFixtures()` in afterAll. Nothing is cached across runs.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPodman, makeTestDir, spawnCollect, type PodmanHandle } from './podman.js';
import { FEATURE_PATHS, featureRootfs } from './rootfs.js';

export { FEATURE_PATHS };

/** `podman push --compression-format` values the fixtures use (always with --force-compression). */
export type PodmanCompression = 'zstd:chunked' | 'gzip' | 'zstd';
/** Fixture kinds: podman's compressions, plus eStargz converted by ctr-remote (containerd). */
export type FixtureCompression = PodmanCompression | 'estargz';

export const ZSTD_CHUNKED_TOC_ANNOTATION = 'io.github.containers.zstd-chunked.manifest-checksum';
export const ZSTD_CHUNKED_MANIFEST_POSITION_ANNOTATION = 'io.github.containers.zstd-chunked.manifest-position';
export const ZSTD_CHUNKED_TARSPLIT_POSITION_ANNOTATION = 'io.github.containers.zstd-chunked.tarsplit-position';
export const ESTARGZ_TOC_ANNOTATION = 'containerd.io/snapshot/stargz/toc.digest';
export const ESTARGZ_UNCOMPRESSED_SIZE_ANNOTATION = 'io.containers.estargz.uncompressed-size';
/** `--timestamp` of every build: 2024-01-01T00:00:00Z (also every file's mtime in built layers). */
export const FIXTURE_TIMESTAMP = 1704067200;

export interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}
export interface OciManifest {
  schemaVersion: number;
  mediaType?: string;
  config: OciDescriptor;
  layers: OciDescriptor[];
  annotations?: Record<string, string>;
}
export interface OciImageConfig {
  rootfs: { type: string; diff_ids: string[] };
  [key: string]: unknown;
}

export interface FixtureLayer {
  index: number;
  /** As in the manifest; `annotations` is `{}` when the manifest has none. */
  descriptor: OciDescriptor & { annotations: Record<string, string> };
  /** `<ociDir>/blobs/sha256/<hex>`: the compressed layer blob. */
  blobPath: string;
  /** Uncompressed tar digest (config rootfs.diff_ids[index]). */
  diffId: string;
  /** TOC digest: the zstd:chunked manifest-checksum or the eStargz toc.digest annotation;
   *  undefined for plain gzip / zstd. */
  tocDigest: string | undefined;
  /** c/storage layer ID in the reference storage (a chain ID). */
  podmanLayerId: string;
  /** podman's own unpacked layer: `<podmanGraphRoot>/overlay/<podmanLayerId>/diff`. */
  podmanDiffDir: string;
}

export interface PodmanImageFixture {
  compression: FixtureCompression;
  ociDir: string;
  tag: string;
  /** `oci:<ociDir>:<tag>`, usable with podman/skopeo. */
  ociRef: string;
  manifestDigest: string;
  manifestPath: string;
  manifest: OciManifest;
  configDigest: string;
  config: OciImageConfig;
  diffIds: string[];
  layers: FixtureLayer[];
  /** graphroot of the podman 5 storage the layout was pulled into (deleted by cleanupPodmanFixtures). */
  podmanGraphRoot: string;
  /** Seconds spent: build (0 when the build was shared), push (for eStargz: the ctr-remote
   *  import + convert + export), pull. */
  timings: { buildS: number; pushS: number; pullS: number };
}

/** Single-layer fixture: `layer` is `layers[0]`. */
export interface PodmanLayerFixture extends PodmanImageFixture {
  layer: FixtureLayer;
}

/** Multi-layer busybox image exercising layer features; `paths` names what each layer holds. */
export interface FeatureImageFixture extends PodmanImageFixture {
  paths: typeof FEATURE_PATHS;
}

// ---------------------------------------------------------------------------------------------

interface State {
  root: string;
  builder: PodmanHandle;
  handles: PodmanHandle[];
  cleanups: (() => Promise<void>)[];
  builds: Map<string, Promise<{ image: string; buildS: number }>>;
  fixtures: Map<string, Promise<PodmanImageFixture>>;
  seq: number;
}
let state: Promise<State> | undefined;

function getState(): Promise<State> {
  state ??= (async () => {
    const root = await makeTestDir('fx');
    await mkdir(join(root, 'oci'));
    const builder = await createPodman(5, { workDir: join(root, 'build'), binds: [join(root, 'oci')] });
    return { root, builder, handles: [builder], cleanups: [], builds: new Map(), fixtures: new Map(), seq: 0 };
  })();
  return state;
}

/** Removes every storage, layout and temp dir the fixtures made in this process. */
export async function cleanupPodmanFixtures(): Promise<void> {
  if (!state) return;
  const s = await state;
  state = undefined;
  await Promise.allSettled([...s.fixtures.values(), ...s.builds.values()]);
  const errors: unknown[] = [];
  for (const fn of s.cleanups) await fn().catch((e: unknown) => errors.push(e));
  for (const h of s.handles) await h.cleanup().catch((e: unknown) => errors.push(e));
  const r = await spawnCollect(['rm', '-rf', '--one-file-system', '--', s.root]);
  if (r.code !== 0) errors.push(new Error(`rm ${s.root}: ${r.stderr}`));
  if (errors.length > 0) throw new AggregateError(errors, 'cleanupPodmanFixtures');
}

/** The fixtures' temp dir (created on first use). */
export async function podmanFixturesDir(): Promise<string> {
  return (await getState()).root;
}

// ---------------------------------------------------------------------------------------------

/** zstd:chunked single-layer image of `rootfsDir` (ADD of a tar of it), plus podman's unpacked layer. */
export function podmanZstdChunkedLayer(rootfsDir: string): Promise<PodmanLayerFixture> {
  return podmanRootfsLayer(rootfsDir, 'zstd:chunked');
}
/** Plain gzip (no annotations) single-layer image of `rootfsDir`. */
export function podmanGzipLayer(rootfsDir: string): Promise<PodmanLayerFixture> {
  return podmanRootfsLayer(rootfsDir, 'gzip');
}
/** Plain zstd (no TOC, no annotations) single-layer image of `rootfsDir`. */
export function podmanZstdLayer(rootfsDir: string): Promise<PodmanLayerFixture> {
  return podmanRootfsLayer(rootfsDir, 'zstd');
}

export async function podmanRootfsLayer(rootfsDir: string, compression: PodmanCompression): Promise<PodmanLayerFixture> {
  const key = `rootfs:${rootfsDir}`;
  const f = await fixture(key, compression, async (ctx) => {
    await tarDir(rootfsDir, join(ctx, 'rootfs.tar'));
    await writeFile(join(ctx, 'Containerfile'), 'FROM scratch\nADD rootfs.tar /\n');
  });
  const layer = f.layers[0];
  if (f.layers.length !== 1 || !layer) throw new Error(`expected 1 layer, got ${f.layers.length}`);
  return { ...f, layer };
}

/** The busybox feature image (3 layers: ADD, RUN, COPY); see FEATURE_PATHS. */
export async function podmanFeatureImage(compression: PodmanCompression = 'zstd:chunked'): Promise<FeatureImageFixture> {
  const f = await fixture('features', compression, async (ctx) => {
    const rootfs = join(ctx, 'rootfs');
    await featureRootfs(rootfs);
    await tarDir(rootfs, join(ctx, 'rootfs.tar'));
    await rm(rootfs, { recursive: true });
    await writeFile(join(ctx, 'layer2.txt'), 'hello from layer 2\n');
    const P = FEATURE_PATHS;
    const run = [
      `rm /${P.deleted}`,
      `rm -rf /${P.deletedDir}`,
      `rm -rf /${P.opaqueDir} && mkdir /${P.opaqueDir} && echo new > /${P.opaqueNew}`,
      `echo changed > /${P.modified}`,
      `mkdir /run1 && echo run-hardlink > /${P.runHardlinkTarget} && ln /${P.runHardlinkTarget} /${P.runHardlink}`,
      `ln -s /etc/base.txt /${P.runSymlink}`,
    ].join(' && ');
    await writeFile(
      join(ctx, 'Containerfile'),
      ['FROM scratch', 'ADD rootfs.tar /', `RUN ${run}`, `COPY layer2.txt /${P.copied}`, 'CMD ["/bin/sh"]', ''].join('\n'),
    );
  });
  if (f.layers.length !== 3) throw new Error(`feature image: expected 3 layers, got ${f.layers.length}`);
  return { ...f, paths: FEATURE_PATHS };
}

// ---------------------------------------------------------------------------------------------

async function fixture(
  buildKey: string,
  compression: PodmanCompression,
  makeContext: (ctxDir: string) => Promise<void>,
): Promise<PodmanImageFixture> {
  const s = await getState();
  const key = `${buildKey}\0${compression}`;
  let p = s.fixtures.get(key);
  if (!p) {
    p = (async () => {
      const n = ++s.seq;
      const built = await build(s, buildKey, makeContext);
      const builder = s.builder;
      const tag = `f${n}-${compression.replace(':', '-')}`;
      const ociDir = join(s.root, 'oci', tag);
      const t = Date.now();
      await builder.run(['push', '-q', '--compression-format', compression, '--force-compression', built.image, `oci:${ociDir}:${tag}`], {
        check: true,
      });
      const pushS = (Date.now() - t) / 1000;
      return podmanFixtureFromLayout(ociDir, tag, compression, { buildS: built.buildS, pushS });
    })();
    s.fixtures.set(key, p);
  }
  return p;
}

/**
 * Reads an OCI layout made elsewhere (e.g. by ctr-remote) as a fixture: pulls `oci:<ociDir>:<tag>`
 * into a fresh podman 5 storage (removed by cleanupPodmanFixtures) for the reference diff dirs.
 */
export async function podmanFixtureFromLayout(
  ociDir: string,
  tag: string,
  compression: FixtureCompression,
  timings: { buildS: number; pushS: number },
): Promise<PodmanImageFixture> {
  const s = await getState();
  const t = Date.now();
  const puller = await createPodman(5, { workDir: join(s.root, `pull${++s.seq}`), binds: [ociDir] });
  s.handles.push(puller);
  const pulled = await puller.run(['pull', '-q', `oci:${ociDir}:${tag}`], { check: true });
  const pullS = (Date.now() - t) / 1000;
  const imageId = pulled.stdout.trim().split('\n').pop() ?? '';
  return readFixture(ociDir, tag, compression, puller.graphRoot, imageId, { ...timings, pullS });
}

/** Runs `fn` in cleanupPodmanFixtures() (before the temp dir goes), e.g. to stop a daemon. */
export async function onFixturesCleanup(fn: () => Promise<void>): Promise<void> {
  (await getState()).cleanups.push(fn);
}

async function build(s: State, buildKey: string, makeContext: (ctxDir: string) => Promise<void>): Promise<{ image: string; buildS: number }> {
  let b = s.builds.get(buildKey);
  if (!b) {
    b = (async () => {
      const builder = s.builder;
      const name = `localhost/lazy-als-fixture:b${++s.seq}`;
      const ctx = join(builder.workDir, 'ctx', String(s.seq));
      await mkdir(ctx, { recursive: true });
      await makeContext(ctx);
      const t = Date.now();
      await builder.run(
        ['build', '-q', '--network=none', '--pull=never', '--timestamp', String(FIXTURE_TIMESTAMP), '-t', name, ctx],
        { check: true, timeoutMs: 900_000 },
      );
      await rm(ctx, { recursive: true, force: true }); // the tar can be hundreds of MB
      return { image: name, buildS: (Date.now() - t) / 1000 };
    })();
    s.builds.set(buildKey, b);
    return b;
  }
  const r = await b;
  return { image: r.image, buildS: 0 };
}

interface StorageLayer {
  id: string;
  parent?: string;
  'diff-digest'?: string;
  'compressed-diff-digest'?: string;
}

async function readFixture(
  ociDir: string,
  tag: string,
  compression: FixtureCompression,
  graphRoot: string,
  imageId: string,
  timings: PodmanImageFixture['timings'],
): Promise<PodmanImageFixture> {
  const blob = (digest: string): string => join(ociDir, 'blobs', ...digest.split(':'));
  const index = JSON.parse(await readFile(join(ociDir, 'index.json'), 'utf8')) as { manifests: (OciDescriptor & { annotations?: Record<string, string> })[] };
  const md = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!md) throw new Error(`${ociDir}: no manifest tagged ${tag}`);
  const manifestPath = blob(md.digest);
  const manifestBytes = await readFile(manifestPath);
  checkDigest(manifestBytes, md.digest, manifestPath);
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as OciManifest;
  const configBytes = await readFile(blob(manifest.config.digest));
  checkDigest(configBytes, manifest.config.digest, 'config');
  const config = JSON.parse(configBytes.toString('utf8')) as OciImageConfig;
  const diffIds = config.rootfs.diff_ids;

  // podman's unpacked layers: the image's top layer and its parent chain
  const images = JSON.parse(await readFile(join(graphRoot, 'overlay-images/images.json'), 'utf8')) as { id: string; layer?: string }[];
  const layers = JSON.parse(await readFile(join(graphRoot, 'overlay-layers/layers.json'), 'utf8')) as StorageLayer[];
  const img = images.find((i) => i.id === imageId);
  if (!img?.layer) throw new Error(`image ${imageId} not in ${graphRoot}/overlay-images/images.json`);
  const chain: StorageLayer[] = [];
  for (let id: string | undefined = img.layer; id; ) {
    const l = layers.find((x) => x.id === id);
    if (!l) throw new Error(`layer ${id} not in layers.json`);
    chain.unshift(l);
    id = l.parent;
  }
  if (chain.length !== manifest.layers.length || diffIds.length !== manifest.layers.length) {
    throw new Error(`layer count mismatch: manifest ${manifest.layers.length}, config ${diffIds.length}, storage ${chain.length}`);
  }
  const out: FixtureLayer[] = manifest.layers.map((d, i) => {
    const sl = chain[i] as StorageLayer;
    const diffId = diffIds[i] as string;
    if (sl['diff-digest'] !== undefined && sl['diff-digest'] !== diffId) {
      throw new Error(`layer ${i}: storage diff-digest ${sl['diff-digest']} != config diff_id ${diffId}`);
    }
    return {
      index: i,
      descriptor: { ...d, annotations: d.annotations ?? {} },
      blobPath: blob(d.digest),
      diffId,
      tocDigest: d.annotations?.[ZSTD_CHUNKED_TOC_ANNOTATION] ?? d.annotations?.[ESTARGZ_TOC_ANNOTATION],
      podmanLayerId: sl.id,
      podmanDiffDir: join(graphRoot, 'overlay', sl.id, 'diff'),
    };
  });
  return {
    compression,
    ociDir,
    tag,
    ociRef: `oci:${ociDir}:${tag}`,
    manifestDigest: md.digest,
    manifestPath,
    manifest,
    configDigest: manifest.config.digest,
    config,
    diffIds,
    layers: out,
    podmanGraphRoot: graphRoot,
    timings,
  };
}

function checkDigest(bytes: Buffer, digest: string, what: string): void {
  const got = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (got !== digest) throw new Error(`${what}: digest ${got} != ${digest}`);
}

/** GNU tar of `dir` keeping numeric owners, modes, hardlinks, device nodes and all xattrs. */
export async function tarDir(dir: string, tarPath: string): Promise<void> {
  const r = await spawnCollect(
    ['tar', '--xattrs', '--xattrs-include=*', '--numeric-owner', '--sort=name', '-C', dir, '-cf', tarPath, '.'],
    { timeoutMs: 600_000 },
  );
  if (r.code !== 0) throw new Error(`tar ${dir}: ${r.stderr}`);
}
