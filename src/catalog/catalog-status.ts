/** The catalog's part of `lazy-als status`: bounded by the parts it reads (use counts, refusals). */
import type { Digest } from '../core/digest.js';
import type { ServedLayer } from './layer.js';
import { layerIdOf, splitLayerId } from './layer-id.js';
import type { NegativeCache } from './negative-cache.js';
import type { Refusal, RefusalLog } from './refusals.js';
import type { UseCounts } from './use-counts.js';

interface UseCount {
  readonly refElem: string | undefined;
  readonly key: string;
  readonly count: number;
}

export interface LookupCounters {
  positive: number;
  negative: number;
  resolutions: number;
  opens: number;
}

export interface CatalogStatus {
  readonly served: { refElem: string | undefined; key: Digest; keyKind: 'blob' | 'toc'; fetchedBytes: number; uses: number }[];
  readonly useCounts: readonly UseCount[];
  readonly negativeEntries: number;
  /** Layers refused or quarantined, newest first (bounded, see refusals.ts). */
  readonly refused: readonly Refusal[];
  readonly lookups: LookupCounters;
}

export function catalogStatus(p: {
  served: readonly ServedLayer[];
  uses: UseCounts;
  negative: NegativeCache;
  refusals: RefusalLog;
  counters: LookupCounters;
}): CatalogStatus {
  return {
    served: p.served.map((l) => ({
      refElem: l.refElem,
      key: l.key,
      keyKind: l.keyKind,
      fetchedBytes: l.stats.fetchedBytes,
      uses: p.uses.get(layerIdOf(l.refElem, l.key)),
    })),
    useCounts: [...p.uses.entries()].map(([id, count]) => ({ ...splitLayerId(id), count })),
    negativeEntries: p.negative.live(),
    refused: p.refusals.list(),
    lookups: p.counters,
  };
}
