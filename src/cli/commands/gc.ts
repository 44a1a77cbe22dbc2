/**
 * `lazy-als gc [--socket PATH] [--config FILE]` — ask the running daemon to trim its local cache
 * to the configured size now; prints the result as JSON. Exit 1 (one line) on failure.
 */
import type { CommandIo } from '../main.js';
import { controlCommand } from './status.js';

export function run(argv: string[], io: CommandIo): Promise<number> {
  return controlCommand('gc', 'POST', '/gc', argv, io);
}
