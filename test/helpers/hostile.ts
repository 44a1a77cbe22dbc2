/**
 * Generated hostile layer blobs for the robustness tests (test/robustness/) and the robustness
 * benchmark (bench/robustness/): decompression bombs for each format, huge entry counts, lying sizes
 * in authentic TOCs, truncated bodies, repeated PAX records, holes. Every blob is built here from
 * the project's own fixture writers; `scale` shrinks them for CI (1 = the full-size corpus).
 *
 * Bombs are cheap to build: a member of 1 MiB of zeros compresses to ~1 KiB (gzip) or ~40 bytes
 * (zstd), and gzip members / zstd frames may be concatenated, so N copies inflate to N MiB.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { estargzFooter, marshalIndent, sha256, skippableFrame, tocTarEntry, zstdFooterFrame, type TocJsonEntry } from './writers/estargz.js';
import { buildTar, padding, tarHeaderBlock, tarHeaders, TAR_EOF, type TarEntry } from './writers/tar.js';
import { buildZstdChunked } from './writers/zstd-chunked.js';

const MiB = 1024 * 1024;

export interface HostileBlob {
  readonly name: string;
  /** What it attacks, and what the store must do. */
  readonly what: string;
  /** Builds the blob (lazily: some take a second or two). */
  readonly build: () => Buffer;
  /** Media type to pass to inspect (plain layers are recognised by their magic). */
  readonly mediaType?: string;
  /** TOC digest to pin (zstd:chunked needs its annotation). */
  readonly tocDigest?: () => string;
  /** Create a FIFO at the path instead of a file holding build() (inspect must not block on it). */
  readonly fifo?: boolean;
  /** Expected outcome: refused (an error naming the problem) or served (inspect succeeds). */
  readonly expect: 'refused' | 'served';
}

let zeroGz: Buffer | undefined;
let zeroZst: Buffer | undefined;
/** `n` MiB of zeros as n concatenated gzip members / zstd frames. */
function zeroMembers(kind: 'gzip' | 'zstd', n: number): Buffer {
  if (kind === 'gzip') zeroGz ??= gzipSync(Buffer.alloc(MiB), { level: 9 });
  else zeroZst ??= zstdCompress(Buffer.alloc(MiB));
  const one = kind === 'gzip' ? zeroGz! : zeroZst!;
  return Buffer.concat(new Array<Buffer>(n).fill(one));
}

const landmark: TarEntry = { name: '.no.prefetch.landmark', type: 'reg', mode: 0o644, data: Buffer.from([0x0f]) };

/**
 * An eStargz (gzip or the zstd variant) whose TOC is authentic but hostile: a landmark member, then
 * `payload` at the offset the entry `bomb` names, with the given size/innerOffset/digest.
 */
function estargzWith(kind: 'gzip' | 'zstd', payload: Buffer, bomb: { size: number; innerOffset: number; digest: string }): Buffer {
  return estargzFixture(kind, payload, bomb).blob;
}

function estargzFixture(kind: 'gzip' | 'zstd', payload: Buffer, bomb: { size: number; innerOffset: number; digest: string }): { blob: Buffer; tocDigest: string } {
  const compress = (b: Buffer): Buffer => (kind === 'gzip' ? gzipSync(b) : zstdCompress(b));
  const m0 = compress(Buffer.concat([tarHeaders(landmark), landmark.data!, padding(1)]));
  const d0 = sha256(landmark.data!);
  const entries: TocJsonEntry[] = [
    { name: landmark.name, type: 'reg', size: 1, mode: 0o644, digest: d0, chunkDigest: d0 },
    {
      name: 'bomb', type: 'reg', size: bomb.size, mode: 0o644, offset: m0.length,
      ...(bomb.innerOffset ? { innerOffset: bomb.innerOffset } : {}), digest: bomb.digest, chunkDigest: bomb.digest,
    },
  ];
  const json = marshalIndent({ version: 1, entries });
  const body = Buffer.concat([m0, payload]);
  const tocDigest = sha256(json);
  if (kind === 'gzip') return { blob: Buffer.concat([body, gzipSync(tocTarEntry(json)), estargzFooter(body.length)]), tocDigest };
  const c = zstdCompress(json);
  return { blob: Buffer.concat([body, skippableFrame(c), zstdFooterFrame(body.length + 8, c.length, json.length)]), tocDigest };
}

