/**
 * The image the rootless tests pull: the e2e base and features layers (busybox, whiteouts, an
 * opaque dir, hardlinks, a file capability) plus one layer of what a user namespace changes: files
 * and a directory owned by non-root uids/gids, a setuid-root and a setgid binary, and user.* and
 * security.capability xattrs. The setuid/setgid files are a probe printing its effective ids, compiled
 * here with the system's C compiler (busybox drops setuid privileges for most applets, so it cannot
 * show whether the kernel honoured the bit). eStargz (both podmans take it from the store: podman 4 by blob
 * digest, podman 5 by TOC digest). Built with the project's own writers (test/helpers/writers).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildEStargz } from '../helpers/writers/estargz.js';
import type { TarEntry } from '../helpers/writers/tar.js';
import { pushImage } from '../helpers/registry-push.js';
import type { RegistryHandle } from '../helpers/registry.js';
import { baseEntries, ESTARGZ_TOC, ESTARGZ_USIZE, featureEntries, MT_TAR_GZIP, MTIME } from '../e2e/images.js';

/** Paths of the rootless layer (no leading slash) and their owners / modes in the tar. */
export const RL = {
  owned: { path: 'home/app/owned.txt', uid: 1000, gid: 1000, mode: 0o640, content: 'owned by 1000\n' },
  ownedDir: { path: 'home/app', uid: 1000, gid: 1000, mode: 0o750 },
  high: { path: 'srv/high.txt', uid: 54321, gid: 54322, mode: 0o644, content: 'owned by 54321\n' },
  setuid: { path: 'usr/bin/suid-ids', uid: 0, gid: 0, mode: 0o4755 },
  setgid: { path: 'usr/bin/sgid-ids', uid: 0, gid: 50, mode: 0o2755 },
  xattr: { path: 'srv/xattr.txt', name: 'user.lazy-als.test', value: 'rootless xattr value', content: 'has a user xattr\n' },
} as const;

let probe: Buffer | undefined;
/** A static program printing `euid=N egid=N` (cc -static; libc6-dev ships libc.a). */
export function idsProbe(): Buffer {
  if (!probe) {
    const dir = mkdtempSync(join(tmpdir(), 'lazy-als-ops-probe-'));
    try {
      writeFileSync(join(dir, 'ids.c'), '#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf("euid=%d egid=%d\\n", (int)geteuid(), (int)getegid()); return 0; }\n');
      execFileSync('cc', ['-static', '-O2', '-o', join(dir, 'ids'), join(dir, 'ids.c')]);
      probe = readFileSync(join(dir, 'ids'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return probe;
}

export function rootlessEntries(): TarEntry[] {
  const ids = idsProbe();
  const dir = (name: string, mode = 0o755, uid = 0, gid = 0): TarEntry => ({ name: `${name}/`, type: 'dir', mode, uid, gid, mtime: MTIME });
  return [
    dir('home'),
    dir(RL.ownedDir.path, RL.ownedDir.mode, RL.ownedDir.uid, RL.ownedDir.gid),
    { name: RL.owned.path, type: 'reg', mode: RL.owned.mode, uid: RL.owned.uid, gid: RL.owned.gid, mtime: MTIME, data: Buffer.from(RL.owned.content) },
    dir('srv'),
    { name: RL.high.path, type: 'reg', mode: RL.high.mode, uid: RL.high.uid, gid: RL.high.gid, mtime: MTIME, data: Buffer.from(RL.high.content) },
    {
      name: RL.xattr.path,
      type: 'reg',
      mode: 0o644,
      mtime: MTIME,
      data: Buffer.from(RL.xattr.content),
      xattrs: { [RL.xattr.name]: RL.xattr.value },
    },
    dir('usr'),
    dir('usr/bin'),
    { name: RL.setuid.path, type: 'reg', mode: RL.setuid.mode, uid: 0, gid: 0, mtime: MTIME, data: ids },
    { name: RL.setgid.path, type: 'reg', mode: RL.setgid.mode, uid: 0, gid: RL.setgid.gid, mtime: MTIME, data: ids },
  ];
}

export interface RootlessImage {
  readonly ref: string;
  /** Per layer: blob digest (podman 4's key) and TOC digest (podman 5's key). */
  readonly layers: readonly { readonly digest: string; readonly tocDigest: string }[];
}

export async function pushRootlessImage(reg: RegistryHandle, repo = 'ops/rootless', tag = 'estargz'): Promise<RootlessImage> {
  const built = [baseEntries(), featureEntries(), rootlessEntries()].map((e) => buildEStargz(e));
  const pushed = await pushImage(reg, repo, tag, {
    layers: built.map((f) => ({
      bytes: f.blob,
      mediaType: MT_TAR_GZIP,
      diffId: f.diffId,
      annotations: { [ESTARGZ_TOC]: f.tocDigest, [ESTARGZ_USIZE]: String(f.uncompressedSize) },
    })),
    config: { created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] }, os: 'linux', architecture: 'amd64' },
  });
  return { ref: `${reg.host}/${repo}:${tag}`, layers: pushed.layers.map((l, i) => ({ digest: l.digest, tocDigest: built[i]!.tocDigest })) };
}
