import { codedError } from '../core/errors.js';

export type DaemonErrorCode =
  | 'CONFIG_INVALID' // bad config file or flag: the CLI prints the message and exits 2
  | 'MOUNT_BUSY' // another live lazy-als serves the mountpoint
  | 'STALE_MOUNT' // a dead mount could not be cleared
  | 'CONTROL_SOCKET' // the control socket could not be reached or answered an error
  | 'METRICS_LISTEN'; // the metrics address could not be bound

declare module '../core/errors.js' {
  interface ErrorCodes extends Record<DaemonErrorCode, true> {}
}

export class DaemonError extends codedError<DaemonErrorCode>() {}

export class ConfigError extends DaemonError {
  constructor(message: string) {
    super('CONFIG_INVALID', message);
  }
}