/** A tar.gz with `count` entries (directories of a few empty files), compressed in one member. */
function manyEntriesTar(count: number): Buffer {
  const parts: Buffer[] = [];
  const perDir = 1000;
  for (let i = 0; i < count; i++) {
    if (i % perDir === 0) parts.push(tarHeaderBlock({ name: `d${i / perDir}/`, typeflag: '5', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 }));
    else parts.push(tarHeaderBlock({ name: `d${Math.floor(i / perDir)}/f${i % perDir}`, typeflag: '0', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 }));
  }
  parts.push(TAR_EOF);
  return gzipSync(Buffer.concat(parts), { level: 1 });
}

/**
 * An eStargz whose TOC lists `count` entries (empty files in directories), with the matching tar
 * headers after the landmark (in members of 10k headers: the generator never holds the whole tar).
 */
function manyEntriesEStargz(count: number): { blob: Buffer; tocDigest: string } {
  const entries: TocJsonEntry[] = [];
  const m0 = gzipSync(Buffer.concat([tarHeaders(landmark), landmark.data!, padding(1)]));
  const d0 = sha256(landmark.data!);
  entries.push({ name: landmark.name, type: 'reg', size: 1, mode: 0o644, digest: d0, chunkDigest: d0 });
  const members: Buffer[] = [m0];
  let batch: Buffer[] = [];
  const perDir = 1000;
  for (let i = 0; i < count; i++) {
    const dir = i % perDir === 0;
    const name = dir ? `d${i / perDir}/` : `d${Math.floor(i / perDir)}/f${i % perDir}`;
    entries.push(dir ? { name, type: 'dir', mode: 0o755 } : { name, type: 'reg', mode: 0o644 });
    batch.push(tarHeaderBlock({ name, typeflag: dir ? '5' : '0', mode: dir ? 0o755 : 0o644, uid: 0, gid: 0, size: 0, mtime: 0 }));
    if (batch.length === 10_000 || i === count - 1) {
      members.push(gzipSync(Buffer.concat(batch), { level: 1 }));
      batch = [];
    }
  }
  // Compact JSON (the writer indents): the TOC is large enough as it is.
  const json = Buffer.from(JSON.stringify({ version: 1, entries }));
  const body = Buffer.concat(members);
  return { blob: Buffer.concat([body, gzipSync(tocTarEntry(json), { level: 1 }), estargzFooter(body.length)]), tocDigest: sha256(json) };
}

/** A tar.gz in which `headers` PAX headers of `bytes` each (distinct xattrs) precede one file. */
function paxPile(headers: number, bytes: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < headers; i++) {
    const key = `SCHILY.xattr.user.k${i}`;
    const fixed = ` ${key}=\n`.length;
    const digits = String(bytes).length;
    const value = Buffer.alloc(bytes - fixed - digits, 0x61);
    const rec = Buffer.concat([Buffer.from(`${bytes} ${key}=`), value, Buffer.from('\n')]);
    // one gzip member per header (members concatenate): the generator never holds the whole tar
    const hdr = tarHeaderBlock({ name: `PaxHeaders/f${i}`, typeflag: 'x', mode: 0o644, uid: 0, gid: 0, size: rec.length, mtime: 0 });
    parts.push(gzipSync(Buffer.concat([hdr, rec, padding(rec.length)]), { level: 9 }));
  }
  parts.push(gzipSync(Buffer.concat([tarHeaderBlock({ name: 'f', typeflag: '0', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 }), TAR_EOF])));
  return Buffer.concat(parts);
}

/** A plain tar (gzip or zstd) holding one file of `mib` MiB of zeros: a plain-layer bomb. */
function plainBomb(kind: 'gzip' | 'zstd', mib: number): Buffer {
  const hdr = tarHeaderBlock({ name: 'zeros', typeflag: '0', mode: 0o644, uid: 0, gid: 0, size: mib * MiB, mtime: 0 });
  const c = (b: Buffer): Buffer => (kind === 'gzip' ? gzipSync(b) : zstdCompress(b));
  return Buffer.concat([c(hdr), zeroMembers(kind, mib), c(TAR_EOF)]);
}

