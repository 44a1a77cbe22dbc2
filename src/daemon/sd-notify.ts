/**
 * systemd readiness (Type=notify). NOTIFY_SOCKET is a unix *datagram* socket, which node:dgram
 * cannot open, so the message is sent by `systemd-notify` when it is installed (the unit sets
 * NotifyAccess=all because the sender is that helper, not us; --pid names us anyway). Without
 * NOTIFY_SOCKET, or without the helper, this is a no-op. Never throws.
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../core/log.js';

export type NotifyState = 'READY=1' | 'STOPPING=1' | `STATUS=${string}`;

export function sdNotify(state: NotifyState, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (!env['NOTIFY_SOCKET']) return Promise.resolve(false);
  const args = state === 'READY=1' ? ['--ready', `--pid=${process.pid}`] : [`--pid=${process.pid}`, state];
  return new Promise((resolve) => {
    const p = spawn('systemd-notify', args, { stdio: 'ignore', env });
    p.on('error', (e) => {
      logger.debug('daemon.sd_notify_unavailable', { error: e });
      resolve(false);
    });
    p.on('close', (code) => {
      if (code !== 0) logger.warn('daemon.sd_notify_failed', { state, code });
      resolve(code === 0);
    });
  });
}
