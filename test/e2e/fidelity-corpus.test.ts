/**
 * Fidelity against podman itself: every layer of a hostile-but-legal image, served by a mounted
 * `lazy-als serve`, must list exactly as podman's own unpack of the same layer from a normal pull.
 *
 * The image (test/helpers/corpus/corpus-image.ts): a Debian rootfs layer, odd layers written by GNU
 * tar (posix and gnu formats), Python tarfile (PAX and GNU formats) and Go's archive/tar (podman 5
 * build), a Python-written whiteout layer and a Go-written one; pushed to a real docker-registry as
 * gzip, zstd, zstd:chunked (podman 5) and eStargz (ctr-remote).
 *
 * A second, small image holds sparse files (GNU tar's three PAX sparse encodings); it exists as
 * gzip and zstd only — corpus-image.ts says why (c/storage cannot re-push a sparse layer and
 * ctr-remote cannot convert one).
 *
 * For each image × format × podman (4.3.1 host, 5.4.2 chroot):
 *   (a) a pull through the store fetches no layer blob by podman (registry access log). Exempt:
 *       podman 5 with plain gzip/zstd layers — podman ≥ 5.1 asks an ALS only for layers with a
 *       TOC (by TOC digest), so it downloads plain layers itself whatever the store does; the test
 *       checks that it does exactly that (so a change of podman's behaviour is noticed).
 *   (b) every served layer (`<store>/<base64 ref>/<key>/diff`, key = blob digest for podman 4 and
 *       for plain layers, TOC digest for podman 5) lists as podman's unpack of that layer in a
 *       separate storage without the ALS (`<graphroot>/overlay/<id>/diff` after `podman pull`).
 *       Listings come from test/helpers/corpus/corpus.py (Python lstat/readlink/getxattr/sha256,
 *       nothing of lazy-als); names, link targets and xattrs compared as bytes. Compared: presence,
 *       type, mode, uid, gid, size, content sha256, link target, mtime (ns), nlink, rdev, xattrs.
 *
 * Differences that are not the store's to fix, each allowed only where stated:
 *   - a difference the two podman versions also show between themselves: the store's value must
 *     then equal one of the two podmans' values for that path and field (both references are
 *     made for every format). Seen: an empty xattr value (`SCHILY.xattr.user.empty=`, in
 *     xattrs/many of the PAX layers) — podman 4.3.1 (c/storage 1.4x) drops it, podman 5.4.2 sets it;
 *     each such tolerated difference is printed (console) so it stays visible;
 *   - the layer root's own mtime/mode/nlink: c/storage makes `diff/` itself before unpacking;
 *   - mtime of whiteout devices (char 0:0): c/storage stamps them with the time of the pull;
 *   - eStargz bookkeeping at the root (`stargz.index.json`, prefetch landmarks): a full pull
 *     unpacks them as plain files, the store hides them (as stargz-store does);
 *   - eStargz mtimes in whole seconds: the eStargz TOC's `modtime` is the header's time rounded
 *     to the second (half up) as RFC 3339 without a fraction (ctr-remote / stargz-snapshotter), and
 *     a stat is answered before any header could be read; the store's value must be podman's
 *     rounded so, nothing else. The whole-layer check accepts exactly that (formats/full-pass.ts);
 *   - `user.overlay.opaque` next to `trusted.overlay.opaque` on the store's side: rootful
 *     c/storage writes only the trusted one; the store's view carries both so rootless
 *     (userxattr) overlay sees it too.
 */
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CORPUS_FORMATS,
  CORPUS_LAYERS,
  listTree,
  pushCorpusImages,
  pushSparseImages,
  showPath,
  SPARSE_FORMATS,
  SPARSE_LAYERS,
  type CorpusFormat,
  type CorpusImage,
  type CorpusLayerName,
} from '../helpers/corpus/corpus-image.js';
import {
  ABSENT,
  describeDifference,
  diffListings,
  ESTARGZ_BOOKKEEPING,
  fieldValue,
  XATTR_TRUSTED_OPAQUE,
  XATTR_USER_OPAQUE,
  type Difference,
  type Listing,
} from '../helpers/corpus/compare.js';
import { cleanupPodmanFixtures } from '../helpers/fixtures-podman.js';
import { estargzPrerequisites } from '../helpers/fixtures-estargz.js';
import { createPodman, makeTestDir, podmanPrerequisites, spawnCollect, type PodmanVersion } from '../helpers/podman.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { blobGets, LogCursor, PODMAN_AGENT } from './registry-log.js';
import { startStore, type Store } from './store.js';
import { defaultBackend } from '../../src/fuse/mount-als.js';

