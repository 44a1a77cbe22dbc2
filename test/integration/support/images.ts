/**
 * The image the integration tests push to a real docker-registry: three layers, one per format the
 * store serves, shaped so that overlayfs semantics can be checked across them.
 *
 *   L1  eStargz (gzip), 1 MiB chunks: a base tree (setuid + security.capability file, hardlink,
 *       symlink, devices, fifo), files later whited out / hidden by an opaque dir, and big files
 *       that tests read cold (each test reads a different one, or uses a fresh state dir).
 *   L2  zstd:chunked, 1 MiB chunks: a whiteout of L1's etc/deleted.txt, an opaque opq/, new files,
 *       a multi-chunk file.
 *   L3  plain tar+gzip (no TOC: podman ≤ 5.0 path, served by blob digest only).
 *
 * Everything is deterministic (prand), so expected bytes and digests are computed here, never read
 * back from the store under test.
 */
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { pushImage, OCI_LAYER_GZIP, type PushedImage } from '../../helpers/registry-push.js';
import type { RegistryHandle } from '../../helpers/registry.js';
import { buildEStargz, prand, type EStargzFixture } from '../../helpers/writers/estargz.js';
import { buildTar, type TarEntry } from '../../helpers/writers/tar.js';
import { buildZstdChunked, type ZstdChunkedBlob, type ZstdChunkedEntry } from '../../helpers/writers/zstd-chunked.js';

export const MIB = 1024 * 1024;
export const CHUNK = MIB;
export const MT_TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const ANN_ESTARGZ_TOC = 'containerd.io/snapshot/stargz/toc.digest';
export const ANN_ESTARGZ_USIZE = 'io.containers.estargz.uncompressed-size';
/** cap_net_raw+ep, VFS_CAP_REVISION_2. */
export const CAP = Buffer.from('0100000200200000000000000000000000000000', 'hex');

export const sha256hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** File contents by layer-relative path (what a reader of `diff/<path>` must get). */
export const L1_FILES = {
  'etc/passwd': Buffer.from('root:x:0:0:root:/root:/bin/sh\n'),
  'etc/deleted.txt': Buffer.from('must be hidden by the whiteout in L2\n'),
  'opq/old.txt': Buffer.from('hidden by the opaque dir in L2\n'),
  'bin/ping': prand(5000, 'ping'),
  // Cold multi-chunk files: each test that needs "never read before" bytes uses its own.
  'big/parallel.bin': prand(8 * MIB, 'parallel'),
  'big/cold-a.bin': prand(2 * MIB + 12345, 'cold-a'),
  'big/cold-b.bin': prand(2 * MIB + 777, 'cold-b'),
  'big/cold-c.bin': prand(3 * MIB + 1, 'cold-c'),
} as const;

export const L2_FILES = {
  'etc/layer2.txt': Buffer.from('hello from layer 2\n'),
  'opq/new.txt': Buffer.from('new in the opaque dir\n'),
  'z/flip.bin': prand(3 * MIB + 99, 'flip'),
  'z/cold.bin': prand(2 * MIB + 5, 'z-cold'),
} as const;

export const L3_FILES = {
  'plain/hello.txt': Buffer.from('plain layer\n'),
  'plain/data.bin': prand(300_000, 'plain'),
} as const;

function l1Entries(): TarEntry[] {
  const f = L1_FILES;
  return [
    { name: './', type: 'dir', mode: 0o755, mtime: 1704067100 },
    { name: './etc/', type: 'dir', mode: 0o755, mtime: 1704067200 },
    { name: './etc/passwd', type: 'reg', data: f['etc/passwd'], uid: 1000, gid: 1001, mtime: 1704067201 },
    { name: './etc/deleted.txt', type: 'reg', data: f['etc/deleted.txt'] },
    { name: './opq/', type: 'dir', mode: 0o755 },
    { name: './opq/old.txt', type: 'reg', data: f['opq/old.txt'] },
    { name: './bin/', type: 'dir', mode: 0o755 },
    { name: './bin/ping', type: 'reg', data: f['bin/ping'], mode: 0o4755, xattrs: { 'security.capability': CAP, 'user.note': 'hi' } },
    { name: './bin/hl', type: 'hardlink', linkName: './bin/ping' },
    { name: './bin/sh', type: 'symlink', linkName: '/bin/busybox', mtime: 1704067202 },
    { name: './dev/', type: 'dir' },
    { name: './dev/null', type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 },
    { name: './dev/fifo', type: 'fifo', mode: 0o600 },
    { name: './big/', type: 'dir' },
    { name: './big/parallel.bin', type: 'reg', data: f['big/parallel.bin'] },
    { name: './big/cold-a.bin', type: 'reg', data: f['big/cold-a.bin'] },
    { name: './big/cold-b.bin', type: 'reg', data: f['big/cold-b.bin'] },
    { name: './big/cold-c.bin', type: 'reg', data: f['big/cold-c.bin'] },
  ];
}

