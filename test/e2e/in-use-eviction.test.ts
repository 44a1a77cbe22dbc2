/**
 * Eviction never removes objects of a layer in use (`use` count > 0; docs/als-contract.md §7; audit M2).
 *
 * Store with `--cache-size 40MiB`; an eStargz layer with a 64 MiB file; podman's `use` created for
 * the layer; the file read whole (the cache passes its limit and gc runs); registry killed; the
 * file's page cache dropped (posix_fadvise DONTNEED) and 4 KiB read at every MiB: every read must
 * succeed with the right bytes, from the cache. Before the fix 28 of 64 failed (EIO).
 */
import { open, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeTestDir, spawnCollect } from '../helpers/podman.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushImage } from '../helpers/registry-push.js';
import { bigFile, buildLayer, P, storePath } from './images.js';
import { startStore, useCount, type Store } from './store.js';

let reg: RegistryHandle;
let dir: string;
let store: Store | undefined;

beforeAll(async () => {
  reg = await startRegistry();
  dir = await makeTestDir('in-use-evict');
}, 120_000);

afterAll(async () => {
  await store?.stop();
  await reg?.stop();
  if (dir) await spawnCollect(['rm', '-rf', '--one-file-system', '--', dir]);
});

it('chunks of a layer in use survive eviction and are served offline', async () => {
  const l = buildLayer('big', 'estargz');
  const img = await pushImage(reg, 'evict/a', 'v1', { layers: [{ bytes: l.bytes, mediaType: l.mediaType, annotations: l.annotations!, diffId: l.diffId }] });
  store = await startStore({ dir, insecureRegistries: [reg.host], extraArgs: ['--cache-size', '40MiB'] });
  const layerDir = storePath(store.mountpoint, `${reg.host}/evict/a:v1`, img.layers[0]!.digest);
  // podman's `use` protocol: creating `use` counts the layer in use (the create itself answers ENOENT)
  await open(`${layerDir}/use`, 'w').then((f) => f.close(), () => undefined);
  expect(useCount(await store.status(), `${reg.host}/evict/a:v1`, img.layers[0]!.digest)).toBe(1);
  const path = `${layerDir}/diff/${P.big}`;
  const big = bigFile();
  const f = await open(path, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    for (let off = 0; off < big.length; off += buf.length) {
      const { bytesRead } = await f.read(buf, 0, buf.length, off);
      expect(buf.subarray(0, bytesRead).equals(big.subarray(off, off + bytesRead))).toBe(true);
    }
    await store.settle();
    const st = (await store.status()) as unknown as { catalog: { cache: { usageBytes: number; limitBytes: number } } };
    // the layer alone is larger than the limit: gc ran, and kept it
    expect(st.catalog.cache.limitBytes).toBe(40 * 1024 * 1024);
    expect(st.catalog.cache.usageBytes).toBeGreaterThan(st.catalog.cache.limitBytes);
    await reg.kill();
    const py = [
      'import os,sys',
      'fd=os.open(sys.argv[1],os.O_RDONLY)',
      'os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)',
      'bad=0',
      'ref=open(sys.argv[2],"rb").read()',
      'for i in range(64):',
      '  try:',
      '    if os.pread(fd,4096,i<<20)!=ref[i<<20:(i<<20)+4096]: bad+=1',
      '  except OSError: bad+=1',
      'print(bad)',
    ].join('\n');
    const refFile = `${dir}/big.ref`;
    await writeFile(refFile, big);
    const r = await spawnCollect(['/usr/bin/python3', '-c', py, path, refFile]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('0');
  } finally {
    await f.close();
  }
}, 300_000);