const VERSIONS: readonly PodmanVersion[] = [4, 5];

/** The FUSE backend this run's store uses ($LAZY_ALS_BACKEND, else the embedded default). */
const BACKEND = defaultBackend();

/**
 * Parts that fail until a fix lands (issue 8 items 1-5, issue 10): `it.fails`, naming the missing
 * fix, so the test turns red the moment the fix lands and this table must shrink. Never `skip`.
 * zstd:chunked takes Go-mangled names from the tar-split (db3be59), eStargz from the inline tar
 * headers read at resolve time (estargz/header-names.ts): podman takes every TOC layer from the store.
 */
const FUSE_NATIVE_NS =
  'nanosecond mtimes: the fuse-native backend serves milliseconds (issue 8 item 3; the native backend of issue 10 carries ns)';
const FUSE_NATIVE_NAMES =
  'non-UTF-8 names and link targets: fuse-native hands names over as UTF-8 text, so they reach readdir as U+FFFD and lookups fail (issue 8 item 1 needs the native backend of issue 10)';

function missingFix(version: PodmanVersion, kind: ImageKind, format: CorpusFormat, part: CorpusLayerName | 'no-layer-get'): string | undefined {
  const reasons: string[] = [];
  if (part !== 'no-layer-get' && BACKEND === 'fuse-native') reasons.push(part === 'debian' ? FUSE_NATIVE_NS : `${FUSE_NATIVE_NAMES}; ${FUSE_NATIVE_NS}`);
  return reasons.length > 0 ? reasons.join('; ') : undefined;
}

let reg: RegistryHandle;
let store: Store;
let work: string;
let images: Record<CorpusFormat, CorpusImage>;
let sparseImages: Partial<Record<CorpusFormat, CorpusImage>>;

type ImageKind = 'corpus' | 'sparse';
const COMBOS: readonly (readonly [ImageKind, CorpusFormat])[] = [
  ...CORPUS_FORMATS.map((f) => ['corpus', f] as const),
  ...SPARSE_FORMATS.map((f) => ['sparse', f] as const),
];
const LAYER_NAMES: Record<ImageKind, readonly CorpusLayerName[]> = { corpus: CORPUS_LAYERS, sparse: SPARSE_LAYERS };
const imageOf = (kind: ImageKind, format: CorpusFormat): CorpusImage => (kind === 'corpus' ? images[format] : sparseImages[format]!);

beforeAll(async () => {
  // no skipping: a machine without root, /dev/fuse, the podmans or ctr-remote fails here, loudly
  const missing = [...new Set([...podmanPrerequisites(4), ...podmanPrerequisites(5), ...estargzPrerequisites()])];
  if (missing.length > 0) throw new Error(`prerequisites missing: ${missing.join(', ')} (scripts/setup.sh --e2e)`);
  work = await makeTestDir('corpus');
  reg = await startRegistry();
  images = await pushCorpusImages(reg, join(work, 'build'));
  sparseImages = await pushSparseImages(reg, join(work, 'sparse'));
  await cleanupPodmanFixtures(); // the ctr-remote containerd is no longer needed
  store = await startStore({ dir: join(work, 'als') });
}, 3_600_000);

