/**
 * Retry with jittered exponential backoff ("full jitter": sleep uniform in [0, min(cap, base·2^n)]).
 * Time and randomness are injected so tests run without real sleeps.
 */
import { sleep } from '../../core/abort.js';
import { isRetryable } from '../errors.js';

export interface RetryPolicy {
  /** Attempts after the first one. */
  readonly retries: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly random: () => number;
  readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({
  retries: 4,
  baseDelayMs: 200,
  maxDelayMs: 5_000,
  random: Math.random,
  sleep,
});

export function backoffDelay(policy: RetryPolicy, attempt: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return Math.floor(policy.random() * ceiling);
}

/** Run `op`, retrying while it throws a retryable SourceError. */
export async function withRetry<T>(
  policy: RetryPolicy,
  op: (attempt: number) => Promise<T>,
  onRetry?: (e: unknown, attempt: number, delayMs: number) => void,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op(attempt);
    } catch (e) {
      if (attempt >= policy.retries || !isRetryable(e) || signal?.aborted) throw e;
      const delay = backoffDelay(policy, attempt);
      onRetry?.(e, attempt, delay);
      await policy.sleep(delay, signal);
    }
  }
}
