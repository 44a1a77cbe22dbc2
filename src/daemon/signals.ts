/**
 * SIGTERM/SIGINT end the daemon cleanly: the first one resolves `stopped` (serve then unmounts and
 * exits 0); a second one while shutting down is logged and ignored, so the unmount in `finally`
 * still runs. Also installs last-resort handlers: an uncaught exception or unhandled rejection is
 * logged, never fatal — a dead daemon leaves a dead mount and breaks every podman command.
 */
import type { Logger } from '../core/log.js';

export interface StopSignal {
  readonly stopped: Promise<NodeJS.Signals>;
  dispose(): void;
}

export function onStopSignals(logger: Logger, signals: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT']): StopSignal {
  let resolveStop!: (s: NodeJS.Signals) => void;
  const stopped = new Promise<NodeJS.Signals>((r) => (resolveStop = r));
  let got: NodeJS.Signals | undefined;
  const onSignal = (s: NodeJS.Signals): void => {
    if (got) {
      logger.warn('daemon.signal_ignored', { signal: s, reason: 'already stopping' });
      return;
    }
    got = s;
    logger.info('daemon.signal', { signal: s });
    resolveStop(s);
  };
  const onUncaught = (e: unknown): void => logger.error('daemon.uncaught_exception', { error: e });
  const onUnhandled = (e: unknown): void => logger.error('daemon.unhandled_rejection', { error: e });
  for (const s of signals) process.on(s, onSignal);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUnhandled);
  return {
    stopped,
    dispose() {
      for (const s of signals) process.off(s, onSignal);
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onUnhandled);
    },
  };
}