afterAll(async () => {
  await store?.stop();
  await reg?.stop();
  await cleanupPodmanFixtures();
  if (work) await spawnCollect(['rm', '-rf', '--one-file-system', '--', work]);
}, 300_000);

/** podman's own unpack of every layer of `img`: a normal pull into a fresh storage, then listed. */
async function podmanUnpack(version: PodmanVersion, img: CorpusImage): Promise<Listing[]> {
  const pm = await createPodman(version, { workDir: join(work, `ref${version}-${img.repo.replace('/', '-')}-${img.format}`), registries: [{ host: reg.host, insecure: true }] });
  try {
    const pulled = await pm.run(['pull', '-q', img.ref], { check: true, timeoutMs: 1_800_000 });
    const imageId = pulled.stdout.trim().split('\n').pop() ?? '';
    const images = JSON.parse(await readFile(join(pm.graphRoot, 'overlay-images/images.json'), 'utf8')) as { id: string; layer?: string }[];
    const layers = JSON.parse(await readFile(join(pm.graphRoot, 'overlay-layers/layers.json'), 'utf8')) as { id: string; parent?: string }[];
    const chain: string[] = [];
    for (let id = images.find((i) => i.id === imageId)?.layer; id; id = layers.find((l) => l.id === id)?.parent) chain.unshift(id);
    if (chain.length !== img.layers.length) throw new Error(`podman ${version} ${img.ref}: ${chain.length} layers in storage, ${img.layers.length} in the manifest`);
    const out: Listing[] = [];
    for (const id of chain) out.push(await listTree(join(pm.graphRoot, 'overlay', id, 'diff')));
    return out;
  } finally {
    await pm.cleanup();
  }
}

/** The store key podman `version` uses for a layer (podman 5: TOC digest; plain layers: the blob
 *  digest, which is what the store serves them by). */
function keyFor(version: PodmanVersion, l: CorpusImage['layers'][number]): string {
  return version === 5 && l.tocDigest ? l.tocDigest : l.digest;
}

function servedDir(ref: string, key: string): string {
  return join(store.mountpoint, Buffer.from(ref).toString('base64'), key, 'diff');
}

/** Differences left after the allowances stated at the top of this file. */
function unexplained(diffs: readonly Difference[], format: CorpusFormat, served: Listing, mine: Listing, other: Listing): Difference[] {
  return diffs.filter((d) => {
    if (d.path === '' && ['mtime_ns', 'mode', 'nlink'].includes(d.field)) return false; // c/storage makes diff/ itself
    const p = mine.get(d.path);
    if (d.field === 'mtime_ns' && p?.type === 'char' && p.rdev?.[0] === 0 && p.rdev[1] === 0) return false; // whiteout: pull time
    if (format === 'estargz' && d.field === 'presence' && d.served === ABSENT && ESTARGZ_BOOKKEEPING.has(d.path)) return false;
    if (format === 'estargz' && d.field === 'mtime_ns' && /^\d+$/.test(d.podman) && d.served === String(roundedToSecond(BigInt(d.podman)))) return false;
    if (d.field === `xattr:${XATTR_USER_OPAQUE}` && d.podman === ABSENT && served.get(d.path)?.xattrs[XATTR_TRUSTED_OPAQUE] !== undefined) return false;
    // the two podmans differ here too: the store may match either
    const theirs = fieldValue(other, d.path, d.field);
    if (theirs !== d.podman && theirs === d.served) {
      console.info(`tolerated (the other podman shows it too): ${describeDifference(d, showPath)}`);
      return false;
    }
    return true;
  });
}

