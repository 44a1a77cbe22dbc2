/**
 * The smallest runnable image a trust test needs: busybox and a `/msg` file whose content tells
 * whose layer a container got (the legit image's or an attacker's). Shared by the layer
 * substitution tests (era-a-poison, dfs-bound).
 */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type { TarEntry } from '../helpers/writers/tar.js';

export const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** What `/msg` of the legitimate image says. */
export const LEGIT = 'legit base layer';

let busybox: Buffer | undefined;

/** bin/busybox (the host's static one), bin/sh and bin/cat, and `/msg` = `msg`. */
export function messageTree(msg: string): TarEntry[] {
  busybox ??= readFileSync('/bin/busybox');
  return [
    { name: 'bin/', type: 'dir', mode: 0o755 },
    { name: 'bin/busybox', type: 'reg', mode: 0o755, data: busybox },
    { name: 'bin/sh', type: 'symlink', linkName: 'busybox' },
    { name: 'bin/cat', type: 'symlink', linkName: 'busybox' },
    { name: 'msg', type: 'reg', mode: 0o644, data: Buffer.from(msg + '\n') },
  ];
}
