/**
 * Compare two directory trees the way an overlay lower layer is observed: per path the file type,
 * permission bits (incl. suid/sgid/sticky), uid, gid, size (regular files and symlinks), mtime
 * (whole seconds), symlink target, device numbers, every xattr (trusted.*, security.*, user.*: read
 * with `getfattr -h -d -m -` from Debian's `attr` package, as node has no xattr API), sha256 of
 * regular file content, and hardlink grouping (which paths share an inode). Symlinks are never
 * followed. Used to check `lazy-als extract` against GNU tar, and by the e2e suite against the layer
 * podman unpacked.
 *
 * convertWhiteouts() turns a plain `tar -x` of an OCI layer into overlay form (formats.md §6.2):
 * `.wh.<x>` → character device 0:0 `<x>` (mode 0, the whiteout's owner and mtime) unless a real `<x>`
 * exists; `.wh..wh..opq` → trusted.overlay.opaque=y and user.overlay.opaque=y on its directory.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, rmSync, utimesSync, lchownSync } from 'node:fs';
import { join } from 'node:path';

export interface TreeEntryInfo {
  readonly path: string;
  readonly type: 'dir' | 'reg' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtimeSec: number;
  readonly linkTarget?: string;
  readonly rdev?: readonly [number, number];
  /** name → base64 value */
  readonly xattrs: Readonly<Record<string, string>>;
  readonly sha256?: string;
  /** Sorted paths sharing this inode (non-directories with nlink > 1 inside the tree). */
  readonly links?: readonly string[];
}

export interface SnapshotOptions {
  /** Paths ("" = root, "a/b") to leave out, with everything under them. */
  readonly ignore?: (path: string) => boolean;
  /** xattr names to leave out (e.g. security.selinux added by the host). */
  readonly ignoreXattr?: (name: string) => boolean;
}

