/**
 * `--metrics-address`: the REAL daemon (dist/) over a real FUSE mount and a real docker-registry;
 * lazy reads through the mount, then GET /metrics parsed by the Prometheus project's own Python
 * parser. The figures must follow what happened (bytes read, registry fetches, cache tiers), and
 * the stargz-snapshotter names must be there for existing dashboards.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { opsRig } from '../helpers/ops-rig.js';
import { probe, val } from '../integration/support/commands.js';
import { RealDaemon, writeRegistriesConf } from '../integration/support/daemon.js';
import { L1_FILES, L2_FILES, refElem, sha256hex } from '../integration/support/images.js';
import { parseProm, sum } from './prom-parse.js';

const rig = opsRig('metrics');

async function scrape(address: string): Promise<{ status: number; type: string; text: string }> {
  const r = await fetch(`http://${address}/metrics`);
  return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() };
}

describe('metrics endpoint', () => {
  it('serves Prometheus text that a real parser accepts, with stargz-compatible and lazy-als figures that follow the reads', async () => {
    const { reg, img, dir } = rig;
    const conf = await writeRegistriesConf(join(dir, 'registries.conf'), [reg.host]);
    const daemon = rig.use(await RealDaemon.start({ dir: join(dir, 'd'), registriesConf: conf, extraArgs: ['--metrics-address', '127.0.0.1:0', '--backend', 'fuse-native'] }));
    // (fuse-native: every read reaches JS; the native backend answers cached reads in C, unseen by
    // the read metrics, see docs/metrics.md.)
    const ready = daemon.events().find((e) => e['event'] === 'daemon.ready')!;
    const address = String(ready['metrics']);
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);

    // Before any layer: parses, process metrics present, no layers.
    const empty = await parseProm((await scrape(address)).text);
    expect(sum(empty, 'process_resident_memory_bytes')).toBeGreaterThan(1024 * 1024);
    expect(sum(empty, 'lazy_als_layers_served')).toBe(0);

    const R = refElem(`${reg.host}/${img.repo}:${img.tag}`);
    const B1 = join(daemon.mnt, R, img.l1.tocDigest);
    const B2 = join(daemon.mnt, R, img.l2.tocDigest);
    const files: [string, Buffer][] = [
      [join(B1, 'diff', 'etc', 'passwd'), L1_FILES['etc/passwd']],
      [join(B1, 'diff', 'big', 'cold-a.bin'), L1_FILES['big/cold-a.bin']],
      [join(B2, 'diff', 'z', 'cold.bin'), L2_FILES['z/cold.bin']],
    ];
    const got = (await probe(files.map(([path]) => ({ op: 'read', path })))).map(val);
    files.forEach(([, want], i) => expect(got[i].sha256).toBe(sha256hex(want)));
    await probe([{ op: 'readdir', path: join(B1, 'diff', 'etc') }]);
    await daemon.settle();

    const r = await scrape(address);
    expect(r.status).toBe(200);
    expect(r.type).toContain('text/plain');
    const fams = await parseProm(r.text);
    const byName = new Map(fams.map((f) => [f.name, f]));

    // stargz-snapshotter names and types.
    expect(byName.get('stargz_fs_layer_size_bytes')?.type).toBe('counter');
    expect(byName.get('stargz_fs_layer_fetched_size_bytes')?.type).toBe('counter');
    expect(byName.get('stargz_fs_layer_prefetch_size_bytes')?.type).toBe('counter');
    expect(byName.get('stargz_fs_operation_duration_milliseconds')?.type).toBe('histogram');
    expect(byName.get('stargz_fs_operation_duration_microseconds')?.type).toBe('histogram');
    expect(byName.get('stargz_fs_operation_count')?.type).toBe('counter');
    expect(byName.get('stargz_fs_bytes_served')?.type).toBe('gauge');

    // Per-layer figures: exactly the two layers read, with their sizes; bytes were fetched.
    // (The parser names counter samples `<family>_total`, as OpenMetrics does.)
    const sizes = byName.get('stargz_fs_layer_size_bytes')!.samples;
    expect(Object.fromEntries(sizes.map((s) => [s.labels['digest'], s.value]))).toEqual({
      [img.l1.tocDigest]: img.l1.blob.length,
      [img.l2.tocDigest]: img.l2.blob.length,
    });
    expect(sizes.every((s) => s.labels['mountpoint'] === daemon!.mnt)).toBe(true);
    const fetched = sum(fams, 'stargz_fs_layer_fetched_size_bytes_total', { digest: img.l1.tocDigest });
    expect(fetched).toBeGreaterThanOrEqual(L1_FILES['big/cold-a.bin'].length);
    expect(sum(fams, 'lazy_als_layers_served')).toBe(2);

    // Reads: every byte the probe read was served and counted, on-demand reads counted per layer.
    const served = sum(fams, 'stargz_fs_bytes_served', { operation_type: 'on_demand_bytes_served' });
    expect(served).toBeGreaterThanOrEqual(files.reduce((n, [, b]) => n + b.length, 0));
    expect(sum(fams, 'lazy_als_read_bytes_total', { kind: 'file' })).toBe(served);
    expect(sum(fams, 'stargz_fs_operation_count_total', { operation_type: 'on_demand_read_access_count', layer: img.l1.tocDigest })).toBeGreaterThan(0);
    expect(sum(fams, 'lazy_als_read_duration_seconds_count', { kind: 'file', result: 'ok' })).toBeGreaterThan(0);

    // Registry: fetches happened (TOCs and chunks), bytes received, per blob.
    expect(sum(fams, 'lazy_als_registry_fetch_duration_seconds_count', { result: 'ok' })).toBeGreaterThan(0);
    expect(sum(fams, 'lazy_als_registry_fetched_bytes_total')).toBeGreaterThan(0);
    expect(sum(fams, 'stargz_fs_operation_count_total', { operation_type: 'on_demand_remote_registry_fetch_count', layer: img.l1.blob ? `sha256:${sha256hex(img.l1.blob)}` : '' })).toBeGreaterThan(0);
    // Layer resolution and TOC: two layers found, two TOCs fetched and parsed.
    expect(sum(fams, 'lazy_als_lookup_duration_seconds_count', { result: 'found' })).toBeGreaterThanOrEqual(2);
    expect(sum(fams, 'lazy_als_toc_duration_seconds_count', { how: 'fetch' })).toBe(2);
    expect(sum(fams, 'stargz_fs_operation_duration_milliseconds_count', { operation_type: 'mount' })).toBeGreaterThanOrEqual(2);
    // FUSE ops, including the readdir (stargz's node_readdir in µs).
    expect(sum(fams, 'lazy_als_fuse_op_duration_seconds_count', { op: 'read' })).toBeGreaterThan(0);
    expect(sum(fams, 'stargz_fs_operation_duration_microseconds_count', { operation_type: 'node_readdir' })).toBeGreaterThan(0);
    // Cache: misses fetched, usage grew within the limit.
    expect(sum(fams, 'lazy_als_cache_misses_total')).toBeGreaterThan(0);
    expect(sum(fams, 'lazy_als_cache_usage_bytes')).toBeGreaterThan(0);
    expect(sum(fams, 'lazy_als_cache_limit_bytes')).toBe(10 * 1024 ** 3);

    // Only GET /metrics.
    expect((await fetch(`http://${address}/`)).status).toBe(404);

    // After a restart the memory tier is empty: the same bytes come from the disk tier, no fetch.
    await daemon.stop();
    await daemon.start();
    const address2 = String(daemon.events().find((e) => e['event'] === 'daemon.ready')!['metrics']);
    const again = (await probe([{ op: 'read', path: files[1]![0] }])).map(val);
    expect(again[0].sha256).toBe(sha256hex(files[1]![1]));
    const warm = await parseProm((await scrape(address2)).text);
    expect(sum(warm, 'lazy_als_cache_hits_total', { tier: 'disk' })).toBeGreaterThan(0);
    expect(sum(warm, 'lazy_als_cache_misses_total')).toBe(0);
    expect(sum(warm, 'lazy_als_toc_duration_seconds_count', { how: 'record' })).toBeGreaterThanOrEqual(1);
    expect(sum(warm, 'lazy_als_toc_duration_seconds_count', { how: 'fetch' })).toBe(0);
  });

  it('a bare port binds loopback only; a broken address is a config error', async () => {
    const { parseMetricsAddress } = await import('../../src/daemon/config.js');
    expect(parseMetricsAddress('9464', 'x')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseMetricsAddress(':9464', 'x')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseMetricsAddress('[::1]:9464', 'x')).toEqual({ host: '::1', port: 9464 });
    expect(parseMetricsAddress('0.0.0.0:9464', 'x')).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(parseMetricsAddress('off', 'x')).toBeUndefined();
    expect(() => parseMetricsAddress('localhost:99999', 'x')).toThrow(/host:port/);
    expect(() => parseMetricsAddress('a b', 'x')).toThrow(/host:port/);
  });
});
