/**
 * How the benchmarks hand figures to bench/run.mjs, and what they share:
 *   RESULT {"group":…,"name":…,"value":…,"baseline":…,"unit":…,"ratio":…,"goal":…,"row":…,"note":…}
 *   SKIP {"row":…,"subject":…,"why":…}      (an issue-table row this run could not measure, and why)
 * `ratio` is value / baseline, both measured in the same run (for times: < 1 means the store is
 * faster than the baseline). Plain numbers without a baseline (bytes fetched, RSS) leave it out.
 * `row` names a row of issue 11's table (bench/goals.json, where its goal lives): run.mjs prints
 * those rows side by side with the reference store's figure (subject 'reference') and the goal.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { spawnCollect } from '../../test/helpers/podman.js';

export type Subject = 'lazy-als' | 'reference';

export interface Figure {
  group: string;
  name: string;
  value: number;
  unit: string;
  baseline?: number;
  baselineName?: string;
  note?: string;
  /** The issue-11 row this figure measures (bench/goals.json); its goal comes from there. */
  row?: string;
  /** Who was measured (default lazy-als); 'reference' = stargz-store, the reference store. */
  subject?: Subject;
}

interface GoalRow {
  row: string;
  label: string;
  goal: number;
}

const GOALS: readonly GoalRow[] = (JSON.parse(readFileSync(new URL('../goals.json', import.meta.url), 'utf8')) as { issue11: GoalRow[] }).issue11;

/** The goal of an issue-11 row (bench/goals.json); throws for a row that is not there. */
export function goalOf(row: string): number {
  const g = GOALS.find((r) => r.row === row);
  if (!g) throw new Error(`bench/goals.json has no row ${row}`);
  return g.goal;
}

export function report(f: Figure): void {
  const ratio = f.baseline !== undefined && f.baseline > 0 ? +(f.value / f.baseline).toFixed(3) : undefined;
  const goal = f.row !== undefined ? goalOf(f.row) : undefined;
  const out = {
    ...f,
    value: round(f.value),
    ...(f.baseline !== undefined ? { baseline: round(f.baseline) } : {}),
    ...(ratio !== undefined ? { ratio } : {}),
    ...(goal !== undefined ? { goal } : {}),
  };
  console.log(`RESULT ${JSON.stringify(out)}`);
}

/** An issue-11 row this run could not measure (reference store absent, no netns, …), and why. */
export function skip(row: string, why: string, subject: Subject = 'lazy-als'): void {
  goalOf(row);
  console.log(`SKIP ${JSON.stringify({ row, subject, why })}`);
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

export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** BENCH_REPEAT (default 3): how many times a benchmark repeats its measurement (medians). */
export const REPEAT = Number(process.env['BENCH_REPEAT'] ?? 3);

/** Sequential read of a whole file (1 MiB reads); returns the byte count. */
export async function readAll(path: string): Promise<number> {
  let n = 0;
  for await (const c of createReadStream(path, { highWaterMark: 1024 * 1024 })) n += (c as Buffer).length;
  return n;
}

/** sync + drop the kernel's page, dentry and inode caches (best effort: needs root). */
export async function dropCaches(): Promise<void> {
  await spawnCollect(['sync']);
  await writeFile('/proc/sys/vm/drop_caches', '3\n').catch(() => undefined);
}

/** `curl` of a whole URL to /dev/null, timed (ms). */
export async function curlMs(url: string, pre: readonly string[] = []): Promise<number> {
  const [ms] = await timed(async () => {
    const r = await spawnCollect([...pre, 'curl', '-sf', '-o', '/dev/null', url]);
    if (r.code !== 0) throw new Error(`curl ${url}: exit ${r.code}: ${r.stderr}`);
  });
  return ms;
}

/**
 * argv prefix running the store daemon under `node --cpu-prof` into BENCH_CPU_PROF (node refuses
 * --cpu-prof in NODE_OPTIONS: a tiny exec wrapper puts it on the command line); undefined without it.
 */
export function cpuProfWrap(): string[] | undefined {
  const dir = process.env['BENCH_CPU_PROF'];
  return dir ? ['sh', '-c', `exec "$0" --cpu-prof --cpu-prof-dir=${dir} "$@"`] : undefined;
}

/** The entry point of a benchmark: runs main, exits 0, or prints the error and exits 1. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
