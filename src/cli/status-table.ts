/**
 * `lazy-als status` for people: the daemon's GET /status JSON as a few lines and a table.
 * Tolerant of missing fields (an older daemon, a provider without a catalog): what is absent is
 * shown as "-". `--json` prints the JSON itself for scripts.
 */

interface LayerRow {
  ref?: string;
  key?: string;
  keyKind?: string;
  format?: string;
  blobSize?: number;
  uses?: number;
  fetchedBytes?: number;
  contentBytes?: number;
  cachedBytes?: number;
  percent?: number;
  lastAccessMs?: number | null;
}

interface RefusedRow {
  /** `refused` (podman pulls it itself) or `quarantined` (served, then found not to match its blob: EIO). */
  kind?: string;
  layer?: string;
  key?: string;
  reason?: string;
  code?: string;
  message?: string;
  at?: number;
}

interface StatusBody {
  pid?: number;
  mountpoint?: string;
  stateDir?: string;
  uptimeSec?: number;
  rssBytes?: number;
  fuse?: { backend?: string };
  catalog?: {
    layers?: LayerRow[];
    cache?: { usageBytes?: number; limitBytes?: number; hitRate?: number | null; hotHits?: number; diskHits?: number; misses?: number };
    refused?: RefusedRow[];
    catalog?: { refused?: RefusedRow[] };
  } | null;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function humanBytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${UNITS[u]}`;
}

function humanAgo(ms: number | null | undefined, now: number): string {
  if (ms === null || ms === undefined) return '-';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function duration(sec: number | undefined): string {
  if (sec === undefined) return '-';
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m`;
  if (sec < 86400) return `${Math.floor(sec / 3600)}h${Math.floor((sec % 3600) / 60)}m`;
  return `${Math.floor(sec / 86400)}d${Math.floor((sec % 86400) / 3600)}h`;
}

/** Digest shortened for a table: algorithm + first 12 hex digits. */
const shortDigest = (d: string | undefined): string => (d === undefined ? '-' : d.replace(/^(sha256|sha512):([0-9a-f]{12})[0-9a-f]+$/, '$1:$2'));

function table(header: string[], rows: string[][]): string[] {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

export function renderStatus(body: unknown, now: number = Date.now()): string {
  const s = (body ?? {}) as StatusBody;
  const out: string[] = [];
  out.push(`lazy-als pid ${s.pid ?? '-'}, up ${duration(s.uptimeSec)}, RSS ${humanBytes(s.rssBytes)}${s.fuse?.backend ? `, backend ${s.fuse.backend}` : ''}`);
  out.push(`mount ${s.mountpoint ?? '-'}, state ${s.stateDir ?? '-'}`);
  const cat = s.catalog;
  if (!cat) {
    out.push('', 'no layer catalog (this provider reports none)');
    return out.join('\n') + '\n';
  }
  const c = cat.cache ?? {};
  const hit = c.hitRate === null || c.hitRate === undefined ? '-' : `${(c.hitRate * 100).toFixed(1)}%`;
  out.push(
    `cache ${humanBytes(c.usageBytes)} of ${humanBytes(c.limitBytes)}` +
      (c.limitBytes ? ` (${(((c.usageBytes ?? 0) / c.limitBytes) * 100).toFixed(1)}%)` : '') +
      `, hit rate ${hit} (memory ${c.hotHits ?? '-'}, disk ${c.diskHits ?? '-'}, fetched ${c.misses ?? '-'} chunks)`,
  );
  const layers = [...(cat.layers ?? [])].sort((a, b) => (b.lastAccessMs ?? 0) - (a.lastAccessMs ?? 0));
  out.push('');
  if (layers.length === 0) out.push('no layers served yet');
  else {
    out.push(
      ...table(
        ['LAYER', 'KIND', 'IMAGE', 'SIZE', 'FETCHED', 'IN USE', 'LAST ACCESS'],
        layers.map((l) => [
          shortDigest(l.key),
          l.keyKind === 'toc' ? 'toc' : l.keyKind === 'blob' ? 'blob' : '-',
          l.ref ?? '(no ref)',
          humanBytes(l.blobSize),
          l.percent === undefined ? '-' : `${l.percent.toFixed(l.percent >= 99.95 || l.percent === 0 ? 0 : 1)}%`,
          l.uses === undefined ? '-' : l.uses > 0 ? `yes (${l.uses})` : 'no',
          humanAgo(l.lastAccessMs, now),
        ]),
      ),
    );
  }
  // The catalog's own list when it keeps one, else the daemon's record of recent refusals.
  const refused = cat.catalog?.refused ?? cat.refused ?? [];
  if (refused.length > 0) {
    out.push('', `refused layers (${refused.length}):`);
    out.push(
      ...table(
        ['LAYER', 'KIND', 'REASON', 'WHEN', 'DETAIL'],
        refused.map((r) => [shortDigest(r.layer ?? r.key), r.kind ?? 'refused', r.reason ?? r.code ?? '-', humanAgo(r.at, now), r.message ?? '']),
      ).map((l) => `  ${l}`),
    );
  }
  return out.join('\n') + '\n';
}
