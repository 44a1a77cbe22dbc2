/**
 * The daemon's Prometheus metrics: the one module that knows prom-client. Other code reports
 * events through `Telemetry` (timings and counts, see instrument.ts for where they come from);
 * state that already exists elsewhere (per-layer bytes, cache tiers, usage, evictions) is read at
 * scrape time from a `MetricsSnapshot`, so nothing is counted twice and idle layers cost nothing.
 *
 * Names: stargz-snapshotter's (`stargz_fs_*`, see docs/metrics.md) where the meaning is the same,
 * so existing dashboards work; ours (`lazy_als_*`, base units) beside them. Served over plain HTTP
 * on `metrics_address` (off by default; loopback unless an address is configured).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from '../core/log.js';
import { DaemonError } from './errors.js';

/** Events the instrumented paths report. Implementations must be cheap and never throw. */
export interface Telemetry {
  /** A layer lookup the filesystem made: found (served) or absent (unknown, refused, failed). */
  lookup(layer: string, seconds: number, result: 'found' | 'absent'): void;
  /** A layer's index was built: TOC fetched and parsed (`fetch`) or a persisted record re-verified (`record`). */
  toc(layer: string, how: 'fetch' | 'record', seconds: number): void;
  /** openLayer refused a layer (typed error code as the reason). */
  refused(layer: string, reason: string): void;
  /** One request to a registry for a layer blob (a range, a multi-range or a whole blob). */
  registryFetch(layer: string, bytes: number, seconds: number, ok: boolean): void;
  /** A read of layer content through the mount (`file`: diff/ content, `blob`: the blob file). */
  read(layer: string, kind: 'file' | 'blob', bytes: number, seconds: number, ok: boolean): void;
  /** Chunk bytes brought into the cache by the prefetcher. */
  prefetched(layer: string, bytes: number): void;
  /** One FUSE operation answered (errno 0 = success). */
  fuseOp(op: string, seconds: number, errno: number): void;
}

/** State read at scrape time (the provider's cheap counters; no disk I/O). */
export interface MetricsSnapshot {
  readonly layers: readonly {
    /** Store key (blob or TOC digest). */
    readonly key: string;
    readonly keyKind: 'blob' | 'toc';
    readonly blobDigest: string;
    readonly blobSize: number;
    readonly fetchedBytes: number;
    readonly readBytes: number;
    readonly uses: number;
  }[];
  readonly cache: {
    readonly hotHits: number;
    readonly diskHits: number;
    readonly misses: number;
    readonly joined: number;
    readonly bytesFetched: number;
    readonly storeFailures: number;
    readonly hotBytes: number;
    readonly usageBytes: number;
    readonly limitBytes: number;
    readonly evictedObjects: number;
    readonly evictedBytes: number;
    readonly gcRuns: number;
  };
}

