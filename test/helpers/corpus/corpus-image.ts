/**
 * The fidelity corpus image: a Debian rootfs layer plus hostile-but-legal layers written by four
 * independent tar writers, pushed to a test registry in every layer format the store serves.
 *
 * The odd content (corpus.py `spec()`): names that are not UTF-8, exactly 255 bytes, multibyte
 * UTF-8 at the 255-byte limit, control characters (incl. newline), NFC/NFD twins, a 1000-byte
 * path; mtimes −86400, −1.5 s, 0, 2^31−1, 2^31, 2^32, year 2100, nanoseconds; xattrs empty,
 * binary (with NULs), 2000 bytes, non-ASCII names, security.capability, trusted.*, on a dir;
 * sparse files, a fifo, char devices (1:3 and 4095:1048575), a block device, a hard-link triple
 * (one name not UTF-8), symlinks dangling / absolute / `..` / 1003 and 4019 bytes / to a
 * non-UTF-8 name; modes 4755 2755 6755 7777 0000 1644, sticky / setgid / 0000 dirs; owners 65534,
 * 1000000, 3000000 (past the ustar octal field).
 *
 * Layers (index: writer, top dir):
 *   0 debian      GNU tar (fixtures-podman tarDir) of the bookworm minbase rootfs (rootfs.ts)
 *   1 gnutar-pax  GNU tar --format=posix --xattrs (ns times, xattrs)
 *   2 gnutar-gnu  GNU tar --format=gnu (LongLink names, base-256 numbers, no xattrs)
 *   3 py-pax      Python tarfile PAX (hdrcharset=BINARY for non-UTF-8 names and values) + py-pax/wh/:
 *                 one file for every name length 1..255
 *   4 py-gnu      Python tarfile GNU (LongLink names, base-256 times and owners)
 *   5 py-whiteout Python tarfile PAX: whiteouts of every length 1..255 (`.wh.` + 255 bytes = 259),
 *                 of odd names, of a directory, an opaque-dir marker
 *   6 go-add      Go archive/tar: podman 5 (buildah) `ADD go.tar /` of the odd tree, unpacked and
 *                 re-written by c/storage on commit
 *   7 go-run      Go archive/tar: `RUN` deleting every entry of /go/names and /go/wh (Go-written
 *                 whiteouts of every length, of odd names) and recreating /go/opq (opaque dir)
 * Layers 0-5 go to the registry as written (gzip by zlib) as `corpus/raw:gzip`; podman 5 builds
 * layers 6-7 on top of that image. The result is pushed as `corpus/img:{gzip,zstd,zstdchunked}` by
 * podman 5 (c/storage replays the original tar bytes of layers 0-5 from tar-split, so they stay
 * those writers' bytes) and as `corpus/img:estargz` converted by ctr-remote.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { ctrRemoteEstargzPush } from '../fixtures-estargz.js';
import { tarDir } from '../fixtures-podman.js';
import { createPodman, spawnCollect } from '../podman.js';
import type { RegistryHandle } from '../registry.js';
import { pushImage } from '../registry-push.js';
import { debianRootfs } from '../rootfs.js';

export const CORPUS_PY = fileURLToPath(new URL('./corpus.py', import.meta.url));
export const PYTHON = '/usr/bin/python3';

export type CorpusFormat = 'gzip' | 'zstd' | 'zstdchunked' | 'estargz';
export const CORPUS_FORMATS: readonly CorpusFormat[] = ['gzip', 'zstd', 'zstdchunked', 'estargz'];
export const CORPUS_LAYERS = ['debian', 'gnutar-pax', 'gnutar-gnu', 'py-pax', 'py-gnu', 'py-whiteout', 'go-add', 'go-run'] as const;
/**
 * The sparse image: GNU tar --format=posix --sparse in its three PAX sparse encodings (0.0
 * offset/numbytes records, 0.1 map record, 1.0 map in the data). Separate from the corpus image
 * because c/storage cannot reproduce a sparse entry's tar from its tar-split (podman push of such
 * a layer fails "Digest did not match"), so only writers outside podman can put it in a registry:
 * gzip (zlib) and zstd (zstd CLI) here. No zstd:chunked (only podman writes that, from its
 * storage) and no eStargz (ctr-remote 0.12 fails on sparse entries: "archive/tar: missed writing
 * 3131909 bytes"). GNU tar's pre-POSIX sparse entry
 * (type 'S') is left out: c/storage refuses it ("unhandled tar header type 83"), no podman unpacks it.
 */
