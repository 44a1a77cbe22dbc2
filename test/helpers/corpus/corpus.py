#!/usr/bin/python3
"""Hostile-but-legal layer corpus for the fidelity tests (test/e2e/fidelity-corpus.test.ts).

Independent of lazy-als: only the Python standard library. Three jobs:

  corpus.py tree DIR [--wh]       create the odd tree on disk (for GNU tar and buildah/Go to write)
  corpus.py tar pax|gnu TOP OUT   write the same tree with Python's tarfile, entries under TOP/
  corpus.py whiteouts OUT         the whiteout layer (Python tarfile, PAX): a whiteout for every
                                  name length 1..255 (targets made by `tar pax` under TOP/wh), odd
                                  whiteout targets, a directory whiteout, an opaque-dir marker
 corpus.py sparse DIR            sparse files only (holes first, last, everywhere; all hole), for
                                  GNU tar --sparse
  corpus.py list ROOT             JSON listing of a tree, one object per entry (see list_tree)

Names, link targets and xattr names/values are bytes everywhere (hex in JSON).
"""
import errno
import hashlib
import io
import json
import os
import stat
import sys
import tarfile

T0 = 1704067200  # 2024-01-01T00:00:00Z, the default mtime


def vfs_cap_v2(caps, effective=True):
    lo = 0
    for c in caps:
        lo |= 1 << c
    return (0x02000000 | (1 if effective else 0)).to_bytes(4, 'little') + lo.to_bytes(4, 'little') + bytes(12)


def pseudo(n, seed):
    out = bytearray()
    h = hashlib.sha256(seed.encode()).digest()
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:n])


def wh_name(n):
    """The whiteout target of length n (distinct for every n)."""
    return (b'0123456789abcdefghijklmnopqrstuvwxyz' * 8)[:n]


