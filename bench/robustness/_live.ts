/**
 * Shared set-up of the live robustness benchmarks (soak, kill -9): a real docker-registry with the
 * integration tests' three-layer image (eStargz, zstd:chunked, plain tar+gzip), the real daemon
 * over a real FUSE mount, and every served file with the bytes it must have (computed from the
 * fixture, never read back from the store).
 */
import { readFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type RegistryHandle } from '../../test/helpers/registry.js';
import { leakedMounts, RealDaemon, writeRegistriesConf } from '../../test/integration/support/daemon.js';
import { L1_FILES, L2_FILES, L3_FILES, pushTestImage, refElem, type TestImage } from '../../test/integration/support/images.js';

export interface ServedFile {
  /** Path under the mount. */
  readonly rel: string;
  readonly want: Buffer;
}

export interface Live {
  readonly reg: RegistryHandle;
  readonly dir: string;
  readonly img: TestImage;
  daemon: RealDaemon;
  /** Every regular file of the three layers, as `<ref>/<key>/diff/<path>` with its expected bytes. */
  readonly files: readonly ServedFile[];
  close(): Promise<void>;
}

export async function startLive(prefix: string, extraArgs: readonly string[] = []): Promise<Live> {
  const reg = await startRegistry();
  const dir = await mkdtemp(join(tmpdir(), prefix));
  let daemon: RealDaemon | undefined;
  let img: TestImage;
  try {
    img = await pushTestImage(reg);
    const conf = await writeRegistriesConf(join(dir, 'registries.conf'), [reg.host]);
    daemon = new RealDaemon({ dir: join(dir, 'd'), registriesConf: conf, extraArgs });
    await daemon.start();
  } catch (e) {
    await daemon?.kill9({ helpers: true }).catch(() => undefined);
    await daemon?.forceUnmount().catch(() => undefined);
    await reg.stop();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const R = refElem(`${reg.host}/${img.repo}:${img.tag}`);
  const files: ServedFile[] = [
    ...Object.entries(L1_FILES).filter(([p]) => p !== 'etc/deleted.txt' && p !== 'opq/old.txt').map(([p, want]) => ({ rel: join(R, img.l1.tocDigest, 'diff', p), want })),
    ...Object.entries(L2_FILES).map(([p, want]) => ({ rel: join(R, img.l2.tocDigest, 'diff', p), want })),
    ...Object.entries(L3_FILES).map(([p, want]) => ({ rel: join(R, img.l3.blobDigest, 'diff', p), want })),
  ];
  const live: Live = {
    reg, dir, img, daemon, files,
    async close() {
      await live.daemon.kill9({ helpers: true }).catch(() => undefined);
      await live.daemon.forceUnmount().catch(() => undefined);
      await reg.stop();
      const leaked = await leakedMounts([dir]);
      await rm(dir, { recursive: true, force: true });
      if (leaked.length) throw new Error(`mounts left behind: ${leaked.join(', ')}`);
    },
  };
  return live;
}

/** Resident set size of a process in bytes (/proc/<pid>/status VmRSS), or 0 once it is gone. */
export async function rssOf(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /VmRSS:\s+(\d+) kB/.exec(s);
  return m ? Number(m[1]) * 1024 : 0;
}
