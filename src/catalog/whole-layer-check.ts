/**
 * Quarantine: after a TOC layer's background fetch, read the whole blob once more and check it is
 * the tar its TOC claims (formats/full-pass.ts). A layer that is not gets quarantined (catalog.ts:
 * reads EIO, warn line, status, persisted, its cache entries dropped). Started once per layer.
 */
import type { RandomAccessBlob } from '../core/blob.js';
import type { Digest } from '../core/digest.js';
import { LazyAlsError } from '../core/errors.js';
import { DEFAULT_LIMITS, type Limits } from '../core/limits.js';
import type { Logger } from '../core/log.js';
import { verifyFullPass } from '../formats/full-pass.js';
import type { PrefetchScheduler } from '../cache/prefetch.js';
import type { ServedLayer } from './layer.js';
import type { LayerId } from './layer-id.js';

/** Whole-layer check failures that mean "this blob is not what its TOC says" (not a network error). */
const QUARANTINE_CODES = new Set([
  'FORMAT_CONFLICT',
  'DIFFID_MISMATCH',
  'BLOB_DIGEST_MISMATCH',
  'DECOMPRESS_FAILED',
  'TAR_INVALID',
  'ENTRY_PATH_UNSAFE',
  'ENTRY_INVALID',
]);

export interface WholeLayerCheckOptions {
  readonly scheduler?: PrefetchScheduler;
  readonly limits?: Limits;
  readonly logger: Logger;
  /** The layer is not the tar its TOC claims: quarantine it (the catalog's job: EIO, status, persist, drop cache). */
  readonly quarantine: (layer: ServedLayer, ref: string | undefined, reason: LazyAlsError) => Promise<void>;
}

export interface CheckTarget {
  readonly layer: ServedLayer;
  readonly ref: string | undefined;
  readonly diffId: Digest;
  readonly open: (signal?: AbortSignal) => Promise<RandomAccessBlob>;
}

export class WholeLayerCheck {
  readonly #o: WholeLayerCheckOptions;
  readonly #checks = new Map<LayerId, Promise<void>>();

  constructor(o: WholeLayerCheckOptions) {
    this.#o = o;
  }

  /** Start the check of `t` once `after` (its background fetch) settled; once per layer. */
  start(id: LayerId, t: CheckTarget, after: Promise<void> | undefined): void {
    if (this.#checks.has(id)) return;
    this.#checks.set(
      id,
      (after ?? Promise.resolve()).then(() => this.#check(t)),
    );
  }

  /** The check of a served layer, when one was started (tests, status). */
  get(id: LayerId): Promise<void> | undefined {
    return this.#checks.get(id);
  }

  /** Never rejects: the outcome is a quarantine or a log line. */
  async #check(t: CheckTarget): Promise<void> {
    const { scheduler, logger } = this.#o;
    const run = async (signal?: AbortSignal): Promise<void> => {
      const blob = await t.open(signal);
      await verifyFullPass(blob, t.layer.index, { diffId: t.diffId, limits: this.#o.limits ?? DEFAULT_LIMITS, ...(signal ? { signal } : {}) });
    };
    try {
      await (scheduler ? scheduler.background(run) : run());
      logger.info('catalog.layer_verified', { layer: t.layer.key });
    } catch (e) {
      if (scheduler?.closedSignal.aborted) return;
      if (e instanceof LazyAlsError && QUARANTINE_CODES.has(e.code)) {
        // The TOC we served from is not the tar a full pull unpacks: stop serving its bytes.
        await this.#o.quarantine(t.layer, t.ref, e);
      } else {
        logger.warn('catalog.verify_failed', { layer: t.layer.key, error: e });
      }
    }
  }
}