# ---- the spec: (kind, path bytes, attrs) in creation order (parents first) ----
def spec():
    E = []

    def d(p, mode=0o755, **kw):
        E.append(dict(kind='dir', path=p, mode=mode, **kw))

    def f(p, data=b'', mode=0o644, **kw):
        E.append(dict(kind='reg', path=p, data=data, mode=mode, **kw))

    def sym(p, target, **kw):
        E.append(dict(kind='symlink', path=p, target=target, mode=0o777, **kw))

    def hard(p, target):
        E.append(dict(kind='hardlink', path=p, target=target))

    def dev(p, kind, major, minor, mode=0o644, **kw):
        E.append(dict(kind=kind, path=p, major=major, minor=minor, mode=mode, **kw))

    d(b'names')
    odd_names = [
        b'latin1-\xe9t\xe9',  # not UTF-8
        b'\xff\xfe\xfd',  # not UTF-8, no ASCII at all
        b'n' * 255,  # exactly 255 bytes
        ('\u00e9' * 127 + 'x').encode(),  # 2-byte UTF-8 up to the 255-byte limit
        ('\u30a2' * 85).encode(),  # 3-byte UTF-8, 255 bytes
        ('\U0001F642' * 63 + 'xyz').encode(),  # 4-byte UTF-8, 255 bytes
        b'\xe9' * 255,  # not UTF-8 and 255 bytes
        b'ctl-\x01\x02\x1b[0m\x7f',
        b'tab\there',
        b'nl\nhere',
        b'cr\rhere',
        'caf\u00e9'.encode(),  # NFC
        'cafe\u0301'.encode(),  # NFD twin
        b' leading-space',
        b'trailing-space ',
        b'back\\slash',
        b'.whatever',  # starts with ".wh" but is no whiteout
        b'.wh',  # likewise
        b'..dots',
        b'-dash',
    ]
    for i, n in enumerate(odd_names):
        f(b'names/' + n, b'name %d\n' % i)
    # a long path: four 255-byte components
    p = b'names'
    for c in b'abcd':
        p += b'/' + bytes([c]) * 255
        d(p)
    f(p + b'/' + ('\u00e9' * 127 + 'x').encode(), b'deep\n')

    d(b'times')
    for label, mt in [(b'pre1970', -86400), (b'epoch', 0), (b'one', 1), (b'2pow31m1', 2**31 - 1),
                      (b'2pow31', 2**31), (b'2pow32', 2**32), (b'y2100', 4102444800)]:
        f(b'times/' + label, b'%d\n' % mt, mtime=mt)
    f(b'times/ns', b'ns\n', mtime=1700000000, mtime_ns=123456789)
    f(b'times/ns-pre1970', b'ns\n', mtime=-2, mtime_ns=500000000)
    d(b'times/dir-pre1970', mtime=-86400)
    sym(b'times/sym-y2100', b'y2100', mtime=4102444800)

    d(b'xattrs')
    f(b'xattrs/many', b'xattrs\n', xattrs={
        b'user.empty': b'',
        b'user.binary': bytes(range(256)),
        b'user.big': pseudo(2000, 'xattr'),
        'user.na\u00efve-\u540d\u524d'.encode(): 'v\u00e4lue'.encode(),
        b'user.nul': b'a\x00b\x00',
    })
    f(b'xattrs/cap', b'#!/bin/sh\n', mode=0o755, xattrs={b'security.capability': vfs_cap_v2([10])})
    f(b'xattrs/trusted', b'trusted\n', xattrs={b'trusted.lazy-als-test': b'\x01\x02'})
    d(b'xattrs/dir', xattrs={b'user.on-a-dir': b'yes'})

    d(b'special')
    E.append(dict(kind='fifo', path=b'special/fifo', mode=0o644))
    dev(b'special/null', 'char', 1, 3, mode=0o666)
    dev(b'special/char-big', 'char', 4095, 1048575)
    dev(b'special/block', 'block', 7, 0, mode=0o660)
    f(b'special/empty', b'')
    f(b'special/random', pseudo(96 * 1024, 'random'))
    # sparse: only writers that detect holes (GNU tar --sparse) store these as sparse entries
    E.append(dict(kind='sparse', path=b'special/sparse', size=3 * 1024 * 1024 + 5,
                  extents=[(1024 * 1024, b'data in the middle\n' * 100), (3 * 1024 * 1024, b'tail!')]))
    E.append(dict(kind='sparse', path=b'special/all-hole', size=2 * 1024 * 1024, extents=[]))

    d(b'links')
    f(b'links/a', b'hard-link triple\n', xattrs={b'user.shared': b'by three names'})
    hard(b'links/b', b'links/a')
    hard(b'links/\xe9-not-utf8', b'links/a')
    sym(b'links/dangling', b'does/not/exist')
    sym(b'links/absolute', b'/etc/passwd')
    sym(b'links/dotdot', b'..')
    sym(b'links/up3', b'../../..')
    sym(b'links/long', b'x/' * 500 + b'end')
    sym(b'links/very-long', b'y' * 200 + (b'/' + b'z' * 200) * 19)  # 4000 bytes
    sym(b'links/to-not-utf8', b'\xe9t\xe9')
    sym(b'links/self', b'self')

    d(b'modes')
    for m in (0o4755, 0o2755, 0o6755, 0o7777, 0o0000, 0o0400, 0o1644):
        f(b'modes/f%04o' % m, b'mode\n', mode=m)
    d(b'modes/sticky', mode=0o1777)
    d(b'modes/setgid-dir', mode=0o2775)
    d(b'modes/private', mode=0o700)
    d(b'modes/none', mode=0o000)

    d(b'owners')
    for uid, gid in [(65534, 65534), (1000000, 1000000), (3000000, 3000001), (0, 1000000)]:
        f(b'owners/u%d-g%d' % (uid, gid), b'owner\n', uid=uid, gid=gid)
    sym(b'owners/link-1000000', b'u1000000-g1000000', uid=1000000, gid=1000000)
    d(b'owners/dir-65534', uid=65534, gid=65534)

    d(b'opq', mode=0o755)
    f(b'opq/old', b'hidden by an opaque dir above\n')
    d(b'gone')
    f(b'gone/inside', b'removed with its directory above\n')
    return E


def mtime_of(e):
    return e.get('mtime', T0)


# ---- on-disk tree ----
def wh_targets():
    return [dict(kind='dir', path=b'wh')] + [dict(kind='reg', path=b'wh/' + wh_name(n), data=b'%d\n' % n) for n in range(1, 256)]


def make_tree(root, wh=False):
    root = os.fsencode(root)
    os.makedirs(root, exist_ok=True)
    dirs = []
    for e in spec() + (wh_targets() if wh else []):
        p = os.path.join(root, e['path'])
        k = e['kind']
        if k == 'dir':
            os.mkdir(p)
            dirs.append(e)
        elif k == 'reg':
            with open(p, 'wb') as fh:
                fh.write(e['data'])
        elif k == 'sparse':
            with open(p, 'wb') as fh:
                for off, data in e['extents']:
                    fh.seek(off)
                    fh.write(data)
                fh.truncate(e['size'])
        elif k == 'symlink':
            os.symlink(e['target'], p)
        elif k == 'hardlink':
            os.link(os.path.join(root, e['target']), p)
            continue
        elif k == 'fifo':
            os.mkfifo(p)
        elif k in ('char', 'block'):
            os.mknod(p, (stat.S_IFCHR if k == 'char' else stat.S_IFBLK) | 0o600, os.makedev(e['major'], e['minor']))
        os.lchown(p, e.get('uid', 0), e.get('gid', 0))
        if k != 'symlink':
            os.chmod(p, e.get('mode', 0o644))
        for n, v in e.get('xattrs', {}).items():
            os.setxattr(p, n, v, follow_symlinks=False)
        if k != 'dir':
            ns = mtime_of(e) * 10**9 + e.get('mtime_ns', 0)
            os.utime(p, ns=(ns, ns), follow_symlinks=False)
    for e in reversed(dirs):  # children changed the dirs' mtimes
        ns = mtime_of(e) * 10**9 + e.get('mtime_ns', 0)
        os.utime(os.path.join(root, e['path']), ns=(ns, ns), follow_symlinks=False)
    os.utime(root, ns=(T0 * 10**9, T0 * 10**9))


