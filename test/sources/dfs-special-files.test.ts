/**
 * Issue 9, row 9: a hostile `--dfs` tree (writable by others on a shared filesystem) with a FIFO,
 * a symlink or a symlink loop where a blob, index.json or a repository directory should be: every
 * lookup fails at once with a clear LAYOUT_INVALID error — before the fix, open() of a FIFO blocked
 * a thread-pool worker forever, and after four such lookups every disk read of the daemon waited.
 * `lazy-als inspect FIFO` errors out instead of hanging. Real files, real FIFOs (mkfifo).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run as inspectCmd } from '../../src/cli/commands/inspect.js';
import type { Digest } from '../../src/core/digest.js';
import { blobPath, layoutDir, OciLayoutSource } from '../../src/sources/dfs/oci-layout.js';
import { parseReference } from '../../src/sources/reference.js';

const sha = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;
const root = mkdtempSync(join(tmpdir(), 'lazy-als-dfs-special-'));
const ref = parseReference('dfs.example/team/app:v1');
const dir = layoutDir(root, ref);
const layer = randomBytes(5000);
const layerDigest = sha(layer);

function put(b: Buffer): Digest {
  const d = sha(b);
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(blobPath(dir, d), b);
  return d;
}

function mkfifo(path: string): void {
  rmSync(path, { force: true });
  execFileSync('mkfifo', ['-m', '644', path]);
}

beforeAll(() => {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  put(layer);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(Buffer.from('tar'))] } }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: put(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }],
  }));
  const md = put(manifest);
  writeFileSync(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: md, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
  }));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('special files in a --dfs tree', () => {
  it('a FIFO as a layer blob: a clear error, and eight of them in parallel leave the disk usable', async () => {
    const src = new OciLayoutSource(root);
    const img = await src.resolve(ref);
    expect(img.manifests[0]!.layers.map((l) => l.digest)).toEqual([layerDigest]);
    const ok = await src.openBlob(ref, layerDigest, layer.length);
    expect(await ok.read(0, 16)).toEqual(layer.subarray(0, 16));
    await ok.close?.();

    mkfifo(blobPath(dir, layerDigest));
    const tries = await Promise.allSettled(Array.from({ length: 8 }, () => src.openBlob(ref, layerDigest, layer.length)));
    for (const t of tries) {
      expect(t.status).toBe('rejected');
      expect((t as PromiseRejectedResult).reason).toMatchObject({ code: 'LAYOUT_INVALID', message: expect.stringContaining('FIFO') });
    }
    // the thread pool is free: ordinary file reads still complete
    expect(readFileSync(join(dir, 'oci-layout'), 'utf8')).toContain('imageLayoutVersion');
    expect((await src.resolve(ref)).manifests[0]!.layers.length).toBe(1);
  });

  it('a symlink loop as a blob, index.json as a FIFO, a repository dir that loops: LAYOUT_INVALID each', async () => {
    const src = new OciLayoutSource(root);
    const p = blobPath(dir, layerDigest);
    rmSync(p, { force: true });
    symlinkSync(p, p); // loops onto itself
    await expect(src.openBlob(ref, layerDigest, layer.length)).rejects.toMatchObject({ code: 'LAYOUT_INVALID' });
    unlinkSync(p);

    const index = join(dir, 'index.json');
    const saved = readFileSync(index);
    mkfifo(index);
    await expect(src.resolve(ref)).rejects.toMatchObject({ code: 'LAYOUT_INVALID', message: expect.stringContaining('FIFO') });
    unlinkSync(index);
    writeFileSync(index, saved);

    const loopRef = parseReference('dfs.example/loop/app:v1');
    mkdirSync(join(root, 'dfs.example'), { recursive: true });
    symlinkSync('loop', join(root, 'dfs.example', 'loop'));
    await expect(src.resolve(loopRef)).rejects.toMatchObject({ code: 'LAYOUT_INVALID' });
  });

  it('lazy-als inspect FIFO errors out with a typed error instead of hanging', async () => {
    const fifo = join(root, 'blob.fifo');
    mkfifo(fifo);
    let out = '';
    // the command rejects with the typed error; the CLI's main prints it as one line and exits 1
    await expect(inspectCmd([fifo], { stdout: { write: (s: string) => (out += s) }, stderr: { write: () => undefined } })).rejects.toMatchObject({
      code: 'BLOB_RANGE',
      message: expect.stringMatching(/not a regular file \(a FIFO\)/),
    });
    expect(out).toBe('');
  });
});
