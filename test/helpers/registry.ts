/**
 * A real registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 on a free
 * port, with its own temp storage and config, optional htpasswd (bcrypt) or token auth, access log
 * on. stop() kills it by pid, waits for the exit and removes the temp dir; kill() simulates a crash.
 *
 *   const reg = await startRegistry({ auth: 'basic' });
 *   await pushImage(reg, 'e2e/x', 'v1', { layers: [...] });   // test/helpers/registry-push.ts
 *   ...
 *   await reg.stop();
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTokenServer, type TokenServer } from './registry-token-server.js';

export const REGISTRY_BIN = '/usr/bin/docker-registry';

export interface RegistryOptions {
  auth?: 'none' | 'basic' | 'token';
  /** Users for basic/token auth (default { testuser: 'testpass' }). */
  users?: Record<string, string>;
  /** Token lifetime in seconds (token auth). */
  tokenLifetimeSeconds?: number;
  /** Run as a pull-through cache (docker-registry proxy mode) in front of this registry URL. */
  proxyOf?: string;
}

export interface RegistryHandle {
  /** e.g. "http://127.0.0.1:41234" */
  readonly url: string;
  /** "127.0.0.1:PORT" (use it in references: `${host}/repo:tag`). */
  readonly host: string;
  readonly port: number;
  readonly logPath: string;
  readonly dir: string;
  readonly auth: 'none' | 'basic' | 'token';
  readonly users: Record<string, string>;
  readonly tokenServer?: TokenServer;
  /** Access-log lines so far (lines without `level=`). */
  accessLog(): string[];
  /** SIGKILL the registry (a crash), wait for the exit; keeps the storage. */
  kill(): Promise<void>;
  /** Start again on the same port and storage after kill(). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
    }, ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

async function waitReady(url: string, child: ChildProcess, logPath: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}): ${readFileSync(logPath, 'utf8').slice(-2000)}`);
    try {
      const r = await fetch(`${url}/v2/`);
      await r.arrayBuffer();
      if (r.status === 200 || r.status === 401) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not become ready: ${readFileSync(logPath, 'utf8').slice(-2000)}`);
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryHandle> {
  if (!existsSync(REGISTRY_BIN)) throw new Error(`${REGISTRY_BIN} missing: apt-get install docker-registry`);
  const auth = opts.auth ?? 'none';
  const users = opts.users ?? { testuser: 'testpass' };
  const dir = mkdtempSync(join(tmpdir(), 'lazy-als-registry-'));
  let tokenServer: TokenServer | undefined;
  try {
    const port = await freePort();
    const logPath = join(dir, 'registry.log');
    let authYaml = '';
    if (auth === 'basic') {
      const lines = Object.entries(users).map(([u, p]) => execFileSync('htpasswd', ['-Bbn', u, p], { encoding: 'utf8' }).trim());
      writeFileSync(join(dir, 'htpasswd'), lines.join('\n') + '\n');
      authYaml = `auth:\n  htpasswd:\n    realm: lazy-als-test\n    path: ${join(dir, 'htpasswd')}\n`;
    } else if (auth === 'token') {
      tokenServer = await startTokenServer({ dir, users, ...(opts.tokenLifetimeSeconds !== undefined ? { lifetimeSeconds: opts.tokenLifetimeSeconds } : {}) });
      authYaml = `auth:\n  token:\n    realm: ${tokenServer.realm}\n    service: ${tokenServer.service}\n    issuer: ${tokenServer.issuer}\n    rootcertbundle: ${tokenServer.certPath}\n`;
    }
    const config = `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${join(dir, 'data')}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:${port}
  secret: lazy-als-test-secret
${authYaml}${opts.proxyOf ? `proxy:\n  remoteurl: ${opts.proxyOf}\n` : ''}`;
    writeFileSync(join(dir, 'config.yml'), config);
    const url = `http://127.0.0.1:${port}`;
    let child: ChildProcess;
    const launch = async (): Promise<void> => {
      const fd = openSync(logPath, 'a');
      child = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', fd, fd] });
      closeSync(fd);
      await waitReady(url, child, logPath);
    };
    await launch();
    let stopped = false;
    const handle: RegistryHandle = {
      url,
      host: `127.0.0.1:${port}`,
      port,
      logPath,
      dir,
      auth,
      users,
      ...(tokenServer ? { tokenServer } : {}),
      accessLog: () => readFileSync(logPath, 'utf8').split('\n').filter((l) => l.includes('HTTP/') && !l.includes('level=')),
      kill: async () => {
        child.kill('SIGKILL');
        await waitExit(child, 5000);
      },
      restart: async () => {
        await waitExit(child, 5000);
        await launch();
      },
      stop: async () => {
        if (stopped) return;
        stopped = true;
        child.kill('SIGTERM');
        await waitExit(child, 5000);
        await tokenServer?.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
    return handle;
  } catch (e) {
    await tokenServer?.stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