interface StatLike {
  isDirectory(): boolean;
  isFile(): boolean;
  isSymbolicLink(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isFIFO(): boolean;
}

function typeOf(st: StatLike): TreeEntryInfo['type'] {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'reg';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** Linux dev_t → (major, minor) (glibc gnu_dev_major/minor). */
export function splitRdev(rdev: bigint): [number, number] {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return [major, minor];
}

/** getfattr's octal escapes in "# file:" lines (\ooo and \\). */
function unescapeGetfattr(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && /^[0-7]{3}$/.test(s.slice(i + 1, i + 4))) {
      bytes.push(parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else if (s[i] === '\\' && s[i + 1] === '\\') {
      bytes.push(0x5c);
      i += 1;
    } else {
      for (const b of Buffer.from(s[i]!, 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** All xattrs under root: absolute path → {name: base64}. */
export function readAllXattrs(root: string): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  let dump: string;
  try {
    dump = execFileSync('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', root], {
      encoding: 'utf8',
      maxBuffer: 1 << 30,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    const o = e as { stdout?: string; status?: number };
    if (o.status === 1 && typeof o.stdout === 'string') dump = o.stdout; // some files without xattr support
    else throw e;
  }
  let cur: Record<string, string> | undefined;
  for (const line of dump.split('\n')) {
    if (line.startsWith('# file: ')) {
      cur = {};
      out.set(unescapeGetfattr(line.slice(8)), cur);
    } else if (cur && line.includes('=')) {
      const eq = line.indexOf('=');
      const v = line.slice(eq + 1);
      // -e base64 prints "0s<base64>"; empty values print as name="" or bare name.
      cur[line.slice(0, eq)] = v.startsWith('0s') ? v.slice(2) : v === '""' ? '' : Buffer.from(v.replace(/^"|"$/g, '')).toString('base64');
    } else if (cur && line !== '' && !line.startsWith('#')) {
      cur[line] = '';
    }
  }
  return out;
}

export function snapshotTree(root: string, opts: SnapshotOptions = {}): Map<string, TreeEntryInfo> {
  const xattrs = readAllXattrs(root);
  const out = new Map<string, TreeEntryInfo>();
  const byIno = new Map<bigint, string[]>();
  const visit = (rel: string): void => {
    if (opts.ignore?.(rel)) return;
    const abs = rel === '' ? root : join(root, rel);
    const st = lstatSync(abs, { bigint: true });
    const type = typeOf(st);
    const xa: Record<string, string> = {};
    for (const [k, v] of Object.entries(xattrs.get(abs) ?? {})) if (!opts.ignoreXattr?.(k)) xa[k] = v;
    const info: TreeEntryInfo = {
      path: rel,
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === 'reg' || type === 'symlink' ? Number(st.size) : 0,
      mtimeSec: Number(st.mtimeMs / 1000n),
      ...(type === 'symlink' ? { linkTarget: readlinkSync(abs) } : {}),
      ...(type === 'char' || type === 'block' ? { rdev: splitRdev(st.rdev) } : {}),
      xattrs: xa,
      ...(type === 'reg' ? { sha256: createHash('sha256').update(readFileSync(abs)).digest('hex') } : {}),
    };
    out.set(rel, info);
    if (type !== 'dir' && st.nlink > 1n) {
      const l = byIno.get(st.ino) ?? [];
      l.push(rel);
      byIno.set(st.ino, l);
    }
    if (type === 'dir') {
      for (const name of readdirSync(abs).sort()) visit(rel === '' ? name : `${rel}/${name}`);
    }
  };
  visit('');
  for (const paths of byIno.values()) {
    if (paths.length < 2) continue;
    const sorted = [...paths].sort();
    for (const p of paths) out.set(p, { ...out.get(p)!, links: sorted });
  }
  return out;
}

/** Human-readable differences between two snapshots (empty = same). */
export function compareTrees(a: Map<string, TreeEntryInfo>, b: Map<string, TreeEntryInfo>, labels: [string, string] = ['a', 'b']): string[] {
  const diffs: string[] = [];
  const fmt = (v: unknown): string => JSON.stringify(v);
  for (const [p, x] of a) {
    const y = b.get(p);
    if (!y) {
      diffs.push(`${fmt(p)}: only in ${labels[0]}`);
      continue;
    }
    for (const k of ['type', 'mode', 'uid', 'gid', 'size', 'mtimeSec', 'linkTarget', 'rdev', 'xattrs', 'sha256', 'links'] as const) {
      const xs = fmt(k === 'xattrs' ? sortKeys(x.xattrs) : x[k]);
      const ys = fmt(k === 'xattrs' ? sortKeys(y.xattrs) : y[k]);
      if (xs !== ys) diffs.push(`${fmt(p)}: ${k} ${labels[0]}=${xs} ${labels[1]}=${ys}`);
    }
  }
  for (const p of b.keys()) if (!a.has(p)) diffs.push(`${fmt(p)}: only in ${labels[1]}`);
  return diffs;
}

function sortKeys(o: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([k1], [k2]) => (k1 < k2 ? -1 : 1)));
}

/** Convert an extracted OCI layer into overlay lower-dir form in place (needs root for mknod/chown). */
export function convertWhiteouts(root: string): void {
  const dirs: string[] = [];
  const walk = (abs: string): void => {
    dirs.push(abs);
    for (const name of readdirSync(abs)) {
      const p = join(abs, name);
      if (lstatSync(p).isDirectory()) walk(p);
    }
  };
  walk(root);
  for (const d of dirs) {
    const dst = lstatSync(d);
    let changed = false;
    for (const name of readdirSync(d)) {
      if (!name.startsWith('.wh.')) continue;
      const p = join(d, name);
      const st = lstatSync(p);
      rmSync(p);
      changed = true;
      if (name === '.wh..wh..opq') {
        execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', d]);
        execFileSync('setfattr', ['-n', 'user.overlay.opaque', '-v', 'y', d]);
      } else if (!name.startsWith('.wh..wh.')) {
        const target = join(d, name.slice(4));
        try {
          lstatSync(target);
          continue; // a real entry of the same layer wins
        } catch {
          /* absent: create the whiteout device */
        }
        execFileSync('mknod', ['-m', '0', target, 'c', '0', '0']);
        lchownSync(target, st.uid, st.gid);
        utimesSync(target, st.atime, st.mtime);
      }
    }
    if (changed) utimesSync(d, dst.atime, dst.mtime);
  }
}