export const SPARSE_LAYERS = ['sparse-0.0', 'sparse-0.1', 'sparse-1.0'] as const;
export const SPARSE_FORMATS: readonly CorpusFormat[] = ['gzip', 'zstd'];
export type CorpusLayerName = (typeof CORPUS_LAYERS)[number] | (typeof SPARSE_LAYERS)[number];

const MT_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
const MT_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const ZSTD_CHUNKED_TOC = 'io.github.containers.zstd-chunked.manifest-checksum';
export const ESTARGZ_TOC = 'containerd.io/snapshot/stargz/toc.digest';

export interface CorpusLayer {
  readonly name: CorpusLayerName;
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
  readonly diffId: string;
  /** zstd:chunked manifest-checksum or eStargz toc.digest; undefined for plain gzip/zstd. */
  readonly tocDigest: string | undefined;
}

export interface CorpusImage {
  readonly format: CorpusFormat;
  /** `<host>/corpus/<img|sparse>:<format>` */
  readonly ref: string;
  readonly repo: string;
  readonly configDigest: string;
  readonly layers: readonly CorpusLayer[];
}

export async function run(argv: readonly string[], timeoutMs = 900_000): Promise<string> {
  const r = await spawnCollect(argv, { timeoutMs });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr.slice(-3000)}`);
  return r.stdout;
}

const sha256 = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** Writes the six layer tars made outside podman into `dir`; returns their paths in layer order,
 *  plus the tar that becomes the build context's `go.tar`. */
export async function writeCorpusTars(dir: string): Promise<{ tars: string[]; goTar: string }> {
  await mkdir(dir, { recursive: true });
  const t = (n: string): string => join(dir, n);
  const debian = t('debian.tar');
  await tarDir(await debianRootfs(), debian);
  const gnu = async (format: 'posix' | 'gnu', top: string, out: string, wh = false): Promise<void> => {
    const src = t(`tree-${top}`);
    await run([PYTHON, CORPUS_PY, 'tree', join(src, top), ...(wh ? ['--wh'] : [])]);
    const xattrs = format === 'posix' ? ['--xattrs', '--xattrs-include=*'] : [];
    await run(['tar', `--format=${format}`, ...xattrs, '--numeric-owner', '--sort=name', '-C', src, '-cf', out, top]);
    await run(['rm', '-rf', src]);
  };
  await gnu('posix', 'gnutar-pax', t('gnutar-pax.tar'));
  await gnu('gnu', 'gnutar-gnu', t('gnutar-gnu.tar'));
  await run([PYTHON, CORPUS_PY, 'tar', 'pax', 'py-pax', t('py-pax.tar')]);
  await run([PYTHON, CORPUS_PY, 'tar', 'gnu', 'py-gnu', t('py-gnu.tar')]);
  await run([PYTHON, CORPUS_PY, 'whiteouts', 'py-pax', t('py-whiteout.tar')]);
  const goTar = t('go.tar');
  await gnu('posix', 'go', goTar, true);
  return { tars: [debian, t('gnutar-pax.tar'), t('gnutar-gnu.tar'), t('py-pax.tar'), t('py-gnu.tar'), t('py-whiteout.tar')], goTar };
}

interface Manifest {
  config: { digest: string };
  layers: { digest: string; size: number; mediaType: string; annotations?: Record<string, string> }[];
}

async function readImage(reg: RegistryHandle, repo: string, tag: string, format: CorpusFormat, names: readonly CorpusLayerName[] = CORPUS_LAYERS): Promise<CorpusImage> {
  const r = await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`, {
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' },
  });
  if (r.status !== 200) throw new Error(`GET manifest ${repo}:${tag}: HTTP ${r.status}`);
  const m = (await r.json()) as Manifest;
  const c = await fetch(`${reg.url}/v2/${repo}/blobs/${m.config.digest}`);
  const cfg = (await c.json()) as { rootfs: { diff_ids: string[] } };
  if (m.layers.length !== names.length) throw new Error(`${repo}:${tag}: ${m.layers.length} layers, expected ${names.length}`);
  const layers = m.layers.map((l, i) => ({
    name: names[i]!,
    digest: l.digest,
    size: l.size,
    mediaType: l.mediaType,
    diffId: cfg.rootfs.diff_ids[i]!,
    tocDigest: l.annotations?.[ZSTD_CHUNKED_TOC] ?? l.annotations?.[ESTARGZ_TOC],
  }));
  return { format, ref: `${reg.host}/${repo}:${tag}`, repo, configDigest: m.config.digest, layers };
}

