/**
 * How the e2e benchmarks hand figures to bench/run.mjs: one stdout line per figure,
 *   RESULT {"group":…,"name":…,"value":…,"baseline":…,"unit":…,"ratio":…,"note":…}
 * `ratio` is value / baseline, both measured in the same run (for times: < 1 means the store is
 * faster than the baseline). Plain numbers without a baseline (bytes fetched, RSS) leave it out.
 */
export interface Figure {
  group: string;
  name: string;
  value: number;
  unit: string;
  baseline?: number;
  baselineName?: string;
  note?: string;
}

export function report(f: Figure): void {
  const ratio = f.baseline !== undefined && f.baseline > 0 ? +(f.value / f.baseline).toFixed(3) : undefined;
  console.log(`RESULT ${JSON.stringify({ ...f, value: round(f.value), ...(f.baseline !== undefined ? { baseline: round(f.baseline) } : {}), ...(ratio !== undefined ? { ratio } : {}) })}`);
}

function round(n: number): number {
  return Math.abs(n) >= 100 ? Math.round(n) : +n.toFixed(3);
}

export async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const r = await f();
  return [performance.now() - t, r];
}

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}
