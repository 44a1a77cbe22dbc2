/**
 * docker-credential-<name> helpers (docker-credential-helpers protocol): run `<helper> get` with the
 * server URL on stdin, read `{"ServerURL","Username","Secret"}` from stdout. A Username of
 * "<token>" means Secret is an identity (refresh) token.
 */
import { spawn } from 'node:child_process';
import { SourceError } from '../errors.js';
import type { Credentials } from '../credentials.js';

export interface CredHelperOptions {
  /** Environment for the helper (PATH decides which binary runs). */
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

const MAX_OUTPUT = 1024 * 1024;

export function runCredentialHelper(name: string, serverUrl: string, opts: CredHelperOptions = {}): Promise<Credentials | undefined> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) {
    return Promise.reject(new SourceError('CREDENTIALS_INVALID', `bad credential helper name ${JSON.stringify(name)}`, { source: serverUrl }));
  }
  const bin = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['get'], { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let outLen = 0;
    let errText = '';
    let settled = false;
    const fail = (msg: string, cause?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new SourceError('CREDENTIALS_INVALID', `${bin}: ${msg}`, { source: serverUrl }, { cause }));
    };
    const timer = setTimeout(() => fail('timed out'), opts.timeoutMs ?? 30_000);
    child.on('error', (e) => fail(`cannot run: ${e.message}`, e));
    child.stdout.on('data', (b: Buffer) => {
      outLen += b.length;
      if (outLen > MAX_OUTPUT) fail('output too large');
      else out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errText.length < 4096) errText += b.toString('utf8');
    });
    child.stdin.on('error', () => undefined); // helper may exit without reading
    child.stdin.end(serverUrl);
    child.on('close', (code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const text = Buffer.concat(out).toString('utf8');
      if (code !== 0) {
        if (/credentials not found/i.test(text + errText)) return resolve(undefined);
        return reject(new SourceError('CREDENTIALS_INVALID', `${bin} exited with ${code}: ${(text + errText).trim().slice(0, 200)}`, { source: serverUrl }));
      }
      try {
        const j = JSON.parse(text) as Record<string, unknown>;
        const user = j['Username'];
        const secret = j['Secret'];
        if (typeof user !== 'string' || typeof secret !== 'string') throw new Error('Username/Secret missing');
        resolve(user === '<token>' ? { identityToken: secret } : { username: user, password: secret });
      } catch (e) {
        reject(new SourceError('CREDENTIALS_INVALID', `${bin}: unparseable output`, { source: serverUrl }, { cause: e }));
      }
    });
  });
}
