#!/usr/bin/env node
// A TCP delay line: listens on LISTEN_HOST:LISTEN_PORT, forwards to TARGET_HOST:TARGET_PORT and
// holds every chunk DELAY_MS in each direction (order kept: equal timeouts fire in order), with
// backpressure. bench/e2e/slow-link.ts runs it in the "far" namespace because this kernel has no
// netem (CONFIG_NET_SCH_NETEM is not set): the rate limit is tc tbf on the veth pair, the 20 ms RTT
// is this.
//   node delay-proxy.mjs LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS
import { createServer, connect } from 'node:net';

const [lh, lp, th, tp, d] = process.argv.slice(2);
const delay = Number(d);
const HIGH = 4 * 1024 * 1024;

function pipeDelayed(from, to) {
  let pending = 0;
  from.on('data', (chunk) => {
    pending += chunk.length;
    if (pending + to.writableLength > HIGH) from.pause();
    setTimeout(() => {
      pending -= chunk.length;
      if (!to.destroyed) to.write(chunk);
      if (from.isPaused() && pending + to.writableLength <= HIGH) from.resume();
    }, delay);
  });
  to.on('drain', () => {
    if (pending + to.writableLength <= HIGH) from.resume();
  });
  from.on('end', () => setTimeout(() => to.end(), delay + 1));
  from.on('error', () => to.destroy());
}

const server = createServer((client) => {
  const upstream = connect(Number(tp), th);
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  pipeDelayed(client, upstream);
  pipeDelayed(upstream, client);
  upstream.on('error', () => client.destroy());
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => setTimeout(() => client.destroy(), delay + 5));
});
server.listen(Number(lp), lh, () => process.stdout.write('listening\n'));
process.on('SIGTERM', () => process.exit(0));
