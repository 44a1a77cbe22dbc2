/**
 * fifos and device nodes for `lazy-als extract`. Node has no mknod(2), so ONE `tar -x` (GNU tar, in
 * every Debian base system) makes all of them from a header-only archive written here: one process
 * instead of one `mknod` per device. They are made under ASCII names (`special/f<k>`, `special/d<k>`,
 * mode 0600, owner root) in the work dir, on the same filesystem as the tree; the caller renames them
 * into place with their exact name bytes and applies owners, modes and times afterwards.
 */
import { tool } from './tool.js';

const BLOCK = 512;

export interface SpecialFile {
  /** Name relative to the work dir (ASCII). */
  readonly name: string;
  readonly type: 'fifo' | 'char' | 'block';
  readonly major: number;
  readonly minor: number;
}

function octal(h: Buffer, off: number, len: number, v: number): void {
  h.write(v.toString(8).padStart(len - 1, '0') + '\0', off, len, 'latin1');
}

/** A ustar header block for `f` (no content). */
export function specialHeader(f: SpecialFile): Buffer {
  const h = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(f.name, 'latin1') > 100) throw new RangeError(`name too long: ${f.name}`);
  h.write(f.name, 0, 100, 'latin1');
  octal(h, 100, 8, 0o600);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, 0);
  octal(h, 136, 12, 0);
  h.write(f.type === 'fifo' ? '6' : f.type === 'char' ? '3' : '4', 156, 1, 'latin1');
  h.write('ustar\x0000', 257, 8, 'latin1');
  octal(h, 329, 8, f.major);
  octal(h, 337, 8, f.minor);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return h;
}

/** Create every file of `files` under `cwd` with one `tar -x`. */
export async function makeSpecial(files: readonly SpecialFile[], cwd: string): Promise<void> {
  if (files.length === 0) return;
  const archive = Buffer.concat([...files.map(specialHeader), Buffer.alloc(2 * BLOCK)]);
  await tool('tar', ['-x', '--numeric-owner', '--no-same-owner', '-f', '-'], cwd, archive);
}
