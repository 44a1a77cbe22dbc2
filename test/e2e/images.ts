/**
 * The end-to-end test images, built offline from Debian's busybox-static and pushed to a test
 * registry (test/helpers/registry.ts) in every layer format the store serves.
 *
 * Three layers, written with the project's own tar writer (test/helpers/writers/tar.ts):
 *   0 base      /bin/busybox + every applet symlink, /etc/passwd (root, user 1000), files that
 *               layer 1 deletes or hides;
 *   1 features  a whiteout (etc/deleted.txt), a directory whiteout (gone/), an opaque directory
 *               (opq/: old.txt hidden, new.txt visible), a hardlink pair, relative and absolute
 *               symlinks, a busybox copy with a file capability (SCHILY.xattr.security.capability,
 *               vfs cap v2, cap_net_bind_service+ep: in the default bounding set of both
 *               podmans, unlike cap_net_raw which podman 5 drops), a ≥ 200-byte path and a unicode name;
 *   2 big       a 64 MiB deterministic pseudo-random file (AES-CTR keystream) and a small file.
 *
 * Formats, all as repository `e2e/feat` with the format as tag:
 *   gzip, zstd   plain OCI layers (no annotations): podman 4 only;
 *   estargz      buildEStargz (test/helpers/writers/estargz.ts) with the toc.digest annotation;
 *   zstdchunked  made by REAL podman 5: the gzip image pulled into a private podman 5 storage and
 *                pushed with `--compression-format zstd:chunked --force-compression`.
 * Plus `e2e/feat:multi`, an index whose amd64 manifest is the eStargz image and whose arm64 manifest
 * shares the base layer and adds its own, and `e2e/other:{gzip,estargz}` sharing layers 0–1 with
 * e2e/feat but with a different last layer.
 *
 * Tars and compressed blobs are built once per process (vitest runs each file in its own
 * process); pushes are per registry.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compress as zstdCompress } from 'zstd-napi';
import { buildEStargz } from '../helpers/writers/estargz.js';
import { buildTar, type TarEntry } from '../helpers/writers/tar.js';
import { pushImage, pushIndex, type PushedDescriptor, type PushedImage } from '../helpers/registry-push.js';
import type { RegistryHandle } from '../helpers/registry.js';
import { createPodman, makeTestDir } from '../helpers/podman.js';

export const MTIME = 1704067200; // 2024-01-01T00:00:00Z
export const BIG_SIZE = 64 * 1024 * 1024;
export const REPO = 'e2e/feat';
export const OTHER_REPO = 'e2e/other';
export const ESTARGZ_TOC = 'containerd.io/snapshot/stargz/toc.digest';
export const ESTARGZ_USIZE = 'io.containers.estargz.uncompressed-size';
export const ZSTD_CHUNKED_TOC = 'io.github.containers.zstd-chunked.manifest-checksum';
export const MT_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const MT_TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';

export type Format = 'gzip' | 'zstd' | 'estargz' | 'zstdchunked';
export const FORMATS: readonly Format[] = ['gzip', 'zstd', 'estargz', 'zstdchunked'];
/** What podman 5 (TOC-keyed lookups) can take from an ALS. */
export const TOC_FORMATS: readonly Format[] = ['estargz', 'zstdchunked'];

/** Paths in the image (no leading slash). */
export const P = {
  base: 'etc/base.txt',
  deleted: 'etc/deleted.txt',
  goneDir: 'gone',
  goneFile: 'gone/inside.txt',
  opq: 'opq',
  opqOld: 'opq/old.txt',
  opqNew: 'opq/new.txt',
  layer1: 'etc/layer1.txt',
  hardTarget: 'links/target.txt',
  hardLink: 'links/hard.txt',
  relSymlink: 'links/sym', // -> target.txt
  absSymlink: 'links/abs', // -> /etc/base.txt
  cap: 'cap/busybox', // security.capability = cap_net_bind_service+ep
  unicode: 'names/ünïcødé-ファイル.txt',
  long: `names/${'d'.repeat(120)}/${'f'.repeat(100)}.txt`,
  big: 'big/random.bin',
  small: 'big/small.txt',
  arm64: 'etc/arm64.txt',
  other: 'etc/other.txt',
} as const;

