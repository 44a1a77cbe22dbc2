#!/usr/bin/env node
// Where the time goes in a `node --cpu-prof` profile (the daemon's, from BENCH_CPU_PROF=DIR):
//
//   node bench/profile-summary.mjs FILE.cpuprofile [FROM_US TO_US] [--top N]
//
// FROM_US/TO_US: a window on the profile's monotonic clock (the cold-read bench prints it as
// "profile window (µs, monotonic)"); without it the whole profile counts. Prints, for the samples
// inside the window: wall time covered, idle, GC, and
//   - by project module: each sample is charged to the nearest project frame on its stack
//     (dist/<folder>/<file>.js), so node:crypto's hashing called from object-store.js counts as
//     object-store.js; samples with no project frame go to their own top frame's package/module;
//   - the top functions by self time.
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const TOP = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
const [file, fromArg, toArg] = args;
if (!file) {
  console.error('usage: profile-summary.mjs FILE.cpuprofile [FROM_US TO_US] [--top N]');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(file, 'utf8'));
const from = fromArg ? Number(fromArg) : -Infinity;
const to = toArg ? Number(toArg) : Infinity;

const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

function where(cf) {
  const u = cf.url ?? '';
  const m = /\/dist\/(.+?\.js)$/.exec(u);
  if (m) return { project: true, name: m[1] };
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm) return { project: false, name: nm[1] };
  if (u.startsWith('node:')) return { project: false, name: u };
  if (!u) return { project: false, name: cf.functionName ? `(native) ${cf.functionName}` : '(native)' };
  return { project: false, name: u.replace(/^file:\/\//, '') };
}

const self = new Map();
const charged = new Map();
let total = 0;
let t = prof.startTime;
for (let i = 0; i < prof.samples.length; i++) {
  t += prof.timeDeltas[i] ?? 0;
  const dt = prof.timeDeltas[i + 1] ?? 0; // a sample covers the time until the next one
  if (t < from || t > to) continue;
  total += dt;
  const leaf = byId.get(prof.samples[i]);
  const cf = leaf.callFrame;
  const key = `${cf.functionName || '(anonymous)'} ${where(cf).name}:${cf.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + dt);
  let bucket;
  if (['(idle)', '(garbage collector)', '(program)'].includes(cf.functionName)) bucket = cf.functionName;
  else {
    for (let id = leaf.id; id !== undefined; id = parent.get(id)) {
      const w = where(byId.get(id).callFrame);
      if (w.project) {
        bucket = w.name;
        break;
      }
    }
    bucket ??= `[no project frame] ${where(cf).name}`;
  }
  charged.set(bucket, (charged.get(bucket) ?? 0) + dt);
}

const ms = (us) => (us / 1000).toFixed(0).padStart(7);
const pct = (us) => ((100 * us) / total).toFixed(1).padStart(5);
console.log(`${file}\nwindow ${Number.isFinite(from) ? `${from}..${to} µs` : 'whole profile'}: ${ms(total)} ms sampled`);
console.log('\n  ms      %   charged to (nearest project frame)');
for (const [k, v] of [...charged].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`${ms(v)} ${pct(v)}  ${k}`);
console.log('\n  ms      %   self time (function, module:line)');
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`${ms(v)} ${pct(v)}  ${k}`);
