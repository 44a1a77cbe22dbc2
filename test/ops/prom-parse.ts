/**
 * Parse Prometheus text exposition with the REAL parser of the Prometheus project's Python client
 * (Debian's python3-prometheus-client, `text_string_to_metric_families`): what a scraper accepts.
 * Throws when the text does not parse.
 */
import { spawn } from 'node:child_process';

export interface PromSample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}
export interface PromFamily {
  readonly name: string;
  readonly type: string;
  readonly help: string;
  readonly samples: PromSample[];
}

const SCRIPT = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
`;

export function parseProm(text: string): Promise<PromFamily[]> {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/python3', ['-c', SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as PromFamily[]) : reject(new Error(`prometheus parser rejected the text (${code}): ${err}`))));
    p.stdin.end(text);
  });
}

/** Sum of the samples named `name` whose labels include `match`. */
export function sum(fams: readonly PromFamily[], name: string, match: Record<string, string> = {}): number {
  let n = 0;
  for (const f of fams) for (const s of f.samples) if (s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)) n += s.value;
  return n;
}
