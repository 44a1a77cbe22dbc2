/**
 * Self-test of the real-podman harness (test/helpers/podman.ts, podman-env.sh, rootfs.ts,
 * fixtures-podman.ts). NEEDS root, /dev/fuse, host podman 4 (scripts/setup.sh) and the podman 5
 * chroot (bash test/e2e/setup-chroot.sh). Missing prerequisites skip it locally but FAIL it
 * when CI=true, so CI cannot go green without running it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { lstat, mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanupPodmanFixtures,
  ESTARGZ_TOC_ANNOTATION,
  ESTARGZ_UNCOMPRESSED_SIZE_ANNOTATION,
  podmanFeatureImage,
  podmanFixturesDir,
  podmanGzipLayer,
  podmanZstdChunkedLayer,
  podmanZstdLayer,
  ZSTD_CHUNKED_MANIFEST_POSITION_ANNOTATION,
  ZSTD_CHUNKED_TARSPLIT_POSITION_ANNOTATION,
  ZSTD_CHUNKED_TOC_ANNOTATION,
  type FeatureImageFixture,
  type PodmanLayerFixture,
} from './helpers/fixtures-podman.js';
import {
  createPodman,
  makeTestDir,
  mountsUnder,
  pidsWithMarker,
  podmanPrerequisites,
  spawnCollect,
  type PodmanHandle,
} from './helpers/podman.js';
import { busyboxRootfs, debianRootfs } from './helpers/rootfs.js';
import { ctrRemoteEstargzFeatureImage, estargzPrerequisites } from './helpers/fixtures-estargz.js';

const missing = [...new Set([...podmanPrerequisites(4), ...podmanPrerequisites(5)])];
const inCi = process.env['CI'] === 'true';

if (missing.length > 0 && inCi) {
  describe('podman harness prerequisites', () => {
    it('has root, /dev/fuse, podman 4 and the podman 5 chroot', () => {
      expect.fail(`missing in CI: ${missing.join(', ')} (run scripts/setup.sh --e2e as root)`);
    });
  });
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

async function xattr(path: string, name: string): Promise<string | undefined> {
  const r = await spawnCollect(['getfattr', '--absolute-names', '--only-values', '-e', 'text', '-n', name, path]);
  return r.code === 0 ? r.stdout : undefined;
}

describe.skipIf(missing.length > 0)('real podman harness (root, /dev/fuse)', () => {
  const handles: PodmanHandle[] = [];
  const workDirs: string[] = [];
  const tempDirs: string[] = [];
  let fixturesDir = '';
  let chunked: PodmanLayerFixture;
  let features: FeatureImageFixture;

  const newPodman = async (v: 4 | 5, opts: Omit<Parameters<typeof createPodman>[1], 'workDir'> = {}): Promise<PodmanHandle> => {
    const workDir = await makeTestDir(`st${v}`);
    workDirs.push(workDir);
    const h = await createPodman(v, { workDir, ...opts });
    handles.push(h);
    return h;
  };

  beforeAll(async () => {
    fixturesDir = await podmanFixturesDir();
    const bb = await busyboxRootfs(join(fixturesDir, 'busybox'));
    chunked = await podmanZstdChunkedLayer(bb);
    features = await podmanFeatureImage('zstd:chunked');
  });

  afterAll(async () => {
    for (const h of handles) await h.cleanup();
    await cleanupPodmanFixtures();
    for (const d of tempDirs) await rm(d, { recursive: true, force: true });
    // the harness's own isolation: nothing mounted below any dir it used, no process left
    for (const d of [...workDirs, ...tempDirs, fixturesDir]) {
      expect(await mountsUnder(d)).toEqual([]);
      expect(existsSync(d)).toBe(false);
    }
    for (const d of [...workDirs, fixturesDir]) expect(await pidsWithMarker(d)).toEqual([]);
  });

  it('runs podman 4.x on the host with the instance storage and crun', async () => {
    const p = await newPodman(4);
    const r = await p.run(['info', '--format', '{{.Version.Version}}|{{.Store.GraphRoot}}|{{.Host.OCIRuntime.Name}}'], { check: true });
    const [version, graphRoot, runtime] = r.stdout.trim().split('|');
    expect(version).toMatch(/^4\./);
    expect(graphRoot).toBe(p.graphRoot);
    expect(runtime).toBe('crun');
  });

  it('runs podman 5.x in the chroot with the instance storage', async () => {
    const p = await newPodman(5);
    const r = await p.run(['info', '--format', '{{.Version.Version}}|{{.Store.GraphRoot}}|{{.Host.OCIRuntime.Name}}'], { check: true });
    const [version, graphRoot, runtime] = r.stdout.trim().split('|');
    expect(version).toMatch(/^5\./);
    expect(graphRoot).toBe(p.graphRoot);
    expect(runtime).toBe('crun');
  });

  it('configures the ALS: podman refuses to start when the store dir is missing', async () => {
    for (const v of [4, 5] as const) {
      const alsRoot = await makeTestDir(`als${v}`);
      tempDirs.push(alsRoot);
      const als = join(alsRoot, 'store');
      const p = await newPodman(v, { als: { dir: als } });
      const bad = await p.run(['images']);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain('additionallayerstore');
      await mkdir(als);
      const ok = await p.run(['images']);
      expect(ok.stderr).toBe('');
      expect(ok.code).toBe(0);
      expect(await readFile(p.storageConf, 'utf8')).toContain(`additionallayerstores = ["${als}:ref"]`);
    }
  });

  it('pushes a zstd:chunked layer with its TOC annotations to an oci: layout', async () => {
    const l = chunked.layer;
    expect(l.descriptor.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    expect(l.tocDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(l.descriptor.annotations[ZSTD_CHUNKED_MANIFEST_POSITION_ANNOTATION]).toMatch(/^\d+:\d+:\d+:1$/);
    expect(l.descriptor.annotations[ZSTD_CHUNKED_TARSPLIT_POSITION_ANNOTATION]).toMatch(/^\d+:\d+:\d+$/);
    expect((await stat(l.blobPath)).size).toBe(l.descriptor.size);
    expect(await sha256File(l.blobPath)).toBe(l.descriptor.digest);
    expect(chunked.diffIds).toEqual([l.diffId]);
    // zstd frame magic, and the skippable frame c/storage appends (the TOC lives in the blob)
    const head = (await readFile(l.blobPath)).subarray(0, 4);
    expect(head.toString('hex')).toBe('28b52ffd');
  });

  it("gives podman's own unpacked layer directory", async () => {
    const d = chunked.layer.podmanDiffDir;
    expect(d.startsWith(chunked.podmanGraphRoot)).toBe(true);
    expect((await stat(d)).mode & 0o7777).toBe(0o555);
    const bb = await stat(join(d, 'bin/busybox'));
    expect(bb.isFile() && (bb.mode & 0o777) === 0o755).toBe(true);
    expect((await lstat(join(d, 'bin/sh'))).isSymbolicLink()).toBe(true);
    expect(await readFile(join(d, 'etc/passwd'), 'utf8')).toMatch(/^root:x:0:0:/);
  });

  it('keeps whiteouts, opaque dirs, hardlinks, capabilities and xattrs in the feature image', async () => {
    const P = features.paths;
    const [l0, l1, l2] = features.layers.map((l) => l.podmanDiffDir) as [string, string, string];
    for (const l of features.layers) expect(l.tocDigest).toMatch(/^sha256:/);
    // layer 1: whiteouts are char 0:0, the recreated dir is opaque
    for (const w of [P.deleted, P.deletedDir]) {
      const st = await lstat(join(l1, w));
      expect(st.isCharacterDevice()).toBe(true);
      expect(st.rdev).toBe(0);
    }
    expect(await xattr(join(l1, P.opaqueDir), 'trusted.overlay.opaque')).toBe('y');
    expect(existsSync(join(l1, P.opaqueOld))).toBe(false);
    expect(await readFile(join(l1, P.modified), 'utf8')).toBe('changed\n');
    expect((await stat(join(l1, P.runHardlink))).ino).toBe((await stat(join(l1, P.runHardlinkTarget))).ino);
    // layer 0: what the crafted tar carried survives podman's build, push and pull
    expect((await stat(join(l0, P.hardlink))).ino).toBe((await stat(join(l0, P.hardlinkTarget))).ino);
    expect((await spawnCollect(['getcap', join(l0, P.capability)])).stdout).toContain('cap_net_raw=ep');
    expect(await xattr(join(l0, P.userXattr), 'user.lazy-als')).toBe('hello');
    expect((await stat(join(l0, P.setuid))).mode & 0o7777).toBe(0o4755);
    expect((await stat(join(l0, P.owned))).uid).toBe(1000);
    expect((await stat(join(l0, P.charDevice))).rdev).not.toBe(0);
    expect((await lstat(join(l0, P.fifo))).isFIFO()).toBe(true);
    expect(await readFile(join(l0, P.unicode), 'utf8')).toBe('unicode name\n');
    expect(await readFile(join(l0, P.longPath), 'utf8')).toBe('long path\n');
    expect((await stat(join(l0, P.big))).size).toBe(3 * 1024 * 1024);
    expect(await readdir(l2)).toEqual(['etc']);
  });

  it('makes plain gzip and plain zstd layers without TOC annotations', async () => {
    const bb = join(fixturesDir, 'busybox');
    const gz = await podmanGzipLayer(bb);
    const zs = await podmanZstdLayer(bb);
    expect(gz.layer.descriptor.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(zs.layer.descriptor.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    for (const f of [gz, zs]) {
      expect(f.layer.tocDigest).toBeUndefined();
      expect(f.layer.descriptor.annotations[ZSTD_CHUNKED_TOC_ANNOTATION]).toBeUndefined();
      expect(await sha256File(f.layer.blobPath)).toBe(f.layer.descriptor.digest);
      // same build, other compression: same uncompressed tar
      expect(f.layer.diffId).toBe(chunked.layer.diffId);
      expect(existsSync(join(f.layer.podmanDiffDir, 'bin/busybox'))).toBe(true);
    }
    expect(gz.layer.descriptor.digest).not.toBe(chunked.layer.descriptor.digest);
  });

  it('runs containers from the fixtures with podman 4 and podman 5, leaving no host mounts', async () => {
    for (const v of [4, 5] as const) {
      const p = await newPodman(v, { binds: [features.ociDir] });
      const pulled = await p.run(['pull', '-q', features.ociRef], { check: true });
      const id = pulled.stdout.trim().split('\n').pop() ?? '';
      const r = await p.run(['run', '--rm', id, 'sh', '-c', 'cat /etc/base.txt /d/new.txt /etc/layer2.txt; ls /d; test -e /etc/deleted.txt || echo no-deleted'], {
        check: true,
      });
      expect(r.stdout).toBe('changed\nnew\nhello from layer 2\nnew.txt\nno-deleted\n');
      // podman's overlay mounts for the container lived in the throw-away namespace only
      expect(await mountsUnder(p.workDir)).toEqual([]);
      expect(await mountsUnder(fixturesDir)).toEqual([]);
    }
  });

  it('cleanup() stops a detached container and its conmon, and no mount ever reaches the host', async () => {
    for (const v of [4, 5] as const) {
      const p = await createPodman(v, { workDir: await makeTestDir(`dt${v}`), binds: [features.ociDir] });
      workDirs.push(p.workDir);
      try {
        const id = (await p.run(['pull', '-q', features.ociRef], { check: true })).stdout.trim().split('\n').pop() ?? '';
        await p.run(['run', '-d', '--name', 'sleeper', id, 'sleep', '600'], { check: true });
        const ps = await p.run(['ps', '--format', '{{.Names}} {{.Status}}'], { check: true });
        expect(ps.stdout).toMatch(/^sleeper Up/);
        expect(await p.processes()).not.toEqual([]); // conmon carries the marker
        expect(await mountsUnder(p.workDir)).toEqual([]);
      } finally {
        await p.cleanup();
      }
      expect(await p.processes()).toEqual([]);
      expect(existsSync(p.workDir)).toBe(false);
    }
  });

  it('converts the feature image to eStargz with ctr-remote (containerd), TOC annotations and all', async () => {
    expect(estargzPrerequisites()).toEqual([]); // scripts/setup.sh installs containerd + stargz-snapshotter
    const e = await ctrRemoteEstargzFeatureImage();
    expect(e.compression).toBe('estargz');
    expect(e.layers).toHaveLength(3);
    for (const l of e.layers) {
      expect(l.descriptor.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
      expect(l.descriptor.annotations[ESTARGZ_TOC_ANNOTATION]).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(l.tocDigest).toBe(l.descriptor.annotations[ESTARGZ_TOC_ANNOTATION]);
      expect(Number(l.descriptor.annotations[ESTARGZ_UNCOMPRESSED_SIZE_ANNOTATION])).toBeGreaterThan(0);
      expect(await sha256File(l.blobPath)).toBe(l.descriptor.digest);
    }
    // eStargz appends TOC entries to each tar: new diff_ids, same files
    expect(e.diffIds[0]).not.toBe(features.diffIds[0]);
    const P = e.paths;
    const [l0, l1] = e.layers.map((l) => l.podmanDiffDir) as [string, string];
    expect(await readFile(join(l0, P.base), 'utf8')).toBe('hello from base layer\n');
    expect((await spawnCollect(['getcap', join(l0, P.capability)])).stdout).toContain('cap_net_raw=ep');
    expect((await lstat(join(l1, P.deleted))).isCharacterDevice()).toBe(true);
    expect(await xattr(join(l1, P.opaqueDir), 'trusted.overlay.opaque')).toBe('y');
    // A non-lazy pull unpacks the tar as it is: podman's reference diff KEEPS the eStargz
    // bookkeeping entries (the TOC file and the prefetch landmark), in every layer
    for (const l of e.layers) {
      expect(existsSync(join(l.podmanDiffDir, 'stargz.index.json'))).toBe(true);
      const landmarks = ['.prefetch.landmark', '.no.prefetch.landmark'].filter((n) => existsSync(join(l.podmanDiffDir, n)));
      expect(landmarks).toHaveLength(1);
    }
  });

  it('builds a zstd:chunked fixture from the debootstrap bookworm rootfs', async () => {
    const rootfs = await debianRootfs();
    const f = await podmanZstdChunkedLayer(rootfs);
    expect(f.layer.tocDigest).toMatch(/^sha256:/);
    expect(f.layer.descriptor.size).toBeGreaterThan(10 * 1024 * 1024);
    const d = f.layer.podmanDiffDir;
    expect((await stat(join(d, 'usr/bin/passwd'))).mode & 0o4000).toBe(0o4000);
    expect(await readFile(join(d, 'etc/debian_version'), 'utf8')).toMatch(/^12\./);
    process.stderr.write(`debian zstd:chunked fixture: ${JSON.stringify(f.timings)} size ${f.layer.descriptor.size}\n`);
  }, 600_000);
});