/**
 * Builds the corpus image once and pushes it to `reg` in every format. `workDir` holds the tars
 * and the podman 5 builder storage (removed before returning); the ctr-remote containerd is
 * stopped by cleanupPodmanFixtures().
 */
export async function pushCorpusImages(reg: RegistryHandle, workDir: string): Promise<Record<CorpusFormat, CorpusImage>> {
  const { tars, goTar } = await writeCorpusTars(join(workDir, 'tars'));
  const layers = [];
  for (const p of tars) {
    const tar = await readFile(p);
    layers.push({ bytes: await promisify(gzip)(tar, { level: 6 }), diffId: sha256(tar) });
  }
  await pushImage(reg, 'corpus/raw', 'gzip', {
    layers,
    config: { created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] } },
  });
  await run(['rm', '-rf', join(workDir, 'tars', 'debian.tar')]);

  const builder = await createPodman(5, { workDir: join(workDir, 'builder'), registries: [{ host: reg.host, insecure: true }] });
  const out: Partial<Record<CorpusFormat, CorpusImage>> = {};
  try {
    const raw = `${reg.host}/corpus/raw:gzip`;
    await builder.run(['pull', '-q', raw], { check: true, timeoutMs: 900_000 });
    const ctx = join(builder.workDir, 'ctx');
    await mkdir(ctx);
    await run(['cp', goTar, join(ctx, 'go.tar')]);
    await writeFile(
      join(ctx, 'Containerfile'),
      [
        `FROM ${raw}`,
        'ADD go.tar /',
        'RUN find /go/names /go/wh -mindepth 1 -delete && rm -rf /go/opq /go/gone && mkdir /go/opq && echo new > /go/opq/new',
        '',
      ].join('\n'),
    );
    const built = 'localhost/corpus:built';
    await builder.run(['build', '-q', '--network=none', '--pull=never', '-t', built, ctx], { check: true, timeoutMs: 900_000 });
    const pushes: [CorpusFormat, string[]][] = [
      ['gzip', ['--compression-format', 'gzip']],
      ['zstd', ['--compression-format', 'zstd', '--force-compression']],
      ['zstdchunked', ['--compression-format', 'zstd:chunked', '--force-compression']],
    ];
    for (const [f, args] of pushes) {
      await builder.run(['push', '-q', ...args, built, `docker://${reg.host}/corpus/img:${f}`], { check: true, timeoutMs: 900_000 });
      out[f] = await readImage(reg, 'corpus/img', f, f);
    }
    const archive = join(builder.workDir, 'img.oci.tar');
    await builder.run(['push', '-q', '--compression-format', 'gzip', built, `oci-archive:${archive}:corpus`], { check: true, timeoutMs: 900_000 });
    await ctrRemoteEstargzPush(archive, 'corpus', `${reg.host}/corpus/img:estargz`);
    out.estargz = await readImage(reg, 'corpus/img', 'estargz', 'estargz');
  } finally {
    await builder.cleanup();
  }
  return out as Record<CorpusFormat, CorpusImage>;
}

