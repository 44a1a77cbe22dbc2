/**
 * An emulated slow link that never touches the host's own network: two network namespaces joined by
 * a veth pair, addresses from the benchmarking range 198.18.0.0/15 (RFC 2544) that exist only inside
 * the pair, 100 Mbit/s and 20 ms RTT. `tc netem delay 10ms rate 100mbit` would be the obvious tool,
 * but this VM's kernel has no netem (CONFIG_NET_SCH_NETEM is not set; tbf and htb are built in), so:
 *   - rate: `tc qdisc … tbf rate 100mbit` on both veth ends;
 *   - delay: bench/e2e/delay-proxy.mjs in the far namespace, a TCP delay line holding every chunk
 *     10 ms in each direction between the client and the registry (requests see +20 ms RTT;
 *     unlike netem it does not slow TCP's own ACK clock on the wire).
 *
 *   far  (198.18.0.1) — the registry runs here (`nsenter --net=<far>`)
 *   near (198.18.0.2) — the store and podman run here (`nsenter --net=<near>`; only the network
 *                        namespace changes, so FUSE mounts stay visible to everyone)
 *
 * teardown() kills what runs in the namespaces (by pid) and deletes both; deleting a namespace
 * destroys its end of the veth pair and with it the other end. Nothing is created in the root
 * namespace, so there is nothing to undo there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnCollect } from '../../test/helpers/podman.js';

export interface SlowLink {
  readonly far: string;
  readonly near: string;
  readonly farAddr: string;
  readonly nearAddr: string;
  /** One-way delay the registry's delay proxy must add (0 when netem does it on the wire). */
  readonly delayInProxyMs: number;
  /** argv prefix that runs a command in a namespace's network only. */
  nsenter(ns: 'far' | 'near'): string[];
  teardown(): Promise<void>;
}

async function sh(argv: string[]): Promise<void> {
  const r = await spawnCollect(argv, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: exit ${r.code}: ${r.stderr}`);
}

export async function createSlowLink(opts: { delayMs?: number; rate?: string } = {}): Promise<SlowLink> {
  const tag = `lzals${process.pid % 100000}`;
  const far = `${tag}-far`;
  const near = `${tag}-near`;
  const farAddr = '198.18.0.1';
  const nearAddr = '198.18.0.2';
  const delay = `${opts.delayMs ?? 10}ms`;
  const rate = opts.rate ?? '100mbit';
  const created: string[] = [];
  let netemWorks = false;
  const teardown = async (): Promise<void> => {
    for (const ns of created.splice(0).reverse()) {
      // anything still running inside (should be nothing): ip netns pids lists it
      const pids = await spawnCollect(['ip', 'netns', 'pids', ns]);
      for (const p of pids.stdout.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await spawnCollect(['ip', 'netns', 'del', ns]);
    }
  };
  try {
    for (const ns of [far, near]) {
      await sh(['ip', 'netns', 'add', ns]);
      created.push(ns);
    }
    // create the pair inside `far` so no interface ever exists in the root namespace
    await sh(['ip', '-n', far, 'link', 'add', 'veth-far', 'type', 'veth', 'peer', 'name', 'veth-near', 'netns', near]);
    for (const [ns, dev, addr] of [[far, 'veth-far', farAddr], [near, 'veth-near', nearAddr]] as const) {
      await sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      await sh(['ip', '-n', ns, 'addr', 'add', `${addr}/30`, 'dev', dev]);
      await sh(['ip', '-n', ns, 'link', 'set', dev, 'up']);
      const netem = await spawnCollect(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'netem', 'delay', delay, 'rate', rate, 'limit', '10000']);
      if (netem.code === 0) {
        netemWorks = true;
      } else {
        await sh(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', '256kb', 'latency', '100ms']);
      }
    }
  } catch (e) {
    await teardown();
    throw e;
  }
  return {
    far,
    near,
    farAddr,
    nearAddr,
    delayInProxyMs: netemWorks ? 0 : opts.delayMs ?? 10,
    nsenter: (ns) => ['nsenter', `--net=/run/netns/${ns === 'far' ? far : near}`],
    teardown,
  };
}

/**
 * docker-registry serving an existing storage dir (one a test registry pushed into) inside the far
 * namespace on port+1, behind the delay proxy on `farAddr:port`. Access log in `<dir>/registry-far.log`.
 */
export async function startRegistryIn(link: SlowLink, dataDir: string, dir: string, port = 5000): Promise<{ host: string; logPath: string; stop(): Promise<void> }> {
  const cfg = join(dir, 'registry-far.yml');
  const logPath = join(dir, 'registry-far.log');
  writeFileSync(
    cfg,
    `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${dataDir}
  cache:
    blobdescriptor: inmemory
http:
  addr: ${link.farAddr}:${port + 1}
  secret: lazy-als-bench
`,
  );
  const fd = openSync(logPath, 'a');
  const child: ChildProcess = spawn(link.nsenter('far')[0]!, [...link.nsenter('far').slice(1), '/usr/bin/docker-registry', 'serve', cfg], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const host = `${link.farAddr}:${port}`;
  // the delay line in front of the registry (delay 0: a plain relay when netem delays the wire)
  const proxy: ChildProcess = spawn(
    link.nsenter('far')[0]!,
    [...link.nsenter('far').slice(1), process.execPath, fileURLToPath(new URL('./delay-proxy.mjs', import.meta.url)), link.farAddr, String(port), link.farAddr, String(port + 1), String(link.delayInProxyMs)],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`registry exited: ${readFileSync(logPath, 'utf8').slice(-1000)}`);
    if (proxy.exitCode !== null) throw new Error(`delay proxy exited ${proxy.exitCode}`);
    const r = await spawnCollect([...link.nsenter('near'), 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${host}/v2/`]);
    if (r.stdout === '200') break;
    if (i > 200) throw new Error(`registry in ${link.far} not ready: ${readFileSync(logPath, 'utf8').slice(-1000)}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  return {
    host,
    logPath,
    async stop() {
      for (const c of [proxy, child]) {
        if (c.exitCode === null && c.signalCode === null) {
          c.kill('SIGTERM');
          await new Promise((r) => c.once('exit', r));
        }
      }
    },
  };
}

export function netnsAvailable(): string[] {
  const missing: string[] = [];
  for (const b of ['/usr/sbin/ip', '/usr/sbin/tc', '/usr/bin/nsenter', '/usr/bin/curl']) if (!existsSync(b)) missing.push(b);
  return missing;
}
