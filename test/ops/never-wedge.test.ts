/**
 * Never wedge the engine (end to end, real podman 5 in the Debian 13 chroot, the real daemon):
 * kill -9 of the store while a container is running and reading lazily. The container's read
 * fails with an error (not a hang, not wrong bytes); then the store is started again the way a
 * supervisor does it (systemd `Restart=on-failure`: the same command on the same state dir and
 * mountpoint, over the dead mount), and every podman command afterwards works: ps, images, and a
 * new `podman run` of the same image that reads the same file, with the right bytes.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPodman, makeTestDir, podmanPrerequisites, spawnCollect, type PodmanHandle } from '../helpers/podman.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { bigFile, CONTENT_SCRIPT, expectedContents, P, parseKeyValues, pushTestImages, sha256, type TestImages } from '../e2e/images.js';
import { mountAt, startStore } from '../e2e/store.js';

let reg: RegistryHandle;
let images: TestImages;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const missing = podmanPrerequisites(5);
  if (missing.length > 0) throw new Error(`e2e prerequisites missing: ${missing.join(', ')}`);
  reg = await startRegistry();
  images = await pushTestImages(reg);
}, 600_000);

afterEach(async () => {
  const errors: unknown[] = [];
  for (const fn of cleanups.splice(0).reverse()) await fn().catch((e: unknown) => errors.push(e));
  if (errors.length) throw new AggregateError(errors, 'cleanup');
});

afterAll(async () => {
  await reg?.stop();
});

async function until(what: string, cond: () => boolean, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('never wedge the engine', () => {
  it('kill -9 while a container reads lazily: the read fails, the container exits; restarted over the dead mount, podman keeps working', async () => {
    const dir = await makeTestDir('wedge');
    cleanups.push(() => spawnCollect(['rm', '-rf', '--one-file-system', '--', dir]).then(() => undefined));
    const store = await startStore({ dir });
    cleanups.push(() => store.stop());
    const pm: PodmanHandle = await createPodman(5, {
      workDir: join(dir, 'p5'),
      als: { dir: store.mountpoint },
      registries: [{ host: reg.host, insecure: true }],
    });
    cleanups.push(() => pm.cleanup());
    const img = images.feat.zstdchunked;
    await pm.run(['pull', '-q', img.ref], { check: true, timeoutMs: 300_000 });

    // The container reads a small file, says so, waits for "go", then reads the 64 MiB file that
    // nobody has read yet (so every byte of it has to come from the store). The shell is busybox,
    // itself served by the store: a page of a program not yet in memory cannot be faulted in from a
    // dead mount, and the program dies with SIGBUS (seen here: exit 135). So busybox is read whole
    // first (its pages stay in the page cache) and only shell builtins run after the crash.
    const sync = join(pm.workDir, 'sync');
    await mkdir(sync, { recursive: true });
    const script = [
      `cat /bin/busybox >/dev/null && IFS= read -r x < /${P.small} && : > /sync/ready`,
      'while [ ! -e /sync/go ]; do :; done',
      `{ while IFS= read -r l; do :; done < /${P.big}; } 2>/sync/err`,
      'echo "rc=$?"',
      'IFS= read -r e < /sync/err; echo "err=$e"',
    ].join('\n');
    const running = pm.run(['run', '--rm', '-v', `${sync}:/sync`, img.ref, 'sh', '-c', script], { timeoutMs: 180_000 });
    await until('the container to start reading', () => existsSync(join(sync, 'ready')));

    // Crash (no unmount, no goodbye), then let the container read.
    await store.kill9();
    await writeFile(join(sync, 'go'), '');
    const r = await running;
    const out = parseKeyValues(r.stdout);
    // The read failed with an error the reader sees (a dead FUSE connection: ENOTCONN/ECONNABORTED,
    // or EIO), and the container ended; podman reports its exit normally.
    expect(r.stdout).toMatch(/^rc=/);
    expect(out['rc']).not.toBe('0');
    expect(out['err']).toMatch(/I\/O error|Transport endpoint is not connected|Software caused connection abort/);
    expect(r.code).toBe(0);

    // What a supervisor does: start the same daemon again, over whatever the crash left.
    await store.restart();
    expect(mountAt(store.mountpoint)?.fstype).toMatch(/^fuse/);
    await pm.run(['ps', '-a'], { check: true });
    await pm.run(['images'], { check: true });
    const again = await pm.run(['run', '--rm', img.ref, 'sh', '-c', CONTENT_SCRIPT], { check: true, timeoutMs: 300_000 });
    expect(parseKeyValues(again.stdout)).toEqual(expectedContents());
    // and the container removal after the crash left nothing behind in podman's view
    const ps = await pm.run(['ps', '-aq'], { check: true });
    expect(ps.stdout.trim()).toBe('');
  });
});
