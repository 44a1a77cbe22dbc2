/**
 * A FAKE byte relay in front of the real registry, to make "the registry died in the middle of a
 * response" happen at a known moment (a real registry cannot be killed at a chosen byte). It passes
 * bytes through unchanged until armed; once armed, the first response to relay more than
 * `afterBytes` further bytes is held back from the client (`stalled` resolves), and stays held until
 * the upstream side closes — which is what the client sees when the registry is killed mid-body.
 * It is one-shot: connections made after that relay normally (for the "registry is back" step).
 */
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export interface StallRelay {
  readonly host: string;
  readonly url: string;
  /** Hold the next response once it has relayed `afterBytes` more bytes. */
  arm(afterBytes: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startStallRelay(upstreamPort: number): Promise<StallRelay> {
  const sockets = new Set<Socket>();
  let armed: { left: number; fire: () => void } | undefined;
  const server = createServer((client) => {
    sockets.add(client);
    const up = connect(upstreamPort, '127.0.0.1');
    sockets.add(up);
    let held = false;
    client.on('data', (d) => up.write(d));
    up.on('data', (d: Buffer) => {
      if (held) return;
      if (armed) {
        if (d.length > armed.left) {
          client.write(d.subarray(0, armed.left));
          held = true;
          const fire = armed.fire;
          armed = undefined;
          fire();
          return;
        }
        armed.left -= d.length;
      }
      client.write(d);
    });
    const close = (): void => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    up.on('close', close);
    up.on('error', close);
    client.on('close', close);
    client.on('error', close);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    url: `http://${host}`,
    arm: (afterBytes) => new Promise<void>((fire) => (armed = { left: afterBytes, fire })),
    stop: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