function once<T>(f: () => T): () => T {
  let v: { value: T } | undefined;
  return () => {
    v ??= { value: f() };
    return v.value;
  };
}

/**
 * The hostile corpus. `scale` (0 < scale ≤ 1) shrinks bombs and counts for CI; at 1 they are the
 * sizes of the reports this suite answers (a 1.6 MB eStargz bomb, 1M entries, 7 MB of PAX records).
 */
export function hostileCorpus(scale = 1): HostileBlob[] {
  const n = (full: number, min: number): number => Math.max(min, Math.round(full * scale));
  const zeros1 = sha256(Buffer.alloc(1));
  const out: HostileBlob[] = [];
  const inner = n(1500, 64);
  const ig = once(() => estargzFixture('gzip', zeroMembers('gzip', inner), { size: 1, innerOffset: inner * MiB - 1, digest: zeros1 }));
  out.push({
    name: 'estargz-innerOffset-bomb',
    what: `1-byte chunk at innerOffset ${inner} MiB of a ${inner}-member gzip bomb`,
    build: () => ig().blob,
    tocDigest: () => ig().tocDigest,
    expect: 'refused',
  });
  const innerZ = n(2900, 64);
  const iz = once(() => estargzFixture('zstd', zeroMembers('zstd', innerZ), { size: 1, innerOffset: innerZ * MiB - 1, digest: zeros1 }));
  out.push({
    name: 'estargz-zstd-innerOffset-bomb',
    what: `same in the zstd variant, ${innerZ} MiB`,
    build: () => iz().blob,
    tocDigest: () => iz().tocDigest,
    expect: 'refused',
  });
  out.push({
    name: 'estargz-declared-64MiB-chunk-bomb',
    what: 'a chunk declared 64 MiB (the chunk cap) over a 1 GiB bomb, wrong digest: decode stops at 64 MiB',
    build: () => estargzWith('gzip', zeroMembers('gzip', n(1024, 80)), { size: 64 * MiB, innerOffset: 0, digest: sha256(Buffer.from('x')) }),
    expect: 'refused',
  });
  out.push({
    name: 'estargz-size-lie',
    what: 'a chunk declared 32 MiB whose member holds 1 MiB (lying size)',
    build: () => estargzWith('gzip', zeroMembers('gzip', 1), { size: 32 * MiB, innerOffset: 0, digest: sha256(Buffer.alloc(32 * MiB)) }),
    expect: 'refused',
  });
  const zc = once(() => buildZstdChunked([{ name: 'f', type: 'reg', data: Buffer.alloc(1) }], {
    frameOverride: (name) => (name === 'f' ? zeroMembers('zstd', n(2048, 64)) : undefined),
  }));
  out.push({
    name: 'zstd-chunked-frame-bomb',
    what: `a 1-byte chunk whose frames inflate to ${n(2048, 64)} MiB`,
    build: () => zc().blob,
    tocDigest: () => zc().tocDigest,
    mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd',
    expect: 'served',
  });
  const hole = once(() => buildZstdChunked([{ name: 'hole', type: 'reg', data: Buffer.alloc(n(16, 4) * MiB) }], { holes: true, chunkSize: 256 * 1024 }));
  out.push({
    name: 'zstd-chunked-hole',
    what: `a ${n(16, 4)} MiB hole file (zeros chunks)`,
    build: () => hole().blob,
    tocDigest: () => hole().tocDigest,
    mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd',
    expect: 'served',
  });
  out.push({
    name: 'tar-gzip-bomb',
    what: `plain tar.gz of one ${n(4096, 64)} MiB zero file (bomb guard: 1 GiB + 128 × blob)`,
    build: () => plainBomb('gzip', n(4096, 64)),
    expect: scale < 0.5 ? 'served' : 'refused',
  });
  out.push({
    name: 'tar-zstd-bomb',
    what: `plain tar.zst of one ${n(4096, 64)} MiB zero file`,
    build: () => plainBomb('zstd', n(4096, 64)),
    expect: scale < 0.5 ? 'served' : 'refused',
  });
  out.push({
    name: 'pax-pile',
    what: `${n(1600, 40)} PAX headers of 1 MiB (distinct xattrs) before one entry`,
    build: () => paxPile(n(1600, 40), MiB - 1024),
    expect: 'refused',
  });
  out.push({
    name: 'tar-1M-entries',
    what: `plain tar.gz with ${n(1_000_000, 20_000)} entries`,
    build: () => manyEntriesTar(n(1_000_000, 20_000)),
    expect: scale < 0.5 ? 'served' : 'refused',
  });
  const me = once(() => manyEntriesEStargz(n(1_000_000, 20_000)));
  out.push({
    name: 'estargz-1M-entry-toc',
    what: `eStargz TOC with ${n(1_000_000, 20_000)} entries`,
    build: () => me().blob,
    tocDigest: () => me().tocDigest,
    expect: scale < 0.5 ? 'served' : 'refused',
  });
  const good = (): Buffer => buildTar([{ name: 'a', type: 'reg', data: Buffer.alloc(4096, 1) }, { name: 'b', type: 'reg', data: Buffer.alloc(4096, 2) }]);
  const cut = (b: Buffer, n: number): Buffer => b.subarray(0, n);
  out.push({ name: 'tar-gzip-truncated', what: 'a tar.gz cut in the middle', build: () => { const g = gzipSync(good()); return cut(g, g.length >> 1); }, expect: 'refused' });
  out.push({ name: 'tar-truncated', what: 'a tar cut inside a file', build: () => cut(good(), 512 + 2000), expect: 'refused' });
  const es = (): Buffer => estargzWith('gzip', gzipSync(Buffer.alloc(4096)), { size: 4096, innerOffset: 0, digest: sha256(Buffer.alloc(4096)) });
  out.push({ name: 'estargz-truncated', what: 'an eStargz cut before its footer', build: () => { const b = es(); return cut(b, b.length - 60); }, expect: 'refused' });
  out.push({ name: 'fifo', what: 'a FIFO where the blob should be (nobody writes to it)', build: () => Buffer.alloc(0), fifo: true, expect: 'refused' });
  return out;
}