// ---------------------------------------------------------------------------------------------

/** One entry of `corpus.py list`: names, targets and xattrs as hex bytes. */
export interface ListedEntry {
  readonly path: string;
  /** `error:<errno>` for a name readdir listed that lstat cannot find (e.g. mangled on the way) */
  readonly type: 'dir' | 'reg' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket' | `error:${string}`;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size?: number;
  readonly sha256?: string;
  readonly link?: string;
  /** decimal string: exact beyond 2^53 */
  readonly mtime_ns: string;
  readonly nlink: number;
  readonly rdev?: readonly [number, number];
  readonly xattrs: Readonly<Record<string, string>>;
}

/** lstat/lgetxattr listing of a tree by corpus.py (Python's os module, nothing of lazy-als). */
export async function listTree(root: string): Promise<Map<string, ListedEntry>> {
  const text = await run([PYTHON, CORPUS_PY, 'list', root], 1_800_000);
  // mtime_ns exceeds 2^53: keep it as the decimal string Python printed
  const arr = JSON.parse(text.replace(/"mtime_ns":(-?\d+)/g, '"mtime_ns":"$1"')) as ListedEntry[];
  const top = arr[0];
  if (top?.type.startsWith('error:')) throw new Error(`${root}: ${top.type}`);
  return new Map(arr.map((e) => [e.path, e]));
}

/** A path (hex bytes) as something readable in a message: JSON string of latin1, plus hex when not printable ASCII. */
export function showPath(hex: string): string {
  const b = Buffer.from(hex, 'hex');
  const ascii = /^[\x20-\x7e]*$/.test(b.toString('latin1'));
  const s = b.toString('latin1');
  const short = s.length > 80 ? `${s.slice(0, 40)}…(${b.length} bytes)…${s.slice(-20)}` : s;
  return ascii ? JSON.stringify(short) : `${JSON.stringify(short)} [hex ${hex.length > 120 ? hex.slice(0, 120) + '…' : hex}]`;
}

/** The sparse image (SPARSE_LAYERS) as `corpus/sparse:{gzip,zstd}`; `workDir` is left for the caller to remove. */
export async function pushSparseImages(reg: RegistryHandle, workDir: string): Promise<Partial<Record<CorpusFormat, CorpusImage>>> {
  await mkdir(workDir, { recursive: true });
  const tars: Buffer[] = [];
  for (const name of SPARSE_LAYERS) {
    const src = join(workDir, `tree-${name}`);
    await run([PYTHON, CORPUS_PY, 'sparse', join(src, name)]);
    const out = join(workDir, `${name}.tar`);
    await run(['tar', '--format=posix', '--sparse', `--sparse-version=${name.slice('sparse-'.length)}`, '--numeric-owner', '--sort=name', '-C', src, '-cf', out, name]);
    tars.push(await readFile(out));
  }
  const config = { created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'] } };
  const gz = await Promise.all(tars.map(async (t) => ({ bytes: await promisify(gzip)(t, { level: 6 }), diffId: sha256(t), mediaType: MT_GZIP })));
  await pushImage(reg, 'corpus/sparse', 'gzip', { layers: gz, config });
  const zs: { bytes: Buffer; diffId: string; mediaType: string }[] = [];
  for (const [i, name] of SPARSE_LAYERS.entries()) {
    await run(['zstd', '-q', '-f', '-3', join(workDir, `${name}.tar`), '-o', join(workDir, `${name}.tar.zst`)]);
    zs.push({ bytes: await readFile(join(workDir, `${name}.tar.zst`)), diffId: sha256(tars[i]!), mediaType: MT_ZSTD });
  }
  await pushImage(reg, 'corpus/sparse', 'zstd', { layers: zs, config });
  const out: Partial<Record<CorpusFormat, CorpusImage>> = {};
  for (const f of SPARSE_FORMATS) out[f] = await readImage(reg, 'corpus/sparse', f, f, SPARSE_LAYERS);
  return out;
}
