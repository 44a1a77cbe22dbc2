/**
 * What opening a large layer costs the REAL daemon (issue 9: every resource bounded, the daemon
 * under its memory budget). A layer of ENTRIES ordinary entries (test/helpers/many-entries.ts) in
 * each indexed shape is pushed to a real registry, the daemon (dist/, its own process) resolves it
 * through its FUSE mount, and its peak RSS during the open is read from /proc/<pid>/status VmHWM,
 * reset before each open (clear_refs 5), over its RSS just before.
 *
 * The daemon runs with a configured index heap (max_index_heap_bytes): the open may cost that heap
 * plus what lives outside it — the TOC bytes, the worker's isolate, the finished table, the record —
 * ALLOWANCE in all (measured: +137 MiB for 40k entries). Before index builds ran in a capped worker
 * the same open peaked higher than that bound (+184 MiB in a child process alone: the parse garbage
 * of the main heap, collected late).
 */
import { createHash } from 'node:crypto';
import { readFile, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushImage } from '../helpers/registry-push.js';
import { manyEntries } from '../helpers/many-entries.js';
import { buildEStargz } from '../helpers/writers/estargz.js';
import { ANN_ESTARGZ_TOC, refElem } from '../integration/support/images.js';
import { leakedMounts, RealDaemon, writeRegistriesConf } from '../integration/support/daemon.js';

const MiB = 1024 * 1024;
const ENTRIES = 40_000;
/** The daemon's configured index heap. */
const HEAP = 64 * MiB;
/** What an open may cost beside that heap: TOC bytes, the worker isolate, table, record. */
const ALLOWANCE = 96 * MiB;
const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

let reg: RegistryHandle;
let dir: string;
let daemon: RealDaemon | undefined;
const keys: Record<string, string> = {};
let R: string;

beforeAll(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-open-memory-'));
  const entries = manyEntries(ENTRIES);
  const est = buildEStargz(entries, { minChunkSize: 64 * 1024 });
  await pushImage(reg, 'mem/many', 'v1', {
    layers: [{ bytes: est.blob, diffId: sha(gunzipSync(est.blob)), annotations: { [ANN_ESTARGZ_TOC]: est.tocDigest } }],
  });
  keys['eStargz'] = est.tocDigest;
  R = refElem(`${reg.host}/mem/many:v1`);
  const conf = await writeRegistriesConf(join(dir, 'registries.conf'), [reg.host]);
  daemon = await RealDaemon.start({ dir: join(dir, 'd'), registriesConf: conf, extraArgs: ['--max-index-heap-bytes', String(HEAP)] });
}, 600_000);

afterAll(async () => {
  if (daemon) {
    await daemon.kill9({ helpers: true }).catch(() => undefined);
    await daemon.forceUnmount().catch(() => undefined);
  }
  await reg?.stop();
  if (dir) {
    expect(await leakedMounts([dir])).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  }
});

async function status(pid: number, key: string): Promise<number> {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

describe('opening a large layer in the real daemon', () => {
  // eStargz only: a plain tar+gzip layer of as many entries also stages a piece per file on this
  // thread (40k temp files), which costs more than its index (+191 MiB measured): not yet bounded.
  it.each(['eStargz'])(`%s, ${ENTRIES} entries: peak RSS over the RSS before the open stays within the configured index heap + allowance`, async (kind) => {
    const pid = daemon!.pid!;
    await writeFile(`/proc/${pid}/clear_refs`, '5'); // VmHWM := VmRSS
    const before = await status(pid, 'VmRSS');
    const layer = join(daemon!.mnt, R, keys[kind]!, 'diff');
    // a file of the last directory: the whole index is there
    const st = await stat(join(layer, `usr/share/pkg${Math.floor((ENTRIES - 1) / 500)}`, `file-${String(ENTRIES - 1).padStart(7, '0')}.txt`));
    expect(st.isFile()).toBe(true);
    const peak = (await status(pid, 'VmHWM')) - before;
    console.log(`${kind}: RSS before ${(before / MiB).toFixed(0)} MiB, peak +${(peak / MiB).toFixed(0)} MiB (bound +${(HEAP + ALLOWANCE) / MiB} MiB)`);
    expect(daemon!.running).toBe(true);
    expect(peak).toBeLessThan(HEAP + ALLOWANCE);
  }, 300_000);
});
