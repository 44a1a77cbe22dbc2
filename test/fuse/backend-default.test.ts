/**
 * Which FUSE backend serves when none is named: native where its addon is built, else fuse-native
 * with a warn line that says why and what to do. The "not built" case is real: a copy of the
 * compiled daemon (dist/, as `npm run build` makes it) in a directory with no native/build above it.
 */
import { cp, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultBackend } from '../../src/fuse/mount-als.js';
import { nativeAvailable } from '../../src/fuse/native-backend.js';
import { run } from './helpers/mount-fixture.js';

const ROOT = resolve(import.meta.dirname, '../..');
let dir: string | undefined;

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** defaultBackend() as a fresh node process sees it from `distDir`, with $LAZY_ALS_BACKEND unset. */
async function choose(distDir: string): Promise<{ backend: string; log: string }> {
  const script = `
    const { defaultBackend } = await import(${JSON.stringify(join(distDir, 'fuse', 'mount-als.js'))});
    const { createLogger } = await import(${JSON.stringify(join(distDir, 'core', 'log.js'))});
    const lines = [];
    const backend = defaultBackend(createLogger('warn', { write: (l) => lines.push(l) }));
    process.stdout.write(JSON.stringify({ backend, log: lines.join('') }));`;
  const env = { ...process.env };
  delete env['LAZY_ALS_BACKEND'];
  const r = await run(process.execPath, ['--input-type=module', '-e', script], { env });
  if (r.code !== 0) throw new Error(`node failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { backend: string; log: string };
}

describe('the default FUSE backend', () => {
  it('is native where the addon is built, and $LAZY_ALS_BACKEND still picks either', async () => {
    expect(nativeAvailable()).toBe(true); // scripts/setup.sh builds it
    expect(await choose(join(ROOT, 'dist'))).toEqual({ backend: 'native', log: '' });
    const saved = process.env['LAZY_ALS_BACKEND'];
    try {
      process.env['LAZY_ALS_BACKEND'] = 'fuse-native';
      expect(defaultBackend()).toBe('fuse-native');
      process.env['LAZY_ALS_BACKEND'] = 'native';
      expect(defaultBackend()).toBe('native');
    } finally {
      if (saved === undefined) delete process.env['LAZY_ALS_BACKEND'];
      else process.env['LAZY_ALS_BACKEND'] = saved;
    }
  });

  it('falls back to fuse-native with a warn line naming the cause when the addon is not built', async () => {
    dir = await mkdtemp(join(tmpdir(), 'lazy-als-nobuild-'));
    await cp(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
    await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    const { backend, log } = await choose(join(dir, 'dist'));
    expect(backend).toBe('fuse-native');
    const line = JSON.parse(log) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'warn', event: 'fuse.backend_fallback', backend: 'fuse-native' });
    expect(String(line['reason'])).toMatch(/native backend is not built \(Cannot find module .*lazy_als_native\.node.*scripts\/setup\.sh/);
  });
});