/** Put `h` at `file`: its bytes, or a FIFO. */
export function materialize(h: HostileBlob, file: string): number {
  if (h.fifo) {
    const r = spawnSync('mkfifo', [file]);
    if (r.status !== 0) throw new Error(`mkfifo ${file} failed`);
    return 0;
  }
  const b = h.build();
  writeFileSync(file, b);
  return b.length;
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Measured {
  /** Peak RSS of the whole process, KiB (GNU time %M). */
  readonly rssKiB: number;
  readonly seconds: number;
  readonly code: number;
  /** "served", or the error line the CLI printed. */
  readonly line: string;
}

/** `lazy-als inspect FILE` (built dist/) in a child process under /usr/bin/time: peak RSS, time, outcome. */
export function inspectMeasured(file: string, b: Pick<HostileBlob, 'mediaType' | 'tocDigest'>, timeoutS = 300): Measured {
  const args = ['-f', '%M %e', process.execPath, join(ROOT, 'bin/lazy-als.js'), 'inspect', file, '--json'];
  if (b.mediaType) args.push('--media-type', b.mediaType);
  if (b.tocDigest) args.push('--toc-digest', b.tocDigest());
  const r = spawnSync('/usr/bin/time', args, { encoding: 'utf8', timeout: timeoutS * 1000, maxBuffer: 1 << 30 });
  const lines = r.stderr.trim().split('\n');
  const [rss, secs] = (lines.pop() ?? '0 0').split(' ').map(Number) as [number, number];
  const line =
    r.status === 0
      ? 'served'
      : (lines.find((l) => l.startsWith('lazy-als')) ?? lines.find((l) => l.trim() !== '' && !l.startsWith('note:')) ?? `exit ${r.status} ${r.signal ?? ''}`);
  return { rssKiB: rss, seconds: secs, code: r.status ?? 128, line };
}