export const CONTENT = {
  base: 'hello from base layer\n',
  layer1: 'hello from layer 1\n',
  opqNew: 'new\n',
  hard: 'hardlinked content\n',
  unicode: 'unicode name\n',
  long: 'long path\n',
  small: 'small file next to the big one\n',
  arm64: 'arm64 only\n',
  other: 'the other image\n',
} as const;

/** vfs_cap_data revision 2 (linux/capability.h): magic_etc, then {permitted, inheritable} × 2 words. */
export function vfsCapV2(caps: readonly number[], effective: boolean): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32LE(0x02000000 | (effective ? 1 : 0), 0);
  let lo = 0;
  let hi = 0;
  for (const c of caps) {
    if (c < 32) lo |= 1 << c;
    else hi |= 1 << (c - 32);
  }
  b.writeUInt32LE(lo >>> 0, 4);
  b.writeUInt32LE(hi >>> 0, 12);
  return b;
}
/** CAP_NET_BIND_SERVICE: in podman 4's and podman 5's default capability (bounding) set. */
export const FILE_CAP = 10;
/** CapEff of a non-root process exec'd from P.cap (hex, as in /proc/self/status). */
export const FILE_CAP_HEX = (1 << FILE_CAP).toString(16).padStart(16, '0');
/** `getfattr -e hex` of the security.capability value. */
export const FILE_CAP_XATTR_HEX = '0x' + vfsCapV2([FILE_CAP], true).toString('hex');

