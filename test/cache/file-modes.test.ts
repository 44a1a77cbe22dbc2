/**
 * Cached content may come from files other users must not read (a 0600 file of a layer): every
 * file the stores write is 0600 and every directory 0700, whatever the umask and whatever mode a
 * pre-existing directory had (issue 9, row 11). Real files, umask 000, pre-made 0777 directories.
 */
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/core/digest.js';
import { MetadataStore } from '../../src/cache/metadata-store.js';
import { ObjectStore } from '../../src/cache/object-store.js';
import { tempDir } from './support/tmp.js';

let dir: string;
let oldUmask: number;

beforeEach(async () => {
  dir = await tempDir();
  oldUmask = process.umask(0);
});
afterEach(async () => {
  process.umask(oldUmask);
  await rm(dir, { recursive: true, force: true });
});

/** Every path under `root` with its permission bits. */
async function modes(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out[p.slice(root.length + 1)] = ((await stat(p)).mode & 0o777).toString(8);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return out;
}

describe('cache and state file modes', () => {
  it('objects (put and putStream), temp and metadata dirs: files 0600, dirs 0700, pre-existing 0777 dirs included', async () => {
    for (const d of ['objects', 'tmp/objects', 'metadata/refs']) await mkdir(join(dir, d), { recursive: true, mode: 0o777 });
    const store = await ObjectStore.open({ dir: join(dir, 'objects'), tmpDir: join(dir, 'tmp', 'objects') });
    const a = Buffer.from('content of a 0600 file\n');
    await store.put(sha256Of(a), a);
    const b = Buffer.alloc(3 << 20, 7);
    await store.putStream(sha256Of(b), [b.subarray(0, 1 << 20), b.subarray(1 << 20)], b.length);
    await MetadataStore.open({ stateDir: dir });
    const m = await modes(dir);
    expect(Object.keys(m).length).toBeGreaterThan(8);
    for (const [p, mode] of Object.entries(m)) {
      const isDir = (await stat(join(dir, p))).isDirectory();
      // 'tmp' is a parent the stores do not own (made 0777 above, before they ran): only its children are theirs
      if (p === 'tmp') continue;
      expect({ p, mode }).toEqual({ p, mode: isDir ? '700' : '600' });
    }
  });
});
