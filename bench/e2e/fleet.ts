/**
 * A simulated fleet sharing one upstream fetch (issue 13, item 5): N stores (default 8; separate
 * state dirs and mounts, one podman 4 storage each) cold-start the same eStargz image at once
 * through ONE pull-through cache (docker-registry in proxy mode) in front of the origin, named as
 * the origin's mirror in every node's registries.conf (podman and store alike). Cold start = `podman
 * pull` + `podman run` reading the image's 64 MiB file and a small one.
 *
 * Baseline, measured in the same run: ONE node cold-starting the same image straight from the
 * origin (which honours Range): the blob bytes it needs and its pull+run time. Two fleet runs, each
 * through a fresh proxy:
 *   - cold: all N nodes at once on an empty proxy;
 *   - warmed: one node first (the first node of a rollout), then the N at once.
 * Figures: origin blob bytes ÷ bytes one node needs (goal ≈ 1.0, not N) and the slowest node's
 * pull+run ÷ the single node's (goal ≤ 1.2), from the registries' access logs and wall clocks.
 * All nodes share this VM's 2 vCPUs, so the time ratio also measures N daemons and N podmans
 * competing for them. docker-registry's proxy answers a Range request for a blob it has not stored
 * yet with the whole blob, streamed from the origin once per concurrent request; once stored it
 * serves ranges itself (that is what the warmed run shows).
 * Writes bench/results/fleet.md (and RESULT lines for bench/run.mjs).
 *
 *   npx vite-node bench/e2e/fleet.ts      (root, /dev/fuse; BENCH_FLEET_NODES=N)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLayer, CONTENT, P, REPO } from '../../test/e2e/images.js';
import { LogCursor, totalBlobBytes } from '../../test/e2e/registry-log.js';
import { startStore, type Store } from '../../test/e2e/store.js';
import { createPodman, makeTestDir, spawnCollect, type PodmanHandle } from '../../test/helpers/podman.js';
import { pushImage } from '../../test/helpers/registry-push.js';
import { startRegistry, type RegistryHandle } from '../../test/helpers/registry.js';
import { log, report, runMain } from './report.js';

const NODES = Number(process.env['BENCH_FLEET_NODES'] ?? 8);
const RUN_SCRIPT = `cat /${P.big} > /dev/null && cat /${P.small}`;

interface Node {
  readonly store: Store;
  readonly podman: PodmanHandle;
  readonly dir: string;
}

/** docker-registry's proxy stores a blob in the background after answering: wait until it stops writing. */
async function waitMirrorSettled(mirror: RegistryHandle): Promise<void> {
  let last = -1;
  for (let i = 0; i < 600; i++) {
    const r = await spawnCollect(['du', '-sb', mirror.dir]);
    const n = Number(r.stdout.split('\t')[0]);
    if (n === last) return;
    last = n;
    await new Promise((res) => setTimeout(res, 1000));
  }
}

async function startNode(origin: RegistryHandle, mirror: RegistryHandle | undefined, name: string): Promise<Node> {
  const dir = await makeTestDir(name);
  const mirrorToml = mirror ? `[[registry.mirror]]\nlocation = ${JSON.stringify(mirror.host)}\ninsecure = true\n` : '';
  const conf = join(dir, 'fleet-registries.conf');
  await writeFile(conf, `[[registry]]\nlocation = ${JSON.stringify(origin.host)}\ninsecure = true\n${mirrorToml}`);
  const store = await startStore({ dir, extraArgs: ['--registries-conf', conf] });
  const podman = await createPodman(4, {
    workDir: join(dir, 'p'),
    als: { dir: store.mountpoint },
    registries: [{ host: origin.host, insecure: true }],
    ...(mirror ? { registriesConfExtra: mirrorToml } : {}),
  });
  return { store, podman, dir };
}

async function stopNode(n: Node): Promise<void> {
  await n.podman.cleanup();
  await n.store.stop();
  await spawnCollect(['rm', '-rf', '--one-file-system', '--', n.dir]);
}

/** pull + run on one node, ms. */
async function coldStart(n: Node, ref: string): Promise<number> {
  const t0 = performance.now();
  await n.podman.run(['pull', '-q', ref], { check: true, timeoutMs: 900_000 });
  const r = await n.podman.run(['run', '--rm', ref, 'sh', '-c', RUN_SCRIPT], { check: true, timeoutMs: 900_000 });
  const ms = performance.now() - t0;
  if (r.stdout !== CONTENT.small) throw new Error(`unexpected output from ${n.dir}: ${JSON.stringify(r.stdout)}`);
  return ms;
}

