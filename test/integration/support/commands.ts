/**
 * Running the commands the integration tests poke the mount with (getfattr, mount, umount,
 * sha256sum, dd). stdin is not a pipe: test/fuse/helpers/mount-fixture.ts's run() writes to the
 * child's stdin, which raises an unhandled EPIPE when the command exits before that write lands.
 */
import { spawn } from 'node:child_process';
import { PROBE, type ProbeOp, type ProbeResult } from '../../fuse/helpers/mount-fixture.js';

export type { ProbeOp, ProbeResult };

export interface CmdResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function cmd(command: string, args: readonly string[]): Promise<CmdResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

export async function getfattr(path: string, name: string): Promise<{ ok: boolean; value: string; stderr: string }> {
  const r = await cmd('getfattr', ['-h', '--absolute-names', '--only-values', '-n', name, path]);
  return { ok: r.code === 0, value: r.stdout, stderr: r.stderr };
}

export async function listxattr(path: string): Promise<string[]> {
  const r = await cmd('getfattr', ['-h', '--absolute-names', '-d', '-m', '-', path]);
  return r.stdout.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split('=')[0]!);
}

/** test/fuse/helpers/probe.mjs (syscalls from a child process, one JSON result per op), stdin closed. */
export async function probe(ops: readonly ProbeOp[]): Promise<ProbeResult[]> {
  const r = await cmd(process.execPath, [PROBE, JSON.stringify(ops)]);
  if (r.code !== 0) throw new Error(`probe failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ProbeResult[];
}

/** A probe result as its value, or its errno code (tests compare both kinds with toEqual). */
export const val = (r: ProbeResult): any => (r.ok ? r.value : r.code); // eslint-disable-line @typescript-eslint/no-explicit-any
