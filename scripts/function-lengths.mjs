#!/usr/bin/env node
// Lists the functions in src/ by length (lines from signature to closing brace, nested functions included)
// and fails when one is over the limit: long functions are where the next reader stumbles (issue 12).
// Usage: node scripts/function-lengths.mjs [--max N] [--top N] [dir…]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(args[at + 1]);
  args.splice(at, 2);
  return value;
};
const max = option('--max', 80);
const top = option('--top', 0);
const roots = args.length > 0 ? args : ['src'];

function* tsFiles(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* tsFiles(path);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) yield path;
  }
}

function nameOf(node, source) {
  if (node.name) return node.name.getText(source);
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if (parent && (ts.isVariableDeclaration(parent) || ts.isPropertyDeclaration(parent) || ts.isPropertyAssignment(parent))) {
    return parent.name.getText(source);
  }
  return '(anonymous)';
}

const found = [];
for (const root of roots) {
  for (const file of tsFiles(root)) {
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    const visit = (node) => {
      if (ts.isFunctionLike(node) && node.body) {
        const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
        const last = source.getLineAndCharacterOfPosition(node.getEnd()).line;
        found.push({ file: relative('.', file), line: first + 1, name: nameOf(node, source), lines: last - first + 1 });
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
}

found.sort((a, b) => b.lines - a.lines);
const failing = found.filter((f) => f.lines >= max);
for (const f of top > 0 ? found.slice(0, top) : failing) {
  console.log(`${String(f.lines).padStart(4)}  ${f.file}:${f.line}  ${f.name}`);
}
if (failing.length > 0) {
  console.error(`function-lengths: ${failing.length} function(s) of ${max} lines or more: split them by responsibility`);
  process.exit(1);
}
