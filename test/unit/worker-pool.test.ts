/**
 * The worker pool the chunk decoder and the object writer share. Workers run compiled code only, so
 * the worker module here is a small .mjs written to a temp dir that imports serveWorker from dist/.
 * Checked: replies come back to the request that asked (out of order too), a handler that throws
 * rejects only its own request, a worker that dies rejects what it had in flight and is replaced on
 * the next pick, and load counts go back to zero.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt } from '../e2e/store.js';

type PoolMod = typeof import('../../src/core/worker-pool.js');
type Req = { op: 'echo'; value: number; delayMs: number } | { op: 'throw' } | { op: 'die' };
let mod: PoolMod;
let dir: string;
let script: URL;

beforeAll(async () => {
  await ensureBuilt();
  const dist = new URL('../../dist/core/worker-pool.js', import.meta.url).href;
  mod = await import(dist);
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-worker-pool-'));
  const file = join(dir, 'worker.mjs');
  await writeFile(
    file,
    `import { serveWorker } from ${JSON.stringify(dist)};
serveWorker('testPool', (req) => {
  if (req.op === 'throw') throw new Error('handler refused');
  if (req.op === 'die') process.exit(7);
  if (req.delayMs === 0) return req.value * 2;
  return new Promise((r) => setTimeout(() => r(req.value * 2), req.delayMs));
});
`,
  );
  script = pathToFileURL(file);
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('WorkerPool', () => {
  it('answers each request with its own reply, sync and async handlers, out of order', async () => {
    const pool = new mod.WorkerPool<Req, number>({ script, flag: 'testPool', size: 2, name: 'test worker' });
    try {
      expect(pool.running).toBe(true);
      const [slot] = pool.lightest(1);
      const slow = pool.send(slot!, { op: 'echo', value: 1, delayMs: 200 });
      const fast = pool.send(slot!, { op: 'echo', value: 2, delayMs: 0 });
      expect(slot!.load).toBe(2);
      const first = await Promise.race([slow.then(() => 'slow'), fast.then(() => 'fast')]);
      expect(first).toBe('fast');
      expect(await Promise.all([slow, fast])).toEqual([2, 4]);
      expect(slot!.load).toBe(0);
      expect(pool.lightest(8)).toHaveLength(2);
    } finally {
      await pool.close();
    }
    expect(pool.running).toBe(false);
  });

  it('a throwing handler rejects only its request; a dying worker rejects its in-flight requests and is replaced', async () => {
    const pool = new mod.WorkerPool<Req, number>({ script, flag: 'testPool', size: 1, name: 'test worker' });
    try {
      const [slot] = pool.lightest(1);
      await expect(pool.send(slot!, { op: 'throw' })).rejects.toThrow('handler refused');
      expect(await pool.send(slot!, { op: 'echo', value: 5, delayMs: 0 })).toBe(10);

      const pending = pool.send(slot!, { op: 'echo', value: 6, delayMs: 5_000 });
      const killer = pool.send(slot!, { op: 'die' });
      await expect(pending).rejects.toThrow('test worker exited with code 7');
      await expect(killer).rejects.toThrow('test worker exited with code 7');
      expect(pool.threads).toBe(0);

      const [fresh] = pool.lightest(1);
      expect(fresh).not.toBe(slot);
      expect(pool.threads).toBe(1);
      expect(await pool.send(fresh!, { op: 'echo', value: 21, delayMs: 0 })).toBe(42);
    } finally {
      await pool.close();
    }
  });

  it('runs no workers from sources (a .ts module) or with size 0', () => {
    expect(mod.WorkerPool.canRun(new URL('file:///x/worker-pool.ts'))).toBe(false);
    const none = new mod.WorkerPool<Req, number>({ script, flag: 'testPool', size: 0, name: 'test worker' });
    expect(none.running).toBe(false);
    expect(none.threads).toBe(0);
  });
});
