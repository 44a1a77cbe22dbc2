/**
 * A fixed-size pool of worker threads running one module, with request/reply by id: the plumbing the
 * chunk decoder and the object writer share. The pool keeps each worker's load (requests in flight),
 * so callers can pick the least-loaded ones; it keeps a worker referenced only while it has work (an
 * idle pool never holds the process open); and when a worker fails or exits, every request it had in
 * flight is rejected and the worker is replaced on the next pick (unless the pool is closed).
 *
 * What a request holds and how work is split is the caller's: the pool adds one small envelope
 * (`{ id, req }`) per message, no copy and no promise beyond the one the caller awaits.
 *
 * The worker side is `serveWorker(flag, handle)` at the top level of the same module: it does nothing
 * except in a worker this pool started for that module (the flag travels in workerData).
 */
import { isMainThread, parentPort, type Transferable, Worker, workerData } from 'node:worker_threads';

/** One worker and its requests in flight. */
export interface PoolSlot {
  readonly worker: Worker;
  load: number;
}

type Envelope<Req> = { readonly id: number; readonly req: Req };
type ReplyEnvelope<Rep> = { readonly id: number; readonly rep: Rep } | { readonly id: number; readonly crash: string };

interface Waiting<Rep> {
  readonly resolve: (r: Rep) => void;
  readonly reject: (e: unknown) => void;
  readonly slot: PoolSlot;
}

export interface WorkerPoolOptions {
  /** The module the workers run (its `import.meta.url`); it calls serveWorker with the same flag. */
  readonly script: URL;
  /** The workerData key that tells the module it runs as this pool's worker. */
  readonly flag: string;
  /** Workers to keep (0: none; callers then do the work in process). */
  readonly size: number;
  /** Names the worker in errors ("decode worker exited with code 1"). */
  readonly name: string;
}

export class WorkerPool<Req, Rep> {
  readonly #o: WorkerPoolOptions;
  readonly #size: number;
  readonly #slots: PoolSlot[] = [];
  readonly #waiting = new Map<number, Waiting<Rep>>();
  #nextId = 0;
  #closed = false;

  /** Workers are started now (when they can run), so the first request does not wait for their modules to load. */
  constructor(o: WorkerPoolOptions) {
    this.#o = o;
    this.#size = WorkerPool.canRun(o.script) ? Math.max(0, o.size) : 0;
    for (let i = 0; i < this.#size; i++) this.#spawn();
  }

  /** Whether a module can run as a worker (not when loaded from TypeScript sources under a test runner). */
  static canRun(script: URL): boolean {
    return /\.m?js$/.test(script.pathname);
  }

  /** False once closed, or when the pool has no workers to run (size 0, or running from sources). */
  get running(): boolean {
    return !this.#closed && this.#size > 0;
  }

  /** Workers alive now. */
  get threads(): number {
    return this.#slots.length;
  }

  /** Up to `max` (at least one) live workers, least loaded first; failed workers are replaced first. */
  lightest(max: number): PoolSlot[] {
    if (!this.#closed) while (this.#slots.length < this.#size) this.#spawn();
    const n = Math.max(1, Math.min(this.#slots.length, max));
    return [...this.#slots].sort((a, b) => a.load - b.load).slice(0, n);
  }

  /** Post `req` to the worker of `slot`; settles with its reply, or rejects if the handler threw or the worker died. */
  send(slot: PoolSlot, req: Req, transfer?: readonly Transferable[]): Promise<Rep> {
    const id = this.#nextId++;
    return new Promise<Rep>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject, slot });
      if (slot.load++ === 0) slot.worker.ref();
      slot.worker.postMessage({ id, req } satisfies Envelope<Req>, transfer);
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#slots.splice(0).map((s) => s.worker.terminate()));
  }

  #spawn(): void {
    const slot: PoolSlot = { worker: new Worker(this.#o.script, { workerData: { [this.#o.flag]: true } }), load: 0 };
    slot.worker.unref();
    slot.worker.on('message', (r: ReplyEnvelope<Rep>) => this.#onReply(r));
    const fail = (e: unknown): void => this.#fail(slot, e);
    slot.worker.on('error', fail);
    slot.worker.on('exit', (code) => fail(new Error(`${this.#o.name} exited with code ${code}`)));
    this.#slots.push(slot);
  }

  #onReply(r: ReplyEnvelope<Rep>): void {
    const p = this.#waiting.get(r.id);
    if (!p) return;
    this.#waiting.delete(r.id);
    if (--p.slot.load === 0) p.slot.worker.unref();
    if ('crash' in r) p.reject(new Error(r.crash));
    else p.resolve(r.rep);
  }

  #fail(slot: PoolSlot, e: unknown): void {
    const i = this.#slots.indexOf(slot);
    if (i >= 0) this.#slots.splice(i, 1);
    for (const [id, p] of this.#waiting) {
      if (p.slot !== slot) continue;
      this.#waiting.delete(id);
      p.reject(e);
    }
  }
}

/**
 * The worker side: when this thread is a worker started with `flag`, answer each request with
 * `handle`'s result (or, if it throws or rejects, a crash reply that rejects the caller's promise).
 * A synchronous handler is answered without a promise.
 */
export function serveWorker<Req, Rep>(flag: string, handle: (req: Req) => Rep | Promise<Rep>): void {
  if (isMainThread || (workerData as Record<string, unknown> | null)?.[flag] !== true) return;
  const port = parentPort!;
  const crash = (id: number, e: unknown): void => port.postMessage({ id, crash: e instanceof Error ? e.message : String(e) } satisfies ReplyEnvelope<Rep>);
  port.on('message', ({ id, req }: Envelope<Req>) => {
    let rep: Rep | Promise<Rep>;
    try {
      rep = handle(req);
    } catch (e) {
      crash(id, e);
      return;
    }
    if (rep instanceof Promise) rep.then((r) => port.postMessage({ id, rep: r } satisfies ReplyEnvelope<Rep>), (e: unknown) => crash(id, e));
    else port.postMessage({ id, rep } satisfies ReplyEnvelope<Rep>);
  });
}
