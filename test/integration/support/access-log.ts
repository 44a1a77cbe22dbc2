/**
 * The test registry's access log (docker-registry, Apache combined format) as records:
 *
 *   127.0.0.1 - - [22/Nov/2026:08:00:00 +0000] "GET /v2/it/app/blobs/sha256:ab… HTTP/1.1" 206 1048576 "" "lazy-als/0.1"
 *
 * The size is the response body actually sent. The log is the witness for "which bytes did the
 * store fetch": the store identifies itself as `lazy-als/…`. Use `mark()` / `since(mark)` to look
 * only at requests made after a point in a test.
 */
import { readFileSync, statSync } from 'node:fs';

export interface AccessRecord {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly bytes: number;
  readonly userAgent: string;
}

const LINE = /^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"/;

export function logMark(logPath: string): number {
  return statSync(logPath).size;
}

export function accessSince(logPath: string, mark = 0): AccessRecord[] {
  const text = readFileSync(logPath).subarray(mark).toString('utf8');
  const out: AccessRecord[] = [];
  for (const l of text.split('\n')) {
    if (l.includes('level=')) continue;
    const m = LINE.exec(l);
    if (!m) continue;
    out.push({ method: m[1]!, path: m[2]!, status: Number(m[3]), bytes: m[4] === '-' ? 0 : Number(m[4]), userAgent: m[5]! });
  }
  return out;
}

/** GETs of one blob by the store. */
export function storeBlobGets(records: readonly AccessRecord[], digest: string): AccessRecord[] {
  return records.filter((r) => r.method === 'GET' && r.path.includes(`/blobs/${digest}`) && /^lazy-als\//.test(r.userAgent));
}
