/** `lazy-als purge` = `lazy-als gc --all`: empty the cache of everything no layer in use needs. */
import type { CommandIo } from '../main.js';
import { runGc } from './gc.js';

export function run(argv: string[], io: CommandIo): Promise<number> {
  return runGc(argv, io, true);
}
