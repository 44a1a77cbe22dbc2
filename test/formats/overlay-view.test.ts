import { describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/core/digest.js';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { FormatError } from '../../src/formats/errors.js';
import type { ChunkRef, RawEntry } from '../../src/formats/model.js';
import { buildLayerIndex, normalizeEntryPath, type BuildOptions, type LayerMeta } from '../../src/formats/overlay-view.js';
import { asByteString } from '../../src/formats/byte-string.js';

const META: LayerMeta = { format: 'tar', compression: 'none', blobSize: 1 << 20 };
const PLAIN: BuildOptions = { hideEstargzArtefacts: false };
const TOC: BuildOptions = { hideEstargzArtefacts: true };

function e(name: string, type: RawEntry['type'] = 'reg', extra: Partial<RawEntry> = {}): RawEntry {
  const size = extra.size ?? 0;
  const chunks: ChunkRef[] =
    type === 'reg' && size > 0 ? [{ digest: sha256Of(Buffer.from(name)), fileOffset: 0, size, span: { offset: 0, end: size, innerOffset: 0 } }] : [];
  return {
    name: asByteString(name), type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size: 0, mtimeSec: 100, mtimeNsec: 0,
    devMajor: 0, devMinor: 0, xattrs: new Map(), chunks, ...extra,
  };
}

function code(f: () => unknown): string {
  try {
    f();
  } catch (x) {
    expect(x).toBeInstanceOf(FormatError);
    return (x as FormatError).code;
  }
  return 'ok';
}

const build = (raw: RawEntry[], opts: BuildOptions = PLAIN) => buildLayerIndex(raw, META, opts);

describe('overlay view', () => {
  it('whiteouts become 0:0 char devices with the whiteout owner and mtime; a real entry wins', () => {
    const ix = build([
      e('d/', 'dir'),
      e('d/.wh.gone', 'reg', { uid: 3, gid: 4, mtimeSec: 777 }),
      e('d/.wh.kept'),
      e('d/kept', 'reg', { size: 1 }),
      e('d/.wh.later'), // real entry after the whiteout still wins
      e('d/later', 'symlink', { linkName: asByteString('x') }),
      e('d/.wh..wh.plnk'), // AUFS metadata: skipped
    ]);
    expect(ix.lookup(asByteString('d/gone'))).toMatchObject({ type: 'char', rdevMajor: 0, rdevMinor: 0, mode: 0, uid: 3, gid: 4, mtimeSec: 777, size: 0, nlink: 1 });
    expect(ix.lookup(asByteString('d/kept'))?.type).toBe('reg');
    expect(ix.lookup(asByteString('d/later'))?.type).toBe('symlink');
    expect(ix.readdir(ix.lookup(asByteString('d'))!).map(([n]) => n)).toEqual(['gone', 'kept', 'later']);
    expect(ix.lookup(asByteString('d/.wh.gone'))).toBeUndefined();
    expect(ix.lookup(asByteString('d/.wh..wh.plnk'))).toBeUndefined();
    expect(code(() => build([e('d/.wh.')]))).toBe('ENTRY_INVALID');
  });

  it('opaque directories carry trusted.overlay.opaque and user.overlay.opaque = y, wherever the marker is', () => {
    const ix = build([e('o/.wh..wh..opq'), e('o/', 'dir', { mode: 0o700 }), e('o/f')]);
    const o = ix.lookup(asByteString('o'))!;
    expect(o.xattrs.get('trusted.overlay.opaque')?.toString()).toBe('y');
    expect(o.xattrs.get('user.overlay.opaque')?.toString()).toBe('y');
    expect(o.mode).toBe(0o700);
    expect(ix.readdir(o).map(([n]) => n)).toEqual(['f']);
    // An opaque marker at the root makes the root opaque.
    expect(build([e('.wh..wh..opq')]).root.xattrs.get('trusted.overlay.opaque')?.toString()).toBe('y');
  });

  it('hardlinks share one node with nlink = number of names', () => {
    const ix = build([e('a', 'reg', { size: 3 }), e('b', 'hardlink', { linkName: asByteString('a') }), e('./c/d', 'hardlink', { linkName: asByteString('./a') })]);
    const a = ix.lookup(asByteString('a'))!;
    expect(ix.lookup(asByteString('b'))?.ino).toBe(a.ino);
    expect(ix.lookup(asByteString('c/d'))?.ino).toBe(a.ino);
    expect(a.nlink).toBe(3);
    expect(code(() => build([e('b', 'hardlink', { linkName: asByteString('missing') })]))).toBe('ENTRY_LINK_INVALID');
    expect(code(() => build([e('d/', 'dir'), e('b', 'hardlink', { linkName: asByteString('d') })]))).toBe('ENTRY_LINK_INVALID');
    expect(code(() => build([e('b', 'hardlink', { linkName: asByteString('b') })]))).toBe('ENTRY_LINK_INVALID');
  });

  it('implied parents are 0755 root:root mtime 0; directory nlink counts subdirectories', () => {
    const ix = build([e('x/y/z/file', 'reg', { uid: 9, gid: 9 })]);
    expect(ix.lookup(asByteString('x'))).toMatchObject({ type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeSec: 0, nlink: 3 });
    expect(ix.lookup(asByteString('x/y/z'))).toMatchObject({ type: 'dir', nlink: 2 });
    expect(ix.root.nlink).toBe(3);
    expect(ix.uids).toEqual([0, 9]);
    expect(code(() => build([e('f'), e('f/g')]))).toBe('ENTRY_INVALID'); // parent is not a directory
  });

  it('duplicates are refused in every format, as podman unpack refuses them (file, dir or mixed; ./a = a)', () => {
    for (const opts of [TOC, PLAIN]) {
      expect(code(() => build([e('a'), e('a')], opts))).toBe('ENTRY_DUPLICATE');
      expect(code(() => build([e('d/', 'dir'), e('d/child'), e('d/', 'dir', { mode: 0o711 })], opts))).toBe('ENTRY_DUPLICATE');
      expect(code(() => build([e('f', 'reg', { size: 1 }), e('f', 'symlink', { linkName: asByteString('t') })], opts))).toBe('ENTRY_DUPLICATE');
      expect(code(() => build([e('g/', 'dir'), e('g/sub'), e('g', 'reg')], opts))).toBe('ENTRY_DUPLICATE');
      expect(code(() => build([e('./x'), e('x')], opts))).toBe('ENTRY_DUPLICATE');
    }
    // not a duplicate: a directory listed after entries inside it supplies the implied dir's metadata
    const ix = build([e('d/child'), e('d/', 'dir', { mode: 0o711, uid: 5 })]);
    expect(ix.lookup(asByteString('d'))).toMatchObject({ mode: 0o711, uid: 5 });
    expect(ix.lookup(asByteString('d/child'))?.type).toBe('reg');
  });

  it('inode numbers are stable across rebuilds of the same entries, root = 1, node(ino)', () => {
    const raw = [e('b/', 'dir'), e('a'), e('b/c', 'reg', { size: 5 }), e('a2', 'hardlink', { linkName: asByteString('a') }), e('.wh.z'), e('q/.wh..wh..opq')];
    const one = build(raw);
    const two = build(raw.map((r) => ({ ...r })));
    const inos = (ix: typeof one) => [...ix.walk()].map(([p, n]) => `${p}:${n.ino}`);
    expect(inos(one)).toEqual(inos(two));
    expect(one.root.ino).toBe(1);
    for (const n of one.allNodes()) expect(one.node(n.ino)).toEqual(n);
    // every name of the walk is a distinct inode but the hardlink's
    const walked = [...one.walk()].map(([, n]) => n.ino);
    expect(new Set(walked).size).toBe(walked.length - 1);
  });

  it('hostile paths are refused', () => {
    for (const bad of ['../x', 'a/../../x', '/etc/passwd', 'a/\0b', 'a/' + 'n'.repeat(256), 'p/'.repeat(2100) + 'f']) {
      expect(code(() => build([e(bad)])), bad).toBe('ENTRY_PATH_UNSAFE');
    }
    expect(normalizeEntryPath(asByteString('./a//b/./c/'))).toBe('a/b/c');
    expect(normalizeEntryPath(asByteString('./'))).toBe('');
    expect(code(() => normalizeEntryPath(asByteString('x'.repeat(10)), { ...DEFAULT_LIMITS, maxPathBytes: 5 }))).toBe('ENTRY_PATH_UNSAFE');
  });

  it('the root entry sets the root attributes; a non-directory root is refused', () => {
    const ix = build([e('./', 'dir', { mode: 0o1777, uid: 1, gid: 2, mtimeSec: 42, xattrs: new Map([['user.r', Buffer.from('1')]]) }), e('f')]);
    expect(ix.root).toMatchObject({ mode: 0o1777, uid: 1, gid: 2, mtimeSec: 42, ino: 1 });
    expect(ix.root.xattrs.get('user.r')?.toString()).toBe('1');
    expect(build([e('f')]).root).toMatchObject({ mode: 0o755, uid: 0, gid: 0, mtimeSec: 0 });
    expect(code(() => build([e('./', 'reg')]))).toBe('ENTRY_INVALID');
  });

  it('eStargz artefacts are hidden only when asked', () => {
    const raw = [e('stargz.index.json'), e('.prefetch.landmark', 'reg', { size: 1 }), e('.no.prefetch.landmark'), e('sub/stargz.index.json')];
    const hidden = build(raw, TOC);
    expect(hidden.lookup(asByteString('stargz.index.json'))).toBeUndefined();
    expect(hidden.lookup(asByteString('.prefetch.landmark'))).toBeUndefined();
    expect(hidden.lookup(asByteString('sub/stargz.index.json'))?.type).toBe('reg');
    expect(build(raw, PLAIN).lookup(asByteString('stargz.index.json'))?.type).toBe('reg');
  });

  it('mode keeps only permission bits; S_IFMT bits from the producer are dropped', () => {
    expect(build([e('f', 'reg', { mode: 0o104755 })]).lookup(asByteString('f'))?.mode).toBe(0o4755);
  });

  it('symlinks are 0777 whatever the header says; a target over 4095 bytes is refused (as podman unpack fails)', () => {
    const ix = build([e('l', 'symlink', { mode: 0o644, linkName: asByteString('t') })]);
    expect(ix.lookup(asByteString('l'))).toMatchObject({ type: 'symlink', mode: 0o777 });
    expect(code(() => build([e('ok', 'symlink', { linkName: asByteString('x'.repeat(4095)) })]))).toBe('ok');
    expect(code(() => build([e('long', 'symlink', { linkName: asByteString('x'.repeat(4096)) })]))).toBe('ENTRY_INVALID');
  });
});
