/** Facts about the layer formats that several modules need (docs/formats.md): one home each. */

/** Layer annotation pinning an eStargz TOC digest (docs/formats.md §2.7). */
export const STARGZ_TOC_DIGEST_ANNOTATION = 'containerd.io/snapshot/stargz/toc.digest';

/** Layer annotation pinning a zstd:chunked TOC digest (docs/formats.md §4.3). */
export const ZSTD_CHUNKED_TOC_DIGEST_ANNOTATION = 'io.github.containers.zstd-chunked.manifest-checksum';

/** u32le magic of a zstd frame (docs/formats.md §1.4). */
const ZSTD_FRAME_MAGIC = 0xfd2fb528;

/** u32le magic of a zstd skippable frame: 0x184D2A50..0x184D2A5F; zstd:chunked writers use the first. */
export const ZSTD_SKIPPABLE_MAGIC = 0x184d2a50;

export function isZstdSkippableMagic(u32: number): boolean {
  return (u32 & 0xfffffff0) >>> 0 === ZSTD_SKIPPABLE_MAGIC;
}

/** A zstd stream starts with a frame or a skippable frame. */
export function isZstdMagic(u32: number): boolean {
  return u32 === ZSTD_FRAME_MAGIC || isZstdSkippableMagic(u32);
}