describe.each(COMBOS)(`%s image as %s (${BACKEND} backend)`, (kind, format) => {
  const reference = new Map<PodmanVersion, Listing[]>();

  beforeAll(async () => {
    for (const v of VERSIONS) reference.set(v, await podmanUnpack(v, imageOf(kind, format)));
  }, 3_600_000);

  describe.each(VERSIONS)('podman %i', (version) => {
    const served = new Map<CorpusLayerName, Listing | Error>();
    let podmanGets: string[] = [];

    beforeAll(async () => {
      const img = imageOf(kind, format);
      const pm = await createPodman(version, {
        workDir: join(work, `als${version}-${kind}-${format}`),
        als: { dir: store.mountpoint },
        registries: [{ host: reg.host, insecure: true }],
      });
      try {
        const cursor = new LogCursor(reg.logPath);
        await pm.run(['pull', '-q', img.ref], { check: true, timeoutMs: 1_800_000 });
        podmanGets = blobGets(cursor.since(), { agent: PODMAN_AGENT });
        for (const l of img.layers) {
          served.set(l.name, await listTree(servedDir(img.ref, keyFor(version, l))).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e)))));
        }
      } finally {
        await pm.cleanup();
      }
    }, 3_600_000);

    const plain = format === 'gzip' || format === 'zstd';
    const getsName =
      version === 5 && plain
        ? 'podman 5 downloads plain layers itself (exempt: podman ≥ 5.1 asks an ALS only for TOC layers)'
        : 'podman fetches no layer blob from the registry (only the config)';
    const getsFix = missingFix(version, kind, format, 'no-layer-get');
    (getsFix ? it.fails : it)(`${getsName}${getsFix ? ` (fails until: ${getsFix})` : ''}`, () => {
      const img = imageOf(kind, format);
      if (version === 5 && plain) expect(new Set(podmanGets)).toEqual(new Set([img.configDigest, ...img.layers.map((l) => l.digest)]));
      else {
        const layerGets = podmanGets.filter((d) => d !== img.configDigest).map((d) => `${img.layers.find((l) => l.digest === d)?.name ?? '?'} ${d}`);
        expect(layerGets, `podman downloaded these layers instead of using the store:\n${refusals()}`).toEqual([]);
      }
    });

    for (const [i, name] of LAYER_NAMES[kind].entries()) {
      const fix = missingFix(version, kind, format, name);
      (fix ? it.fails : it)(`layer ${i} ${name} lists as podman’s own unpack${fix ? ` (fails until: ${fix})` : ''}`, () => {
        const s = served.get(name);
        if (s instanceof Error || s === undefined) throw new Error(`the store did not serve layer ${name}: ${s?.message ?? 'not listed'}\n${refusals()}`);
        const mine = reference.get(version)![i]!;
        const other = reference.get(version === 4 ? 5 : 4)![i]!;
        expect(mine.size, 'a real comparison, not an empty one').toBeGreaterThan(1);
        const left = unexplained(diffListings(s, mine), format, s, mine, other);
        expect(left.length, summarize(left)).toBe(0);
      });
    }
  });
});

/** ns rounded to the second, half up (how an eStargz TOC records a header's time). */
function roundedToSecond(ns: bigint): bigint {
  const s = ns / 1_000_000_000n;
  return (ns % 1_000_000_000n >= 500_000_000n ? s + 1n : s) * 1_000_000_000n;
}

/** Count per field and the first differences, one per line (a Debian layer can differ in thousands). */
function summarize(diffs: readonly Difference[]): string {
  const per = new Map<string, number>();
  for (const d of diffs) per.set(d.field.startsWith('xattr:') ? 'xattr' : d.field, (per.get(d.field.startsWith('xattr:') ? 'xattr' : d.field) ?? 0) + 1);
  const counts = [...per].map(([f, n]) => `${f}: ${n}`).join(', ');
  return `${diffs.length} differences from podman's unpack (${counts}):\n${diffs
    .slice(0, 40)
    .map((d) => `  ${describeDifference(d, showPath)}`)
    .join('\n')}${diffs.length > 40 ? '\n  …' : ''}\n`;
}

/** The store's lines about refused layers, for failure messages. */
function refusals(): string {
  return store
    .log()
    .split('\n')
    .filter((l) => /"level":"(warn|error)"|lookup_failed|refused/.test(l))
    .slice(-20)
    .join('\n');
}
