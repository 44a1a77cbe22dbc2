/**
 * Running one of the base system's tools for what Node has no API for (xattrs, device nodes, fifos):
 * argv only (never a shell), a small fixed environment (copying ours costs more than the call), and
 * the first line of its stderr in the error.
 */
import { spawn } from 'node:child_process';

export class ExtractError extends Error {}

const ENV = { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

/** Run `cmd argv` in `cwd`, writing `input` to its stdin when given. */
export function tool(cmd: string, argv: string[], cwd: string, input?: Buffer): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, argv, { cwd, env: ENV, stdio: [input ? 'pipe' : 'ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => {
      if (err.length < 2000) err += s;
    });
    if (input) {
      child.stdin!.on('error', () => undefined); // a tool that dies early reports through its exit code
      child.stdin!.end(input);
    }
    child.on('error', (e) => reject(new ExtractError(`cannot run ${cmd}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolvePromise();
      else reject(new ExtractError(`${cmd} failed (exit ${code}): ${err.trim().split('\n')[0] ?? ''}`));
    });
  });
}