def make_sparse(root):
    root = os.fsencode(root)
    os.makedirs(root, exist_ok=True)
    files = {
        b'middle': (3 * 2**20 + 5, [(2**20, b'data in the middle\n' * 100), (3 * 2**20, b'tail!')]),
        b'hole-first': (2**20 + 4096, [(2**20, pseudo(4096, 'hole-first'))]),
        b'data-first': (2**20 + 4096, [(0, pseudo(4096, 'data-first'))]),
        b'all-hole': (2 * 2**20, []),
        b'many-extents': (64 * 65536, [(i * 65536, bytes([i + 1]) * 4096) for i in range(64)]),
        b'\xe9-not-utf8-sparse': (2**20, [(512 * 1024, b'x' * 4096)]),
    }
    for name, (size, extents) in files.items():
        p = os.path.join(root, name)
        with open(p, 'wb') as fh:
            for off, data in extents:
                fh.seek(off)
                fh.write(data)
            fh.truncate(size)
        os.utime(p, ns=(T0 * 10**9, T0 * 10**9))
    os.utime(root, ns=(T0 * 10**9, T0 * 10**9))


# ---- Python tarfile ----
def s(b):
    return b.decode('utf-8', 'surrogateescape')


def tar_info(e, top, fmt):
    ti = tarfile.TarInfo(s(top + b'/' + e['path']))
    k = e['kind']
    ti.mode = e.get('mode', 0o644)
    ti.uid = e.get('uid', 0)
    ti.gid = e.get('gid', 0)
    ti.uname = ti.gname = ''
    mt = mtime_of(e)
    ti.mtime = mt
    data = None
    if k == 'dir':
        ti.type = tarfile.DIRTYPE
    elif k == 'reg':
        ti.type = tarfile.REGTYPE
        data = e['data']
    elif k == 'sparse':  # tarfile cannot write sparse entries: the zeros are written out
        ti.type = tarfile.REGTYPE
        buf = bytearray(e['size'])
        for off, chunk in e['extents']:
            buf[off:off + len(chunk)] = chunk
        data = bytes(buf)
    elif k == 'symlink':
        ti.type = tarfile.SYMTYPE
        ti.linkname = s(e['target'])
    elif k == 'hardlink':
        ti.type = tarfile.LNKTYPE
        ti.linkname = s(top + b'/' + e['target'])
        ti.mode = 0o644
    elif k == 'fifo':
        ti.type = tarfile.FIFOTYPE
    elif k in ('char', 'block'):
        ti.type = tarfile.CHRTYPE if k == 'char' else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = e['major'], e['minor']
    if fmt == 'pax':
        if 'mtime_ns' in e:
            ti.mtime = float(mt)  # makes tarfile write a pax mtime record: ours, with every digit
            sign = '-' if mt < 0 else ''
            whole, frac = abs(mt), e['mtime_ns']
            if mt < 0 and frac:  # -2 s + 0.5 s = -1.5 s
                whole, frac = abs(mt + 1), 10**9 - frac
            ti.pax_headers['mtime'] = '%s%d.%09d' % (sign, whole, frac)
        for n, v in e.get('xattrs', {}).items():
            ti.pax_headers['SCHILY.xattr.' + s(n)] = s(v)
    if data is not None:
        ti.size = len(data)
    return ti, data


def write_tar(fmt, top, out):
    top = os.fsencode(top)
    f = tarfile.PAX_FORMAT if fmt == 'pax' else tarfile.GNU_FORMAT
    with tarfile.open(out, 'w', format=f, encoding='utf-8', errors='surrogateescape') as tf:
        ti, _ = tar_info(dict(kind='dir', path=b'', mode=0o755), top, fmt)
        ti.name = s(top)
        tf.addfile(ti)
        for e in spec():
            ti, data = tar_info(e, top, fmt)
            tf.addfile(ti, None if data is None else io.BytesIO(data))
        if fmt == 'pax':  # targets of the whiteout layer: one name of every length
            for e in wh_targets():
                ti, data = tar_info(e, top, fmt)
                tf.addfile(ti, None if data is None else io.BytesIO(data))