/** Deterministic, incompressible bytes: the AES-128-CTR keystream for a seed. */
export function pseudoRandom(size: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const c = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

export function sha256(b: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

const dir = (name: string, mode = 0o755): TarEntry => ({ name: `${name}/`, type: 'dir', mode, mtime: MTIME });
const file = (name: string, data: Buffer | string, mode = 0o644, extra: Partial<TarEntry> = {}): TarEntry => ({
  name,
  type: 'reg',
  mode,
  mtime: MTIME,
  data: typeof data === 'string' ? Buffer.from(data) : data,
  ...extra,
});
const symlink = (name: string, target: string): TarEntry => ({ name, type: 'symlink', mode: 0o777, mtime: MTIME, linkName: target });

let busybox: Buffer | undefined;
function busyboxBytes(): Buffer {
  busybox ??= readFileSync('/bin/busybox');
  return busybox;
}

function applets(): string[] {
  return execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox')
    .sort();
}

export function baseEntries(): TarEntry[] {
  return [
    dir('.'),
    dir('bin'),
    file('bin/busybox', busyboxBytes(), 0o755),
    ...applets().map((a) => symlink(`bin/${a}`, 'busybox')),
    dir('etc'),
    file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n'),
    file('etc/group', 'root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n'),
    file(P.base, CONTENT.base),
    file(P.deleted, 'deleted by layer 1 (whiteout)\n'),
    dir(P.goneDir),
    file(P.goneFile, 'whole dir deleted by layer 1\n'),
    dir(P.opq),
    file(P.opqOld, 'hidden by the opaque dir of layer 1\n'),
    dir('root', 0o700),
    dir('tmp', 0o1777),
    dir('proc'),
    dir('sys'),
    dir('dev'),
    dir('var'),
    dir('var/tmp', 0o1777),
  ];
}

export function featureEntries(): TarEntry[] {
  const longDir = P.long.slice(0, P.long.lastIndexOf('/'));
  return [
    dir('etc'),
    file('etc/.wh.deleted.txt', ''),
    file(`.wh.${P.goneDir}`, ''),
    file(P.layer1, CONTENT.layer1),
    dir(P.opq),
    file(`${P.opq}/.wh..wh..opq`, ''),
    file(P.opqNew, CONTENT.opqNew),
    dir('links'),
    file(P.hardTarget, CONTENT.hard),
    { name: P.hardLink, type: 'hardlink', mode: 0o644, mtime: MTIME, linkName: P.hardTarget },
    symlink(P.relSymlink, 'target.txt'),
    symlink(P.absSymlink, `/${P.base}`),
    dir('cap'),
    file(P.cap, busyboxBytes(), 0o755, { xattrs: { 'security.capability': vfsCapV2([FILE_CAP], true) } }),
    dir('names'),
    file(P.unicode, CONTENT.unicode),
    dir('names/' + 'd'.repeat(120)),
    ...(longDir === 'names/' + 'd'.repeat(120) ? [] : [dir(longDir)]),
    file(P.long, CONTENT.long),
  ];
}

let bigData: Buffer | undefined;
export function bigFile(): Buffer {
  bigData ??= pseudoRandom(BIG_SIZE, 'lazy-als e2e big file');
  return bigData;
}

export function bigEntries(): TarEntry[] {
  return [dir('big'), file(P.big, bigFile()), file(P.small, CONTENT.small)];
}

export function arm64Entries(): TarEntry[] {
  return [dir('etc'), file(P.arm64, CONTENT.arm64)];
}

export function otherEntries(): TarEntry[] {
  return [dir('etc'), file(P.other, CONTENT.other)];
}

export type LayerName = 'base' | 'features' | 'big' | 'arm64' | 'other';
const ENTRIES: Record<LayerName, () => TarEntry[]> = { base: baseEntries, features: featureEntries, big: bigEntries, arm64: arm64Entries, other: otherEntries };

export interface BuiltLayer {
  readonly bytes: Buffer;
  readonly mediaType: string;
  readonly annotations?: Record<string, string>;
  readonly diffId: string;
  readonly tocDigest?: string;
}

const tars = new Map<LayerName, Buffer>();
/** The uncompressed layer tar (its sha256 is the layer's diff_id). */
export function layerTar(name: LayerName): Buffer {
  let t = tars.get(name);
  if (!t) {
    t = buildTar(ENTRIES[name]());
    tars.set(name, t);
  }
  return t;
}

const built = new Map<string, BuiltLayer>();
/** A layer blob in one of the formats made in-process (zstd:chunked comes from podman 5). */
export function buildLayer(name: LayerName, format: Exclude<Format, 'zstdchunked'>): BuiltLayer {
  const k = `${name}/${format}`;
  let l = built.get(k);
  if (!l) {
    if (format === 'estargz') {
      const f = buildEStargz(ENTRIES[name]());
      l = {
        bytes: f.blob,
        mediaType: MT_TAR_GZIP,
        annotations: { [ESTARGZ_TOC]: f.tocDigest, [ESTARGZ_USIZE]: String(f.uncompressedSize) },
        diffId: f.diffId,
        tocDigest: f.tocDigest,
      };
    } else {
      const tar = layerTar(name);
      l = {
        bytes: format === 'gzip' ? gzipSync(tar, { level: 6 }) : Buffer.from(zstdCompress(tar)),
        mediaType: format === 'gzip' ? MT_TAR_GZIP : MT_TAR_ZSTD,
        diffId: sha256(tar),
      };
    }
    built.set(k, l);
  }
  return l;
}

export interface LayerInfo {
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
  readonly diffId: string;
  /** The key podman 5 looks the layer up by (undefined: plain layer, podman 5 never asks). */
  readonly tocDigest: string | undefined;
}

export interface TestImage {
  readonly format: Format | 'multi';
  readonly repo: string;
  readonly tag: string;
  /** `<host>/<repo>:<tag>` as podman is given it (also the string the ALS ref element encodes). */
  readonly ref: string;
  readonly manifestDigest: string;
  readonly configDigest: string;
  readonly layers: readonly LayerInfo[];
}

export interface TestImages {
  readonly feat: Record<Format, TestImage>;
  /** eStargz (both podmans can use it): amd64 = feat estargz; arm64 = base (shared) + arm64 layer. */
  readonly multi: { readonly ref: string; readonly indexDigest: string; readonly amd64: TestImage; readonly arm64: TestImage };
  /** Shares base + features with feat, differs in the last layer. */
  readonly other: Record<'gzip' | 'estargz', TestImage>;
}

function fromPushed(reg: RegistryHandle, repo: string, tag: string, format: TestImage['format'], p: PushedImage, layers: readonly BuiltLayer[]): TestImage {
  return {
    format,
    repo,
    tag,
    ref: `${reg.host}/${repo}:${tag}`,
    manifestDigest: p.manifest.digest,
    configDigest: p.config.digest,
    layers: p.layers.map((d, i) => ({ digest: d.digest, size: d.size, mediaType: d.mediaType, diffId: layers[i]!.diffId, tocDigest: layers[i]!.tocDigest })),
  };
}

const CONFIG = { created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] } };

