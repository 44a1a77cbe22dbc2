/**
 * Reads the access log of a test registry (test/helpers/registry.ts: docker-registry 2.8 with
 * `accesslog` on) and answers "which blob digests were fetched, by whom, and how many bytes".
 *
 * The access log is the only witness the tests trust for "podman did not download this layer":
 * podman (c/image) identifies itself as `containers/<c/image version> (github.com/containers/image)`
 * and lazy-als as `lazy-als/<version>`, so the two are told apart by User-Agent. Lines look like
 * (Apache combined format, one per request; lines with `level=` are the app log, not requests):
 *
 *   127.0.0.1 - - [22/Nov/2025:07:50:00 +0000] "GET /v2/e2e/feat/blobs/sha256:ab… HTTP/1.1" 206 65536 "" "lazy-als/0.1"
 *
 * The size field is the bytes of the response body actually sent, so the sum over a client's
 * blob GETs is what that client pulled over the network (Range requests answer 206 with the range).
 * Use a cursor (`mark()`) to look only at the requests made after a point in a test.
 */
import { readFileSync, statSync } from 'node:fs';

export interface AccessEntry {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** Response body bytes sent (0 when the log says "-"). */
  readonly bytes: number;
  readonly userAgent: string;
  /** Repository name for /v2/<repo>/(blobs|manifests)/… requests. */
  readonly repo: string | undefined;
  readonly kind: 'blob' | 'manifest' | 'other';
  /** Blob digest or manifest reference (tag or digest). */
  readonly target: string | undefined;
}

/** podman, skopeo and buildah (containers/image). */
export const PODMAN_AGENT = /^containers\//;
/** The store. */
export const LAZY_ALS_AGENT = /^lazy-als\//;

const LINE = /^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"/;
const V2 = /^\/v2\/(.+)\/(blobs|manifests)\/([^/?]+)(?:\?.*)?$/;

export function parseAccessLine(line: string): AccessEntry | undefined {
  if (line.includes('level=')) return undefined;
  const m = LINE.exec(line);
  if (!m) return undefined;
  const [, method = '', path = '', status = '0', bytes = '-', userAgent = ''] = m;
  const v = V2.exec(path);
  const kind = v ? (v[2] === 'blobs' ? 'blob' : 'manifest') : 'other';
  return {
    method,
    path,
    status: Number(status),
    bytes: bytes === '-' ? 0 : Number(bytes),
    userAgent,
    repo: v?.[1],
    kind,
    target: v?.[3] === undefined ? undefined : decodeURIComponent(v[3]),
  };
}

export function parseAccessLog(text: string): AccessEntry[] {
  const out: AccessEntry[] = [];
  for (const l of text.split('\n')) {
    const e = parseAccessLine(l);
    if (e) out.push(e);
  }
  return out;
}

/** Reads the log from a byte offset on (0: the whole log). */
export function readAccessLog(logPath: string, fromOffset = 0): AccessEntry[] {
  const buf = readFileSync(logPath);
  return parseAccessLog(buf.subarray(fromOffset).toString('utf8'));
}

export interface AgentFilter {
  readonly agent?: RegExp;
  readonly method?: string;
}

function pick(entries: readonly AccessEntry[], kind: AccessEntry['kind'], f: AgentFilter): AccessEntry[] {
  return entries.filter((e) => e.kind === kind && (f.method ?? 'GET') === e.method && (!f.agent || f.agent.test(e.userAgent)));
}

/** Digests of blobs GET by matching clients (successful or not), in log order, de-duplicated. */
export function blobGets(entries: readonly AccessEntry[], f: AgentFilter = {}): string[] {
  return [...new Set(pick(entries, 'blob', f).map((e) => e.target ?? ''))];
}

/** Body bytes of blob GETs by matching clients, per digest. */
export function blobBytes(entries: readonly AccessEntry[], f: AgentFilter = {}): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of pick(entries, 'blob', f)) m.set(e.target ?? '', (m.get(e.target ?? '') ?? 0) + e.bytes);
  return m;
}

export function totalBlobBytes(entries: readonly AccessEntry[], f: AgentFilter = {}): number {
  let n = 0;
  for (const v of blobBytes(entries, f).values()) n += v;
  return n;
}

export function manifestGets(entries: readonly AccessEntry[], f: AgentFilter = {}): string[] {
  return pick(entries, 'manifest', f).map((e) => e.target ?? '');
}

/** A position in a registry's access log; `since()` returns the requests logged after it. */
export class LogCursor {
  #offset: number;
  constructor(readonly logPath: string) {
    this.#offset = sizeOf(logPath);
  }
  /** Move the cursor to the current end of the log. */
  mark(): void {
    this.#offset = sizeOf(this.logPath);
  }
  since(): AccessEntry[] {
    return readAccessLog(this.logPath, this.#offset);
  }
}

function sizeOf(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
}