def write_whiteouts(top, out):
    """Whiteouts for every target length 1..255 under TOP/wh, odd names under TOP/names, the
    directory TOP/gone, and an opaque TOP/opq holding one new file."""
    top = os.fsencode(top)
    with tarfile.open(out, 'w', format=tarfile.PAX_FORMAT, encoding='utf-8', errors='surrogateescape') as tf:
        def add(path, kind='reg', data=b''):
            ti = tarfile.TarInfo(s(top + b'/' + path if path else top))
            ti.type = tarfile.DIRTYPE if kind == 'dir' else tarfile.REGTYPE
            ti.mode = 0o755 if kind == 'dir' else 0o644
            ti.mtime = T0
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if kind == 'reg' else None)
        add(b'', 'dir')
        add(b'wh', 'dir')
        for n in range(1, 256):
            add(b'wh/.wh.' + wh_name(n))
        add(b'names', 'dir')
        for n in [b'latin1-\xe9t\xe9', b'n' * 255, ('\u00e9' * 127 + 'x').encode(), b'\xe9' * 255, b'nl\nhere', 'cafe\u0301'.encode()]:
            add(b'names/.wh.' + n)
        add(b'.wh.gone')
        add(b'opq', 'dir')
        add(b'opq/.wh..wh..opq')
        add(b'opq/new', data=b'new in the opaque dir\n')


# ---- listing ----
def list_tree(root):
    """One JSON object per entry below root (root itself as path ""): path (hex), type, mode
    (permission bits incl. suid/sgid/sticky), uid, gid, size (reg, symlink), sha256 (reg), link
    (hex target), mtime_ns, nlink, rdev [major, minor] (char, block), xattrs {hex name: hex value}.
    lstat/lgetxattr only: nothing is followed."""
    root = os.fsencode(root)
    out = []

    def entry(rel):
        p = os.path.join(root, rel) if rel else root
        st = os.lstat(p)
        m = st.st_mode
        t = ('dir' if stat.S_ISDIR(m) else 'reg' if stat.S_ISREG(m) else 'symlink' if stat.S_ISLNK(m)
             else 'char' if stat.S_ISCHR(m) else 'block' if stat.S_ISBLK(m) else 'fifo' if stat.S_ISFIFO(m)
             else 'socket')
        o = dict(path=rel.hex(), type=t, mode=stat.S_IMODE(m), uid=st.st_uid, gid=st.st_gid,
                 mtime_ns=st.st_mtime_ns, nlink=st.st_nlink)
        if t in ('reg', 'symlink'):
            o['size'] = st.st_size
        if t == 'reg':
            h = hashlib.sha256()
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                while True:
                    b = os.read(fd, 1 << 20)
                    if not b:
                        break
                    h.update(b)
            finally:
                os.close(fd)
            o['sha256'] = h.hexdigest()
        if t == 'symlink':
            o['link'] = os.readlink(p).hex()
        if t in ('char', 'block'):
            o['rdev'] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        xs = {}
        try:
            names = os.listxattr(p, follow_symlinks=False)
        except OSError:
            names = []
        for n in names:
            nb = os.fsencode(n)
            try:
                xs[nb.hex()] = os.getxattr(p, n, follow_symlinks=False).hex()
            except OSError as ex:
                xs[nb.hex()] = 'error:%s' % ex.strerror
        o['xattrs'] = dict(sorted(xs.items()))
        return o, t

    stack = [b'']
    while stack:
        rel = stack.pop()
        try:
            o, t = entry(rel)
        except OSError as ex:  # listed by readdir but not there (e.g. a name mangled on the way)
            out.append(dict(path=rel.hex(), type='error:%s' % (errno.errorcode.get(ex.errno, ex.errno)), xattrs={}))
            continue
        out.append(o)
        if t == 'dir':
            p = os.path.join(root, rel) if rel else root
            try:
                names = os.listdir(p)
            except OSError as ex:
                out[-1]['type'] = 'error:readdir:%s' % (errno.errorcode.get(ex.errno, ex.errno))
                continue
            for n in sorted(names, reverse=True):
                stack.append(os.path.join(rel, n) if rel else n)
    json.dump(out, sys.stdout, separators=(',', ':'))


def main(argv):
    cmd = argv[1]
    if cmd == 'tree':
        make_tree(argv[2], wh='--wh' in argv[3:])
    elif cmd == 'tar':
        write_tar(argv[2], argv[3], argv[4])
    elif cmd == 'whiteouts':
        write_whiteouts(argv[2], argv[3])
    elif cmd == 'sparse':
        make_sparse(argv[2])
    elif cmd == 'list':
        list_tree(argv[2])
    else:
        raise SystemExit('usage: corpus.py tree DIR | tar pax|gnu TOP OUT | whiteouts TOP OUT | list ROOT')


if __name__ == '__main__':
    main(sys.argv)