async function pushLayers(reg: RegistryHandle, repo: string, tag: string | undefined, format: TestImage['format'], layers: BuiltLayer[], platform?: { os: string; architecture: string }): Promise<{ img: TestImage; pushed: PushedImage }> {
  const pushed = await pushImage(reg, repo, tag, {
    layers: layers.map((l) => ({ bytes: l.bytes, mediaType: l.mediaType, diffId: l.diffId, ...(l.annotations ? { annotations: l.annotations } : {}) })),
    config: { ...CONFIG, ...(platform ?? { os: 'linux', architecture: 'amd64' }) },
    ...(platform ? { platform } : {}),
  });
  return { img: fromPushed(reg, repo, tag ?? pushed.manifest.digest, format, pushed, layers), pushed };
}

interface OciManifest {
  config: { digest: string };
  layers: { digest: string; size: number; mediaType: string; annotations?: Record<string, string> }[];
}

async function getJson<T>(url: string, accept: string): Promise<{ body: T; digest: string }> {
  const r = await fetch(url, { headers: { accept } });
  const buf = Buffer.from(await r.arrayBuffer());
  if (r.status !== 200) throw new Error(`GET ${url}: HTTP ${r.status} ${buf.toString().slice(0, 300)}`);
  return { body: JSON.parse(buf.toString('utf8')) as T, digest: sha256(buf) };
}

/**
 * zstd:chunked by podman 5 itself: pull `<repo>:gzip` into a throw-away podman 5 storage and push it
 * back as `<repo>:zstdchunked` with --compression-format zstd:chunked --force-compression.
 */
export async function pushZstdChunked(reg: RegistryHandle, gzipRef: string, repo: string, tag: string): Promise<TestImage> {
  const p5 = await createPodman(5, { workDir: await makeTestDir('zc'), registries: [{ host: reg.host, insecure: true }] });
  try {
    await p5.run(['pull', '-q', gzipRef], { check: true, timeoutMs: 600_000 });
    await p5.run(['push', '-q', '--compression-format', 'zstd:chunked', '--force-compression', gzipRef, `docker://${reg.host}/${repo}:${tag}`], {
      check: true,
      timeoutMs: 600_000,
    });
  } finally {
    await p5.cleanup();
  }
  const m = await getJson<OciManifest>(`${reg.url}/v2/${repo}/manifests/${tag}`, 'application/vnd.oci.image.manifest.v1+json');
  const cfg = await getJson<{ rootfs: { diff_ids: string[] } }>(`${reg.url}/v2/${repo}/blobs/${m.body.config.digest}`, '*/*');
  const layers = m.body.layers.map((l, i) => {
    const toc = l.annotations?.[ZSTD_CHUNKED_TOC];
    if (!toc) throw new Error(`podman 5 pushed layer ${i} of ${repo}:${tag} without ${ZSTD_CHUNKED_TOC}`);
    return { digest: l.digest, size: l.size, mediaType: l.mediaType, diffId: cfg.body.rootfs.diff_ids[i]!, tocDigest: toc };
  });
  return { format: 'zstdchunked', repo, tag, ref: `${reg.host}/${repo}:${tag}`, manifestDigest: m.digest, configDigest: m.body.config.digest, layers };
}

const pushedTo = new WeakMap<RegistryHandle, Promise<TestImages>>();

/** Build (once per process) and push (once per registry) every test image. */
export function pushTestImages(reg: RegistryHandle): Promise<TestImages> {
  let p = pushedTo.get(reg);
  if (!p) {
    p = (async () => {
      const names: LayerName[] = ['base', 'features', 'big'];
      const feat: Partial<Record<Format, TestImage>> = {};
      let estargzPushed: PushedImage | undefined;
      for (const f of ['gzip', 'zstd', 'estargz'] as const) {
        const { img, pushed } = await pushLayers(reg, REPO, f, f, names.map((n) => buildLayer(n, f)));
        feat[f] = img;
        if (f === 'estargz') estargzPushed = pushed;
      }
      feat.zstdchunked = await pushZstdChunked(reg, feat.gzip!.ref, REPO, 'zstdchunked');

      const arm = await pushLayers(reg, REPO, undefined, 'multi', [buildLayer('base', 'estargz'), buildLayer('arm64', 'estargz')], { os: 'linux', architecture: 'arm64' });
      const amdDesc: PushedDescriptor = { ...estargzPushed!.manifest, platform: { os: 'linux', architecture: 'amd64' } };
      const armDesc: PushedDescriptor = { ...arm.pushed.manifest, platform: { os: 'linux', architecture: 'arm64' } };
      const index = await pushIndex(reg, REPO, 'multi', [amdDesc, armDesc]);

      const other: Partial<Record<'gzip' | 'estargz', TestImage>> = {};
      for (const f of ['gzip', 'estargz'] as const) {
        other[f] = (await pushLayers(reg, OTHER_REPO, f, f, (['base', 'features', 'other'] as const).map((n) => buildLayer(n, f)))).img;
      }
      return {
        feat: feat as Record<Format, TestImage>,
        multi: { ref: `${reg.host}/${REPO}:multi`, indexDigest: index.digest, amd64: { ...feat.estargz!, format: 'multi' }, arm64: arm.img },
        other: other as Record<'gzip' | 'estargz', TestImage>,
      };
    })();
    pushedTo.set(reg, p);
  }
  return p;
}

