/**
 * Real-world fixtures for the plain-layer reader and the CLI: a directory tree with every entry type
 * a layer can hold, archived by GNU tar itself (an independent writer) and compressed by the real
 * `gzip` and `zstd` tools. Needs root (mknod, chown, setcap); callers skip when not root.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, lchownSync, linkSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const isRoot = process.getuid?.() === 0;

function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const LONG_DIR = 'deep/' + 'd'.repeat(120);
export const UNICODE_NAME = 'файл-ü-名前.txt';

/** Build the source tree at `root` (must not exist). */
export function makeFixtureTree(root: string, opts: { bigFileBytes?: number } = {}): void {
  const p = (rel: string): string => join(root, rel);
  mkdirSync(root);
  mkdirSync(p('dir'), { mode: 0o750 });
  writeFileSync(p('dir/file.txt'), 'hello, layer\n');
  chmodSync(p('dir/file.txt'), 0o640);
  execFileSync('setfattr', ['-n', 'user.test', '-v', 'value-1', p('dir/file.txt')]);
  execFileSync('setfattr', ['-n', 'user.bin', '-v', '0sAAECA/8=', p('dir/file.txt')]);
  writeFileSync(p('dir/big.bin'), randomBytes(opts.bigFileBytes ?? 3 * 1024 * 1024 + 12345));
  writeFileSync(p('dir/exact-1mib.bin'), Buffer.alloc(1024 * 1024, 7));
  writeFileSync(p('dir/empty'), '');
  linkSync(p('dir/file.txt'), p('dir/hard'));
  linkSync(p('dir/file.txt'), p('hard2'));
  symlinkSync('file.txt', p('dir/sym'));
  symlinkSync('/etc/passwd', p('dir/abs-sym'));
  symlinkSync('../' + 'x'.repeat(150), p('dir/long-target-sym'));
  mkdirSync(p(LONG_DIR), { recursive: true });
  writeFileSync(p(`${LONG_DIR}/${'f'.repeat(200)}`), 'long name content\n');
  writeFileSync(p(UNICODE_NAME), 'unicode\n');
  writeFileSync(p('setuid'), '#!/bin/sh\n');
  chmodSync(p('setuid'), 0o4755);
  mkdirSync(p('sticky'));
  chmodSync(p('sticky'), 0o1777);
  writeFileSync(p('owned'), 'owned by 1000:2000\n');
  lchownSync(p('owned'), 1000, 2000);
  writeFileSync(p('bigid'), 'big ids\n');
  lchownSync(p('bigid'), 3_000_000, 3_000_001);
  lchownSync(p('dir/sym'), 1000, 1000);
  execFileSync('mkfifo', ['-m', '0620', p('fifo')]);
  execFileSync('mknod', ['-m', '0640', p('chardev'), 'c', '1', '3']);
  execFileSync('mknod', ['-m', '0600', p('blockdev'), 'b', '7', '200']);
  if (have('setcap')) {
    writeFileSync(p('cap'), '#!/bin/sh\n');
    chmodSync(p('cap'), 0o755);
    execFileSync('setcap', ['cap_net_raw+ep', p('cap')]);
  }
  // OCI whiteouts: a plain file whiteout, one shadowed by a real entry, and an opaque directory.
  writeFileSync(p('dir/.wh.gone'), '');
  writeFileSync(p('dir/.wh.file.txt'), '');
  mkdirSync(p('opq'));
  writeFileSync(p('opq/.wh..wh..opq'), '');
  writeFileSync(p('opq/kept'), 'kept\n');
  // Fixed, fractional mtimes everywhere (children before parents).
  const t = (rel: string, sec: number): void => utimesSync(p(rel), sec, sec);
  for (const [rel, sec] of [
    ['dir/file.txt', 1_700_000_000.25], ['dir/big.bin', 1_600_000_000], ['dir/empty', 1_650_000_000.5],
    [UNICODE_NAME, 1_690_000_000], ['opq', 1_680_000_000], ['dir', 1_710_000_000.75], ['', 1_720_000_000],
  ] as const) {
    t(rel, sec);
  }
}

/** `tar -c` of the tree with GNU tar. format 'pax' (PAX headers) or 'gnu' (L/K long names, base-256). */
export function gnuTar(root: string, out: string, format: 'pax' | 'gnu'): void {
  // GNU format cannot carry xattrs (GNU tar refuses --xattrs with it).
  const x = format === 'pax' ? ['--xattrs', '--xattrs-include=*'] : [];
  execFileSync('tar', [...x, `--format=${format}`, '--sort=name', '-C', root, '-cf', out, '.']);
}

/** Compress with the real tool; returns the new path. */
export function compressFile(file: string, how: 'gzip' | 'zstd'): string {
  if (how === 'gzip') {
    execFileSync('sh', ['-c', 'gzip -c -n "$1" > "$1.gz"', 'sh', file]);
    return file + '.gz';
  }
  execFileSync('zstd', ['-q', '-f', file, '-o', file + '.zst']);
  return file + '.zst';
}
