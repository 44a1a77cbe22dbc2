/**
 * The entries of a plain tar as the fixture writers (test/helpers/writers) take them, so a tar made
 * by GNU tar can be re-packed as zstd:chunked or eStargz (bench/formats/toc-layers.ts, the
 * reference-store image of bench/e2e/pull.ts).
 */
import { TarScanner } from '../../src/formats/tar/tar-scanner.js';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import type { ZstdChunkedEntry } from '../../test/helpers/writers/zstd-chunked.js';

export function tarEntries(tar: Buffer, name: string): ZstdChunkedEntry[] {
  const scanner = new TarScanner({ ...DEFAULT_LIMITS, maxEntries: 10_000_000 }, name);
  const entries: ZstdChunkedEntry[] = [];
  let cur: ZstdChunkedEntry | undefined;
  const parts: Buffer[] = [];
  const flush = (): void => {
    if (cur && parts.length) cur.data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    parts.length = 0;
  };
  for (const ev of scanner.push(tar)) {
    if (ev.kind === 'entry') {
      flush();
      const e = ev.entry;
      cur = {
        name: e.name, type: e.type, mode: e.mode & 0o7777, uid: e.uid, gid: e.gid, mtime: e.mtimeSec, mtimeNsec: e.mtimeNsec,
        ...(e.linkName !== undefined ? { linkName: e.linkName } : {}),
        ...(e.type === 'char' || e.type === 'block' ? { devMajor: e.devMajor, devMinor: e.devMinor } : {}),
        ...(e.xattrs.size ? { xattrs: Object.fromEntries(e.xattrs) } : {}),
      };
      entries.push(cur);
    } else if (ev.kind === 'data') {
      parts.push(ev.data);
    }
  }
  flush();
  scanner.finish();
  return entries;
}
