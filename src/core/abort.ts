/**
 * Waiting that an AbortSignal can cut short. Both reject with AbortedError (code ABORTED), the one
 * error every layer recognises as "the caller gave up", never with the signal's own reason.
 */
import { AbortedError, type ErrorContext } from './errors.js';

/** Resolve with `p`, or reject with AbortedError as soon as `signal` aborts (`p` itself runs on). */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined, ctx: ErrorContext = {}): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new AbortedError(ctx));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortedError(ctx));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** Resolve after `ms`, or reject with AbortedError (and stop the timer) as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError());
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new AbortedError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