function l2Entries(): ZstdChunkedEntry[] {
  const f = L2_FILES;
  return [
    { name: 'etc/', type: 'dir', mode: 0o755 },
    { name: 'etc/.wh.deleted.txt', type: 'reg' },
    { name: 'etc/layer2.txt', type: 'reg', data: f['etc/layer2.txt'] },
    { name: 'opq/', type: 'dir', mode: 0o755 },
    { name: 'opq/.wh..wh..opq', type: 'reg' },
    { name: 'opq/new.txt', type: 'reg', data: f['opq/new.txt'] },
    { name: 'z/', type: 'dir', mode: 0o755 },
    { name: 'z/flip.bin', type: 'reg', data: f['z/flip.bin'] },
    { name: 'z/cold.bin', type: 'reg', data: f['z/cold.bin'] },
  ];
}

function l3Entries(): TarEntry[] {
  return [
    { name: 'plain/', type: 'dir', mode: 0o755 },
    { name: 'plain/hello.txt', type: 'reg', data: L3_FILES['plain/hello.txt'] },
    { name: 'plain/data.bin', type: 'reg', data: L3_FILES['plain/data.bin'] },
  ];
}

export interface TestImage {
  readonly repo: string;
  readonly tag: string;
  readonly l1: EStargzFixture;
  readonly l2: ZstdChunkedBlob;
  readonly l3: { blob: Buffer; blobDigest: string; diffId: string; tar: Buffer };
  readonly pushed: PushedImage;
}

let built: { l1: EStargzFixture; l2: ZstdChunkedBlob; l3: TestImage['l3'] } | undefined;

function build(): NonNullable<typeof built> {
  if (!built) {
    const l1 = buildEStargz(l1Entries(), { chunkSize: CHUNK });
    const l2 = buildZstdChunked(l2Entries(), { chunkSize: CHUNK });
    const tar = buildTar(l3Entries());
    const blob = gzipSync(tar);
    built = { l1, l2, l3: { blob, blobDigest: 'sha256:' + sha256hex(blob), diffId: 'sha256:' + sha256hex(tar), tar } };
  }
  return built;
}

/** Push the three-layer image as `<repo>:<tag>`. */
export async function pushTestImage(reg: RegistryHandle, repo = 'it/app', tag = 'v1'): Promise<TestImage> {
  const { l1, l2, l3 } = build();
  const pushed = await pushImage(reg, repo, tag, {
    layers: [
      {
        bytes: l1.blob,
        mediaType: OCI_LAYER_GZIP,
        diffId: l1.diffId,
        annotations: { [ANN_ESTARGZ_TOC]: l1.tocDigest, [ANN_ESTARGZ_USIZE]: String(l1.uncompressedSize) },
      },
      { bytes: l2.blob, mediaType: MT_TAR_ZSTD, diffId: l2.diffId, annotations: l2.annotations },
      { bytes: l3.blob, mediaType: OCI_LAYER_GZIP, diffId: l3.diffId },
    ],
  });
  return { repo, tag, l1, l2, l3, pushed };
}

/** Compressed extents [offset, end) of an eStargz file's chunks (each chunk is its own gzip member). */
export function estargzChunkSpans(f: EStargzFixture, name: string): { offset: number; end: number }[] {
  const toc = JSON.parse(f.tocJson.toString('utf8')) as { entries: { name: string; type: string; offset?: number }[] };
  const starts = toc.entries.filter((e) => e.name === name && (e.type === 'reg' || e.type === 'chunk')).map((e) => e.offset!);
  const bounds = [...f.memberOffsets, f.tocOffset].sort((a, b) => a - b);
  return starts.map((s) => ({ offset: s, end: bounds.find((b) => b > s)! }));
}

/** `Buffer.from(ref).toString('base64')`: the store's `<refB64>` path element. */
export const refElem = (ref: string): string => Buffer.from(ref, 'utf8').toString('base64');