/** The store key a podman generation uses for a layer: blob digest (4) or TOC digest (5). */
export function storeKey(l: LayerInfo, podman: 4 | 5): string | undefined {
  return podman === 4 ? l.digest : l.tocDigest;
}

/** base64 of the reference string: the ALS's first path element (`:ref`). */
export function refElem(ref: string): string {
  return Buffer.from(ref).toString('base64');
}

export function storePath(mountpoint: string, ref: string, key: string): string {
  return join(mountpoint, refElem(ref), key);
}

/**
 * A busybox sh script for `podman run IMG sh -c …` printing one `key=value` line per feature;
 * compare with expectedContents().
 */
export const CONTENT_SCRIPT = [
  'echo "base=$(cat /etc/base.txt)"',
  'echo "layer1=$(cat /etc/layer1.txt)"',
  `if [ -e /${P.deleted} ]; then echo deleted=present; else echo deleted=absent; fi`,
  `if [ -e /${P.goneDir} ]; then echo gone=present; else echo gone=absent; fi`,
  `echo "opq=$(ls -A /${P.opq} | tr '\\n' ,)"`,
  `echo "opqNew=$(cat /${P.opqNew})"`,
  `a=$(stat -c %i /${P.hardTarget}); b=$(stat -c %i /${P.hardLink}); if [ "$a" = "$b" ]; then echo hardlink=same-inode; else echo "hardlink=$a/$b"; fi`,
  `echo "nlink=$(stat -c %h /${P.hardLink})"`,
  `echo "hardContent=$(cat /${P.hardLink})"`,
  `echo "sym=$(readlink /${P.relSymlink}):$(cat /${P.relSymlink})"`,
  `echo "abs=$(readlink /${P.absSymlink}):$(cat /${P.absSymlink})"`,
  `echo "unicode=$(cat '/${P.unicode}')"`,
  `echo "long=$(cat /${P.long})"`,
  `echo "small=$(cat /${P.small})"`,
  `echo "big=$(sha256sum /${P.big} | cut -d' ' -f1)"`,
].join('\n');

export function expectedContents(): Record<string, string> {
  const line = (s: string): string => s.replace(/\n$/, '');
  return {
    base: line(CONTENT.base),
    layer1: line(CONTENT.layer1),
    deleted: 'absent',
    gone: 'absent',
    opq: 'new.txt,',
    opqNew: line(CONTENT.opqNew),
    hardlink: 'same-inode',
    nlink: '2',
    hardContent: line(CONTENT.hard),
    sym: `target.txt:${line(CONTENT.hard)}`,
    abs: `/${P.base}:${line(CONTENT.base)}`,
    unicode: line(CONTENT.unicode),
    long: line(CONTENT.long),
    small: line(CONTENT.small),
    big: sha256(bigFile()).slice('sha256:'.length),
  };
}

export function parseKeyValues(out: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const l of out.split('\n')) {
    const i = l.indexOf('=');
    if (i > 0) r[l.slice(0, i)] = l.slice(i + 1);
  }
  return r;
}

/**
 * Run as user 1000 (no ambient capabilities; podman's default bounding set): the copy of busybox
 * carrying the file capability must get CapEff = cap_net_bind_service, the shell itself nothing —
 * proof that the kernel read security.capability through overlayfs from the store at exec. (With
 * --cap-add podman would put the cap in the ambient set of the non-root user and spoil the control.)
 */
export const CAP_SCRIPT = `echo "capped=$(/${P.cap} grep CapEff /proc/self/status | cut -f2)"; echo "plain=$(grep CapEff /proc/self/status | cut -f2)"`;
export const CAP_RUN_ARGS = ['--user', '1000:1000'] as const;
