#!/usr/bin/env node
// Fails when a line in src/ is longer than the limit (issue 12): wrap it by hand where it reads best.
// Biome's formatter is off project-wide, so this is the only line-length rule.
// Usage: node scripts/line-lengths.mjs [--max N] [dir…]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const args = process.argv.slice(2);
const at = args.indexOf('--max');
const max = at < 0 ? 160 : Number(args.splice(at, 2)[1]);
const roots = args.length > 0 ? args : ['src'];

function* tsFiles(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* tsFiles(path);
    else if (name.endsWith('.ts')) yield path;
  }
}

let failing = 0;
for (const root of roots) {
  for (const file of tsFiles(root)) {
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        // Code points, not UTF-16 units: "→" is one character to the reader.
        const length = [...line].length;
        if (length <= max) return;
        failing++;
        console.log(`${String(length).padStart(4)}  ${relative('.', file)}:${i + 1}`);
      });
  }
}
if (failing > 0) {
  console.error(`line-lengths: ${failing} line(s) over ${max} characters: wrap them`);
  process.exit(1);
}
