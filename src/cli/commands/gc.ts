/**
 * `lazy-als gc [--all] [--json] [--socket PATH] [--config FILE]` — ask the running daemon to trim
 * its local cache to the configured size now, or with `--all` to empty it of everything no layer
 * in use needs (`lazy-als purge` is the same). Evicted chunks are fetched again on the next read;
 * layer records and manifests are kept, so every layer stays servable. Exit 1 (one line) on failure.
 */
import type { CommandIo } from '../main.js';
import { humanBytes } from '../status-table.js';
import { controlCommand } from './status.js';

const USAGE = `usage: lazy-als gc [--all] [--json] [--socket PATH] [--config FILE]
  (no flag)  evict least recently used chunks until the cache is under its configured size
  --all      evict every cached chunk and blob not needed by a layer in use (same as lazy-als purge)
`;

export function renderGc(body: unknown): string {
  const r = (body ?? {}) as {
    deleted?: number;
    freedBytes?: number;
    bytesAfter?: number;
    all?: boolean;
    layersInUse?: number;
    keptObjects?: number;
    gc?: string;
  };
  if (typeof r.gc === 'string') return `${r.gc}\n`;
  const kept = r.all ? `; kept ${r.keptObjects ?? 0} objects for ${r.layersInUse ?? 0} layer(s) in use` : '';
  return `evicted ${r.deleted ?? 0} objects, freed ${humanBytes(r.freedBytes)}; cache now ${humanBytes(r.bytesAfter)}${kept}\n`;
}

export function runGc(argv: string[], io: CommandIo, all: boolean): Promise<number> {
  return controlCommand(all ? 'purge' : 'gc', 'POST', '/gc', argv, io, {
    flags: all ? [] : ['all'],
    body: (f) => ({ all: all || f['all'] === true }),
    render: renderGc,
    usage: all ? 'usage: lazy-als purge [--json] [--socket PATH] [--config FILE]   (= lazy-als gc --all)\n' : USAGE,
  });
}

export function run(argv: string[], io: CommandIo): Promise<number> {
  return runGc(argv, io, false);
}