async function main(): Promise<void> {
  const origin = await startRegistry();
  const layers = (['base', 'features', 'big'] as const).map((n) => buildLayer(n, 'estargz'));
  await pushImage(origin, REPO, 'fleet', {
    layers: layers.map((l) => ({ bytes: l.bytes, mediaType: l.mediaType, diffId: l.diffId, ...(l.annotations ? { annotations: l.annotations } : {}) })),
    config: { created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] }, os: 'linux', architecture: 'amd64' },
  });
  const ref = `${origin.host}/${REPO}:fleet`;
  const imageBytes = layers.reduce((a, l) => a + l.bytes.length, 0);
  const mirrors: RegistryHandle[] = [];
  const nodes: Node[] = [];
  try {
    // --- baseline: one node straight from the origin (a registry that honours Range) ---
    const solo = await startNode(origin, undefined, 'fleet-solo');
    nodes.push(solo);
    const soloOrigin = new LogCursor(origin.logPath);
    const soloMs = await coldStart(solo, ref);
    const nodeNeeds = totalBlobBytes(soloOrigin.since());
    log(`single node from the origin: ${soloMs.toFixed(0)} ms, needs ${nodeNeeds} B of blobs (image ${imageBytes} B)`);
    await stopNode(solo);
    nodes.length = 0;

    /** N nodes cold-start at once through `mirror`; origin blob bytes from `since` on, node times. */
    const fleet = async (mirror: RegistryHandle, tag: string): Promise<{ times: number[]; servedByMirror: number }> => {
      for (let i = 0; i < NODES; i++) nodes.push(await startNode(origin, mirror, `fleet-${tag}${i}`));
      const mirrorLog = new LogCursor(mirror.logPath);
      const times = await Promise.all(nodes.map((n) => coldStart(n, ref)));
      const servedByMirror = totalBlobBytes(mirrorLog.since());
      for (const n of nodes.splice(0)) await stopNode(n);
      return { times, servedByMirror };
    };

    // --- the fleet, cold: one fresh mirror, all N nodes at once ---
    const coldMirror = await startRegistry({ proxyOf: origin.url });
    mirrors.push(coldMirror);
    let originLog = new LogCursor(origin.logPath);
    const cold = await fleet(coldMirror, 'c');
    const coldOrigin = totalBlobBytes(originLog.since());
    log(`cold fleet of ${NODES}: ${cold.times.map((t) => t.toFixed(0)).join(', ')} ms; origin served ${coldOrigin} B, the mirror served the nodes ${cold.servedByMirror} B`);

    // --- the fleet after one node warmed a fresh mirror (the first node of a rollout) ---
    const warmMirror = await startRegistry({ proxyOf: origin.url });
    mirrors.push(warmMirror);
    originLog = new LogCursor(origin.logPath);
    const first = await startNode(origin, warmMirror, 'fleet-first');
    nodes.push(first);
    const firstMs = await coldStart(first, ref);
    await waitMirrorSettled(warmMirror);
    await stopNode(first);
    nodes.length = 0;
    const warm = await fleet(warmMirror, 'w');
    const warmOrigin = totalBlobBytes(originLog.since());
    log(`first node ${firstMs.toFixed(0)} ms, then fleet of ${NODES}: ${warm.times.map((t) => t.toFixed(0)).join(', ')} ms; origin served ${warmOrigin} B in all`);

    const rows: [string, number, number, string][] = [];
    const fig = (name: string, value: number, baseline: number, unit: string): void => {
      rows.push([name, value, baseline, unit]);
      report({ group: g, name, value, baseline, unit });
    };
    const g = `fleet: ${NODES} stores cold-start one eStargz image (64 MiB file read) through one proxy-mode docker-registry`;
    const slowest = (t: number[]): number => Math.max(...t);
    fig(`all ${NODES} at once on a cold mirror: origin bytes ÷ bytes one node needs (goal ≈ 1.0, not ${NODES})`, coldOrigin, nodeNeeds, 'B');
    fig(`all ${NODES} at once on a cold mirror: slowest node's pull+run ÷ a single node's (goal ≤ 1.2)`, slowest(cold.times), soloMs, 'ms');
    fig(`one node first, then ${NODES} at once: origin bytes ÷ bytes one node needs`, warmOrigin, nodeNeeds, 'B');
    fig(`one node first, then ${NODES} at once: slowest node's pull+run ÷ a single node's`, slowest(warm.times), soloMs, 'ms');
    fig(`all ${NODES} at once on a cold mirror: slowest node's pull+run ÷ ${NODES} × a single node's (≈ 1: the shared CPUs, not the mirror, set the pace)`, slowest(cold.times), NODES * soloMs, 'ms');
    fig('the first node through a cold mirror: pull+run ÷ a single node\'s from the origin', firstMs, soloMs, 'ms');
    fig(`bytes the cold mirror served the fleet ÷ ${NODES} × bytes one node needs`, cold.servedByMirror, NODES * nodeNeeds, 'B');
    const times = cold.times;
    const md = [
      `# Fleet benchmark (bench/e2e/fleet.ts)`,
      '',
      `${new Date().toISOString()}, ${cpus().length} vCPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the end.`,
      `${NODES} stores + ${NODES} podman 4 storages cold-start \`${ref.replace(origin.host, '<origin>')}\` (eStargz, ${imageBytes} B of layers) at once through one docker-registry in proxy mode (a fresh one cold, and a fresh one warmed by one node first); baseline: one node straight from the origin, same run.`,
      `Single node straight from the origin: ${soloMs.toFixed(0)} ms, ${nodeNeeds} B of blobs. Cold fleet node times (ms): ${times.map((t) => t.toFixed(0)).join(', ')}; after one node warmed the mirror (${firstMs.toFixed(0)} ms): ${warm.times.map((t) => t.toFixed(0)).join(', ')}.`,
      '',
      '| figure | value | baseline | ratio |',
      '|---|---|---|---|',
      ...rows.map(([n, v, b, u]) => `| ${n} | ${Math.round(v)} ${u} | ${Math.round(b)} ${u} | ${(v / b).toFixed(2)} |`),
      '',
    ].join('\n');
    const out = join(fileURLToPath(new URL('../results', import.meta.url)));
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'fleet.md'), md);
  } finally {
    for (const n of nodes) await stopNode(n).catch((e: unknown) => log(`cleanup ${n.dir}: ${String(e)}`));
    for (const m of mirrors) await m.stop();
    await origin.stop();
  }
}

runMain(main);
