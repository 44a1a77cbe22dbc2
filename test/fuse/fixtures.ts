/** Two small layers shaped like the e2e test image (base + an upper with a whiteout and an opaque dir). */
import { randomBytes } from 'node:crypto';
import { buildStandInLayer, keyOf, type FileSpec } from './helpers/stand-in-provider.js';

export const CAP = Buffer.from('0100000200200000000000000000000000000000', 'hex'); // cap_net_raw+ep, VFS_CAP_REVISION_2
export const BIG = randomBytes(300 * 1024 + 17);
export const KEY1 = keyOf('layer-1');
export const KEY2 = keyOf('layer-2');

export const LOWER: FileSpec[] = [
  { name: './', mode: 0o755 },
  { name: 'etc/', mode: 0o755 },
  { name: 'etc/base.txt', content: 'hello from base layer\n' },
  { name: 'etc/deleted.txt', content: 'must be hidden by the upper whiteout\n' },
  { name: 'opq/', mode: 0o755 },
  { name: 'opq/old.txt', content: 'old\n' },
  { name: 'bin/', mode: 0o755 },
  { name: 'bin/ping', content: 'ELF-ish', mode: 0o4755, uid: 0, gid: 0, xattrs: { 'security.capability': CAP, 'user.note': 'hi', 'user.naïve-名前': 'non-ASCII name' } },
  { name: 'bin/hl', type: 'hardlink', linkName: 'bin/ping' },
  { name: 'bin/sh', type: 'symlink', linkName: '/bin/busybox' },
  { name: 'dev/', mode: 0o755 },
  { name: 'dev/null', type: 'char', mode: 0o666, devMajor: 1, devMinor: 3 },
  { name: 'dev/fifo', type: 'fifo', mode: 0o600 },
  { name: 'big.bin', content: BIG, uid: 1000, gid: 1000 },
];

export const UPPER: FileSpec[] = [
  { name: 'etc/', mode: 0o755 },
  { name: 'etc/.wh.deleted.txt', content: '' },
  { name: 'etc/layer2.txt', content: 'hello from layer 1\n' },
  { name: 'opq/', mode: 0o755 },
  { name: 'opq/.wh..wh..opq', content: '' },
  { name: 'opq/new.txt', content: 'new\n' },
];

export const lowerLayer = (opts = {}) => buildStandInLayer(KEY1, LOWER, { chunkSize: 64 * 1024, ...opts });
export const upperLayer = () => buildStandInLayer(KEY2, UPPER);