const MS_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
const US_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
const SEC_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class DaemonMetrics implements Telemetry {
  readonly registry = new Registry();
  readonly #prefetchedByLayer = new Map<string, number>();
  readonly #h: {
    stargzMs: Histogram<'operation_type' | 'layer'>;
    stargzUs: Histogram<'operation_type' | 'layer'>;
    stargzCount: Counter<'operation_type' | 'layer'>;
    stargzBytes: Gauge<'operation_type' | 'layer'>;
    lookup: Histogram<'result'>;
    toc: Histogram<'how'>;
    refused: Counter<'reason'>;
    regFetch: Histogram<'result'>;
    regBytes: Counter;
    read: Histogram<'kind' | 'result'>;
    readBytes: Counter<'kind'>;
    fuse: Histogram<'op'>;
    fuseErr: Counter<'op' | 'errno'>;
    prefetchBytes: Counter;
  };

  constructor(snapshot: () => MetricsSnapshot | Promise<MetricsSnapshot>, mountpoint: string) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.#h = {
      stargzMs: new Histogram({
        name: 'stargz_fs_operation_duration_milliseconds',
        help:
          'Latency in milliseconds of store operations (stargz-snapshotter compatible): mount = layer resolution, ' +
          'stargz_toc_get = TOC fetch+verify+parse, remote_registry_get = one registry request.',
        labelNames: ['operation_type', 'layer'], buckets: MS_BUCKETS, registers,
      }),
      stargzUs: new Histogram({
        name: 'stargz_fs_operation_duration_microseconds',
        help: 'Latency in microseconds of store operations (stargz-snapshotter compatible): read_on_demand, node_readdir.',
        labelNames: ['operation_type', 'layer'], buckets: US_BUCKETS, registers,
      }),
      stargzCount: new Counter({
        name: 'stargz_fs_operation_count',
        help: 'Count of store operations (stargz-snapshotter compatible): on_demand_read_access_count, on_demand_remote_registry_fetch_count.',
        labelNames: ['operation_type', 'layer'], registers,
      }),
      stargzBytes: new Gauge({
        name: 'stargz_fs_bytes_served',
        help: 'Bytes served per operation type (stargz-snapshotter compatible): on_demand_bytes_served, on_demand_bytes_fetched.',
        labelNames: ['operation_type', 'layer'], registers,
      }),
      lookup: new Histogram({
        name: 'lazy_als_lookup_duration_seconds',
        help:
          'Layer lookups from the filesystem (the first use of a layer in this mount; later ones are answered by the mount itself), ' +
          'by result: found, absent (unknown, refused or failed).',
        labelNames: ['result'], buckets: SEC_BUCKETS, registers,
      }),
      toc: new Histogram({
        name: 'lazy_als_toc_duration_seconds',
        help: 'Building a layer index: fetch = TOC (or whole plain layer) fetched, verified and parsed; record = persisted record re-verified.',
        labelNames: ['how'], buckets: SEC_BUCKETS, registers,
      }),
      refused: new Counter({
        name: 'lazy_als_layers_refused_total',
        help: 'Layers the store refused to serve, by reason (error code).',
        labelNames: ['reason'], registers,
      }),
      regFetch: new Histogram({
        name: 'lazy_als_registry_fetch_duration_seconds',
        help: 'Requests to registries for layer bytes (ranges, multi-ranges, whole blobs), by result.',
        labelNames: ['result'], buckets: SEC_BUCKETS, registers,
      }),
      regBytes: new Counter({ name: 'lazy_als_registry_fetched_bytes_total', help: 'Compressed layer bytes received from registries.', registers }),
      read: new Histogram({
        name: 'lazy_als_read_duration_seconds',
        help: 'Reads of layer content through the mount: file = diff/ content, blob = the blob file; by result.',
        labelNames: ['kind', 'result'], buckets: SEC_BUCKETS, registers,
      }),
      readBytes: new Counter({ name: 'lazy_als_read_bytes_total', help: 'Bytes returned by reads of layer content.', labelNames: ['kind'], registers }),
      fuse: new Histogram({ name: 'lazy_als_fuse_op_duration_seconds', help: 'FUSE operations by kind.', labelNames: ['op'], buckets: SEC_BUCKETS, registers }),
      fuseErr: new Counter({
        name: 'lazy_als_fuse_op_errors_total',
        help: 'FUSE operations answered with an error, by kind and errno (ENOENT lookups are normal).',
        labelNames: ['op', 'errno'], registers,
      }),
      prefetchBytes: new Counter({ name: 'lazy_als_prefetched_bytes_total', help: 'Chunk bytes brought into the cache by the prefetcher.', registers }),
    };
    this.#scrapeGauges(snapshot, mountpoint);
  }

  /** Metrics computed from the snapshot on every scrape (one snapshot per scrape). */
  #scrapeGauges(snapshot: () => MetricsSnapshot | Promise<MetricsSnapshot>, mountpoint: string): void {
    const registers = [this.registry];
    let current: Promise<MetricsSnapshot> | undefined;
    // Every collect() of one scrape shares one snapshot; the next scrape takes a fresh one.
    const snap = (): Promise<MetricsSnapshot> => {
      current ??= Promise.resolve(snapshot()).finally(() => setImmediate(() => (current = undefined)));
      return current;
    };
    this.#layerGauges(snap, mountpoint);
    this.#cacheGauges(snap);
  }

  /** Per-layer metrics and layer counts. */
  #layerGauges(snap: () => Promise<MetricsSnapshot>, mountpoint: string): void {
    const registers = [this.registry];
    const prefetched = this.#prefetchedByLayer;
    const perLayer = (name: string, help: string, value: (l: MetricsSnapshot['layers'][number]) => number): void => {
      new Counter({
        name, help, labelNames: ['digest', 'mountpoint'], registers,
        async collect() {
          const s = await snap();
          this.reset();
          for (const l of s.layers) this.inc({ digest: l.key, mountpoint }, value(l));
        },
      });
    };
    perLayer('stargz_fs_layer_size_bytes', 'Compressed size of each served layer (stargz-snapshotter compatible).', (l) => l.blobSize);
    perLayer(
      'stargz_fs_layer_fetched_size_bytes',
      'Content bytes fetched from the source for each served layer, this process (stargz-snapshotter compatible).',
      (l) => l.fetchedBytes,
    );
    perLayer(
      'stargz_fs_layer_prefetch_size_bytes',
      'Content bytes prefetched for each served layer, this process (stargz-snapshotter compatible).',
      (l) => prefetched.get(l.key) ?? 0,
    );
    new Gauge({
      name: 'lazy_als_layer_uses', help: 'Users of each served layer (c/storage use/rmdir hints).', labelNames: ['digest', 'key_kind'], registers,
      async collect() {
        const s = await snap();
        this.reset();
        for (const l of s.layers) this.set({ digest: l.key, key_kind: l.keyKind }, l.uses);
      },
    });
    new Gauge({
      name: 'lazy_als_layers_served', help: 'Layers served by this process.', registers,
      async collect() {
        this.set((await snap()).layers.length);
      },
    });
  }

  /** Chunk cache counters and gauges. */
  #cacheGauges(snap: () => Promise<MetricsSnapshot>): void {
    const registers = [this.registry];
    const cacheCounter = (name: string, help: string, labelNames: string[], fill: (c: Counter<string>, s: MetricsSnapshot['cache']) => void): void => {
      new Counter({
        name, help, labelNames, registers,
        async collect() {
          const s = await snap();
          this.reset();
          fill(this, s.cache);
        },
      });
    };
    cacheCounter('lazy_als_cache_hits_total', 'Chunk lookups answered from the cache, by tier (memory, disk).', ['tier'], (c, s) => {
      c.inc({ tier: 'memory' }, s.hotHits);
      c.inc({ tier: 'disk' }, s.diskHits);
    });
    cacheCounter('lazy_als_cache_misses_total', 'Chunks that had to be fetched from a source.', [], (c, s) => c.inc(s.misses));
    cacheCounter('lazy_als_cache_joined_total', 'Chunk lookups that joined a fetch already in flight.', [], (c, s) => c.inc(s.joined));
    cacheCounter('lazy_als_cache_store_failures_total', 'Verified chunks that could not be written to disk (served anyway).', [], (c, s) =>
      c.inc(s.storeFailures),
    );
    cacheCounter('lazy_als_cache_evictions_total', 'Objects evicted from the disk cache.', [], (c, s) => c.inc(s.evictedObjects));
    cacheCounter('lazy_als_cache_evicted_bytes_total', 'Bytes evicted from the disk cache.', [], (c, s) => c.inc(s.evictedBytes));
    cacheCounter('lazy_als_cache_gc_runs_total', 'Cache garbage collection runs.', [], (c, s) => c.inc(s.gcRuns));
    const cacheGauge = (name: string, help: string, value: (s: MetricsSnapshot['cache']) => number): void => {
      new Gauge({
        name, help, registers,
        async collect() {
          this.set(value((await snap()).cache));
        },
      });
    };
    cacheGauge('lazy_als_cache_usage_bytes', 'Bytes in the disk cache.', (s) => s.usageBytes);
    cacheGauge('lazy_als_cache_limit_bytes', 'Configured disk cache limit (cache_size).', (s) => s.limitBytes);
    cacheGauge('lazy_als_cache_memory_bytes', 'Bytes in the memory tier.', (s) => s.hotBytes);
  }

  // --- Telemetry ---------------------------------------------------------------------------------
  lookup(layer: string, seconds: number, result: 'found' | 'absent'): void {
    this.#h.lookup.observe({ result }, seconds);
    if (result === 'found') this.#h.stargzMs.observe({ operation_type: 'mount', layer }, seconds * 1000);
  }

  toc(layer: string, how: 'fetch' | 'record', seconds: number): void {
    this.#h.toc.observe({ how }, seconds);
    if (how === 'fetch') this.#h.stargzMs.observe({ operation_type: 'stargz_toc_get', layer }, seconds * 1000);
  }

  refused(_layer: string, reason: string): void {
    this.#h.refused.inc({ reason });
  }

  registryFetch(layer: string, bytes: number, seconds: number, ok: boolean): void {
    this.#h.regFetch.observe({ result: ok ? 'ok' : 'error' }, seconds);
    if (!ok) return;
    this.#h.regBytes.inc(bytes);
    this.#h.stargzMs.observe({ operation_type: 'remote_registry_get', layer }, seconds * 1000);
    this.#h.stargzCount.inc({ operation_type: 'on_demand_remote_registry_fetch_count', layer });
    this.#h.stargzBytes.inc({ operation_type: 'on_demand_bytes_fetched', layer }, bytes);
  }

  read(layer: string, kind: 'file' | 'blob', bytes: number, seconds: number, ok: boolean): void {
    this.#h.read.observe({ kind, result: ok ? 'ok' : 'error' }, seconds);
    if (!ok) return;
    this.#h.readBytes.inc({ kind }, bytes);
    if (kind !== 'file') return;
    this.#h.stargzUs.observe({ operation_type: 'read_on_demand', layer }, seconds * 1e6);
    this.#h.stargzCount.inc({ operation_type: 'on_demand_read_access_count', layer });
    this.#h.stargzBytes.inc({ operation_type: 'on_demand_bytes_served', layer }, bytes);
  }

  prefetched(layer: string, bytes: number): void {
    this.#h.prefetchBytes.inc(bytes);
    this.#prefetchedByLayer.set(layer, (this.#prefetchedByLayer.get(layer) ?? 0) + bytes);
  }

  fuseOp(op: string, seconds: number, errno: number): void {
    this.#h.fuse.observe({ op }, seconds);
    if (errno !== 0) this.#h.fuseErr.inc({ op, errno: String(errno) });
    if (op === 'readdir') this.#h.stargzUs.observe({ operation_type: 'node_readdir', layer: '' }, seconds * 1e6);
  }
}

export interface MetricsServer {
  /** host:port actually bound (port 0 in the config picks a free one). */
  readonly address: string;
  close(): Promise<void>;
}

/** Serve `GET /metrics` (text exposition format 0.0.4) on host:port. */
export async function startMetricsServer(metrics: DaemonMetrics, host: string, port: number, logger: Logger): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    void (async () => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
        return;
      }
      try {
        const text = await metrics.registry.metrics();
        res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text);
      } catch (e) {
        logger.error('metrics.scrape_failed', { error: e });
        res.writeHead(500, { 'content-type': 'text/plain' }).end('scrape failed\n');
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new DaemonError('METRICS_LISTEN', `cannot listen for metrics on ${host}:${port}: ${e.message}`, {}, { cause: e })));
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const address = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  logger.info('metrics.listening', { address });
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
