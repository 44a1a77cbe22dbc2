/**
 * The set-up the ops tests share: a real docker-registry with the integration test image pushed, a
 * temp dir, and the daemon a test starts (registered with `use`). Hooks are registered by calling
 * opsRig at the top of a test file; afterAll stops the daemon, unmounts what it left, stops the
 * registry, checks that no mount under the dir leaked and removes the dir.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { leakedMounts, type RealDaemon } from '../integration/support/daemon.js';
import { pushTestImage, type TestImage } from '../integration/support/images.js';
import { type RegistryHandle, type RegistryOptions, startRegistry } from './registry.js';

export interface OpsRig {
  /** Set in beforeAll: read them inside tests and hooks, not at module load. */
  readonly reg: RegistryHandle;
  readonly dir: string;
  readonly img: TestImage;
  /** Register the daemon the test runs now (the one afterAll stops); returns it. */
  use(d: RealDaemon): RealDaemon;
}

export function opsRig(name: string, registry: RegistryOptions = {}): OpsRig {
  const state: { reg?: RegistryHandle; dir?: string; img?: TestImage; daemon?: RealDaemon } = {};
  beforeAll(async () => {
    state.reg = await startRegistry(registry);
    state.dir = await mkdtemp(join(tmpdir(), `lazy-als-ops-${name}-`));
    state.img = await pushTestImage(state.reg);
  });
  afterAll(async () => {
    if (state.daemon) {
      await state.daemon.stop().catch(() => undefined);
      await state.daemon.forceUnmount();
    }
    await state.reg?.stop();
    if (state.dir) {
      expect(await leakedMounts([state.dir])).toEqual([]);
      await rm(state.dir, { recursive: true, force: true });
    }
  });
  const set = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`ops rig: ${what} is set in beforeAll`);
    return v;
  };
  return {
    get reg() {
      return set(state.reg, 'reg');
    },
    get dir() {
      return set(state.dir, 'dir');
    },
    get img() {
      return set(state.img, 'img');
    },
    use(d) {
      state.daemon = d;
      return d;
    },
  };
}
