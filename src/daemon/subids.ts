/**
 * The id mapping of rootless podman's user namespace, read from /etc/subuid and /etc/subgid the way
 * newuidmap(1) reads them (lines `user:start:count`, the user by name or numeric id, every
 * matching line in file order), for the store to show layer ids as podman sees them (fuse/id-map.ts).
 */
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import type { Logger } from '../core/log.js';
import { IDENTITY_IDS, podmanRootlessRanges, rangeIdMap, type IdMap } from '../fuse/id-map.js';
import type { IdMapMode } from './config.js';

export interface SubordinateRange {
  readonly start: number;
  readonly count: number;
}

/** The ranges of `user` (name or uid) in a subuid/subgid file's text. */
export function parseSubordinateIds(text: string, user: { readonly name: string; readonly id: number }): SubordinateRange[] {
  const out: SubordinateRange[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(':');
    if (f.length !== 3 || (f[0] !== user.name && f[0] !== String(user.id))) continue;
    const start = Number(f[1]);
    const count = Number(f[2]);
    if (Number.isSafeInteger(start) && Number.isSafeInteger(count) && start >= 0 && count > 0) out.push({ start, count });
  }
  return out;
}

export interface SubIdFiles {
  readonly subuid: string;
  readonly subgid: string;
}

const SYSTEM_FILES: SubIdFiles = { subuid: '/etc/subuid', subgid: '/etc/subgid' };

async function readOrEmpty(path: string): Promise<string> {
  return readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return '';
    throw e;
  });
}

/** The IdMap a daemon with this mode shows layers through (`auto`: subids unless running as root). */
export async function idMapFor(mode: IdMapMode, logger: Logger, files: SubIdFiles = SYSTEM_FILES): Promise<IdMap> {
  const uid = process.getuid?.() ?? 0;
  if (mode === 'none' || (mode === 'auto' && uid === 0)) return IDENTITY_IDS;
  const me = userInfo();
  const gid = process.getgid?.() ?? me.gid;
  const subuid = parseSubordinateIds(await readOrEmpty(files.subuid), { name: me.username, id: uid });
  const subgid = parseSubordinateIds(await readOrEmpty(files.subgid), { name: me.username, id: uid });
  if (subuid.length === 0 || subgid.length === 0) {
    logger.warn('daemon.no_subordinate_ids', {
      user: me.username,
      subuid: subuid.length,
      subgid: subgid.length,
      hint:
        `only layer id 0 is shown as ${me.username}; files of other owners show as 65534 ` +
        `(add ranges to ${files.subuid} and ${files.subgid}, e.g. usermod --add-subuids)`,
    });
  }
  return rangeIdMap(podmanRootlessRanges(uid, subuid), podmanRootlessRanges(gid, subgid));
}
