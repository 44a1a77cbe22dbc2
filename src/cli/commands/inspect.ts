/**
 * `lazy-als inspect BLOB [--toc-digest D] [--diff-id D] [--media-type T] [--json]`
 *
 * Opens a local layer blob, reads and verifies every chunk of every regular file, then prints the
 * layer (format, compression, TOC digest, diffID) and its overlay view. Any verification failure
 * exits 1 with one line on stderr and prints no listing.
 *
 * Plain compressed layers (tar+gzip, tar+zstd) are verified by the reader's single pass: every piece
 * is hashed as it streams by, and the blob digest / diffID are checked at the end. Re-reading them
 * through readVerifiedChunks would decode from the blob start for every chunk (their spans have no
 * restart points), so they are not re-read; uncompressed tars and TOC formats are.
 * TOC formats are then read whole once more (formats/full-pass.ts): every tar header must agree
 * with the served view, every file's bytes with its chunk digests, and the tar computes the diffID
 * (checked against --diff-id). Only then is the layer called verified ("tarVerified": true).
 *
 * --json prints one JSON object per line: first {"layer": {...}}, then one object per entry:
 *   path ("" = root), type, mode (permission bits as an octal string, e.g. "0755", "04755"), uid, gid,
 *   size, mtime (seconds), mtimeNsec, nlink, ino, and when applicable linkTarget, rdev {major, minor},
 *   digest, xattrs {name: base64 value}.
 */
import type { CommandIo } from '../main.js';
import { UsageError } from '../main.js';
import { displayName, isUtf8, toBuffer, toText, verifyFullPass, type ByteString, type LayerIndex, type LayerNode } from '../../formats/index.js';
import { openLocalLayer, parseLayerArgs } from '../layer-args.js';
import { contentFiles, forEachVerifiedChunk } from '../../extract/verify-content.js';

const HELP = `usage: lazy-als inspect BLOB [--toc-digest D] [--diff-id D] [--media-type T] [--json]
Verify every chunk of a local layer blob and print its overlay view.
  --toc-digest D   TOC digest the TOC must hash to (else the TOC is accepted unpinned, with a note)
  --diff-id D      expected diffID (verified for plain layers, reported as unverified otherwise)
  --media-type T   descriptor media type, cross-checked against the bytes
  --json           one JSON object per line
`;

export async function run(argv: string[], io: CommandIo): Promise<number> {
  const args = parseLayerArgs(argv, true);
  if (args.help) {
    io.stdout.write(HELP);
    return 0;
  }
  if (args.positionals.length !== 1) throw new UsageError(`expected one BLOB argument\n${HELP}`);
  const layer = await openLocalLayer(args.positionals[0]!, args, io);
  try {
    const { index } = layer;
    const plainCompressed = index.format === 'tar+gzip' || index.format === 'tar+zstd';
    let chunks = 0;
    if (!plainCompressed) {
      await forEachVerifiedChunk(layer.blob, index, contentFiles(index), () => {
        chunks++;
      });
    }
    // TOC formats: the TOC must be the tar's (headers, content, diffID); plain layers already are.
    const full = index.diffId === undefined ? await verifyFullPass(layer.blob, index, args.diffId !== undefined ? { diffId: args.diffId } : {}) : undefined;
    const diffId = index.diffId ?? full?.diffId ?? args.diffId;
    const diffIdVerified = index.diffId !== undefined || (full !== undefined && args.diffId !== undefined);
    const head = {
      format: index.format,
      compression: index.compression,
      blobSize: index.blobSize,
      ...(index.blobDigest !== undefined ? { blobDigest: index.blobDigest } : {}),
      ...(index.tocDigest !== undefined ? { tocDigest: index.tocDigest, tocPinned: args.tocDigest !== undefined } : {}),
      ...(diffId !== undefined ? { diffId, diffIdVerified } : {}),
      ...(index.uncompressedSize !== undefined ? { uncompressedSize: index.uncompressedSize } : {}),
      entries: index.nodeCount,
      verifiedChunks: plainCompressed ? 'streamed' : chunks,
      tarVerified: true,
    };
    const out: string[] = [];
    if (args.json) {
      out.push(JSON.stringify({ layer: head }));
      for (const [path, node] of index.walk()) out.push(JSON.stringify(entryJson(path, node)));
    } else {
      out.push(`format:       ${head.format}`, `compression:  ${head.compression}`, `blob size:    ${head.blobSize}`);
      if (index.blobDigest) out.push(`blob digest:  ${index.blobDigest}`);
      if (index.tocDigest) out.push(`TOC digest:   ${index.tocDigest}${args.tocDigest ? ' (pinned)' : ' (computed, not pinned)'}`);
      if (diffId) out.push(`diffID:       ${diffId} (${diffIdVerified ? 'verified' : full ? 'computed from the tar' : 'unverified'})`);
      if (full) out.push(`tar:          ${full.entries} headers agree with the TOC`);
      out.push(`content:      ${plainCompressed ? 'verified in the single pass' : `${chunks} chunks verified`}`, '');
      out.push(...table(index));
    }
    io.stdout.write(out.join('\n') + '\n');
    return 0;
  } finally {
    await layer.blob.close();
  }
}

