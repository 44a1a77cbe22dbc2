/**
 * Layers with many entries, as ordinary images have them (directories of small files, each file its
 * own content and so its own chunk; a symlink and an xattr now and then), in the three shapes the
 * store indexes: eStargz (TOC), zstd:chunked (TOC + tar-split) and plain tar+gzip (a scanned tar).
 * Used to measure what an index costs per entry (test/robustness/index-memory.test.ts,
 * bench/robustness/index-memory.ts). Built with the project's own fixture writers.
 */
import { gzipSync } from 'node:zlib';
import { buildEStargz } from './writers/estargz.js';
import { buildTar, type TarEntry } from './writers/tar.js';
import { buildZstdChunked } from './writers/zstd-chunked.js';

export type ManyKind = 'estargz' | 'zstd-chunked' | 'tar+gzip';

export interface ManyEntriesLayer {
  readonly blob: Buffer;
  /** TOC digest to pin (TOC formats). */
  readonly tocDigest?: string;
  readonly mediaType?: string;
  /** Entries in the archive (the index has these plus the root). */
  readonly entries: number;
}

/** `count` entries: a directory per 500 entries, regular files of 8–40 distinct bytes, every 50th a symlink, every 100th an xattr. */
export function manyEntries(count: number): TarEntry[] {
  const out: TarEntry[] = [];
  const perDir = 500;
  for (let i = 0; i < count; i++) {
    const d = `usr/share/pkg${Math.floor(i / perDir)}`;
    if (i % perDir === 0) {
      out.push({ name: `${d}/`, type: 'dir', mode: 0o755, mtime: 1_700_000_000 });
      continue;
    }
    const name = `${d}/file-${String(i).padStart(7, '0')}.txt`;
    if (i % 50 === 0) out.push({ name, type: 'symlink', linkName: `../pkg0/file-${String(i % 499).padStart(7, '0')}.txt`, mtime: 1_700_000_000 });
    else {
      out.push({
        name, type: 'reg', mode: 0o644, mtime: 1_700_000_000 + i, uid: i % 7 === 0 ? 1000 : 0,
        data: Buffer.from(`content of entry ${i} ${'x'.repeat(i % 32)}\n`),
        ...(i % 100 === 1 ? { xattrs: { 'user.tag': `t${i}` } } : {}),
      });
    }
  }
  return out;
}

export function manyEntriesLayer(kind: ManyKind, count: number): ManyEntriesLayer {
  const entries = manyEntries(count);
  if (kind === 'estargz') {
    const f = buildEStargz(entries, { minChunkSize: 64 * 1024 });
    return { blob: f.blob, tocDigest: f.tocDigest, entries: count };
  }
  if (kind === 'zstd-chunked') {
    const z = buildZstdChunked(entries);
    return { blob: z.blob, tocDigest: z.tocDigest, mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', entries: count };
  }
  return { blob: gzipSync(buildTar(entries), { level: 1 }), entries: count };
}
