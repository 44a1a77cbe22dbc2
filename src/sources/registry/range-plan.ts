/**
 * Turning a caller's list of byte ranges into few HTTP ranges. Ranges are sorted and merged when
 * they overlap or the gap between them is at most `gapBytes` (fetching a small gap is cheaper than
 * another range or round trip). Each requested range is then a slice of exactly one merged range.
 */
import type { ByteRange } from '../../core/blob.js';

export interface MergedRange {
  readonly offset: number;
  readonly length: number;
}

export interface RangePlan {
  readonly merged: readonly MergedRange[];
  /** For requested range i: which merged range holds it, and where inside it. */
  readonly slices: ReadonlyArray<{ readonly merged: number; readonly start: number; readonly length: number }>;
}

export function planRanges(ranges: readonly ByteRange[], gapBytes: number): RangePlan {
  const order = ranges.map((_r, i) => i).filter((i) => ranges[i]!.length > 0);
  order.sort((a, b) => ranges[a]!.offset - ranges[b]!.offset);
  const merged: { offset: number; end: number }[] = [];
  const owner = new Array<number>(ranges.length).fill(-1);
  for (const i of order) {
    const r = ranges[i]!;
    const last = merged[merged.length - 1];
    if (last && r.offset <= last.end + gapBytes) {
      last.end = Math.max(last.end, r.offset + r.length);
    } else {
      merged.push({ offset: r.offset, end: r.offset + r.length });
    }
    owner[i] = merged.length - 1;
  }
  const slices = ranges.map((r, i) => {
    const m = owner[i]!;
    if (m < 0) return { merged: -1, start: 0, length: 0 };
    return { merged: m, start: r.offset - merged[m]!.offset, length: r.length };
  });
  return { merged: merged.map((m) => ({ offset: m.offset, length: m.end - m.offset })), slices };
}

/** `bytes=a-b,c-d` for inclusive HTTP ranges. */
export function rangeHeader(ranges: readonly MergedRange[]): string {
  return 'bytes=' + ranges.map((r) => `${r.offset}-${r.offset + r.length - 1}`).join(',');
}

export interface ContentRange {
  readonly first: number;
  /** Inclusive. */
  readonly last: number;
  /** Total blob size, undefined for "*". */
  readonly total: number | undefined;
}

export function parseContentRange(v: string | undefined): ContentRange | undefined {
  if (v === undefined) return undefined;
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(v);
  if (!m) return undefined;
  const first = Number(m[1]);
  const last = Number(m[2]);
  const total = m[3] === '*' ? undefined : Number(m[3]);
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || last < first) return undefined;
  if (total !== undefined && (!Number.isSafeInteger(total) || last >= total)) return undefined;
  return { first, last, total };
}