export function modeString(mode: number): string {
  return '0' + (mode & 0o7777).toString(8).padStart(3, '0');
}

/** A name as JSON: its UTF-8 text, plus the exact bytes in base64 when they are not UTF-8. */
function nameJson(key: string, b: ByteString): Record<string, string> {
  return isUtf8(b) ? { [key]: toText(b) } : { [key]: toText(b), [`${key}Base64`]: toBuffer(b).toString('base64') };
}

function entryJson(path: ByteString, n: LayerNode): Record<string, unknown> {
  return {
    ...nameJson('path', path),
    type: n.type,
    mode: modeString(n.mode),
    uid: n.uid,
    gid: n.gid,
    size: n.size,
    mtime: n.mtimeSec,
    mtimeNsec: n.mtimeNsec,
    nlink: n.nlink,
    ino: n.ino,
    ...(n.linkTarget !== undefined ? nameJson('linkTarget', n.linkTarget) : {}),
    ...(n.type === 'char' || n.type === 'block' ? { rdev: { major: n.rdevMajor, minor: n.rdevMinor } } : {}),
    ...(n.digest !== undefined ? { digest: n.digest } : {}),
    ...(n.xattrs.size ? { xattrs: Object.fromEntries([...n.xattrs].map(([k, v]) => [k, v.toString('base64')])) } : {}),
  };
}

const TYPE_CHAR: Record<LayerNode['type'], string> = { dir: 'd', reg: '-', symlink: 'l', char: 'c', block: 'b', fifo: 'p' };

function permString(mode: number): string {
  const rwx = (bits: number, special: boolean, ch: string): string =>
    (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-');
  return rwx(mode >> 6, (mode & 0o4000) !== 0, 's') + rwx(mode >> 3, (mode & 0o2000) !== 0, 's') + rwx(mode, (mode & 0o1000) !== 0, 't');
}

function printable(b: ByteString): string {
  return isUtf8(b) ? toText(b) : displayName(b, Infinity);
}

function table(index: LayerIndex): string[] {
  const rows: string[] = [];
  for (const [path, n] of index.walk()) {
    const size = n.type === 'char' || n.type === 'block' ? `${n.rdevMajor},${n.rdevMinor}` : String(n.size);
    const when = Math.abs(n.mtimeSec) < 8.64e12 ? new Date(n.mtimeSec * 1000).toISOString().replace('.000Z', 'Z') : String(n.mtimeSec);
    const xa = n.xattrs.size ? ` [${[...n.xattrs.keys()].join(',')}]` : '';
    const link = n.linkTarget !== undefined ? ` -> ${printable(n.linkTarget)}` : '';
    const owner = `${n.uid}/${n.gid}`.padEnd(11);
    const name = path === '' ? '.' : printable(path);
    rows.push(`${TYPE_CHAR[n.type]}${permString(n.mode)} ${String(n.nlink).padStart(2)} ${owner} ${size.padStart(10)} ${when} ${name}${link}${xa}`);
  }
  return rows;
}
