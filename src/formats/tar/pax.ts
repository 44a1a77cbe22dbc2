/**
 * PAX extended header records: "<len> <key>=<value>\n", len = decimal length of the whole record
 * including its own digits (docs/formats.md §1.2). Values are raw bytes (xattr values are binary).
 * Strict: every record must be well-formed and exactly fill the payload (trailing NUL padding aside).
 */
import { FormatError } from '../errors.js';

export interface PaxRecord {
  readonly key: string;
  readonly value: Buffer;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function parsePaxRecords(buf: Buffer, entry: string): PaxRecord[] {
  const out: PaxRecord[] = [];
  let pos = 0;
  const bad = (why: string): never => {
    throw new FormatError('TAR_INVALID', `malformed PAX record at ${pos}: ${why}`, { entry });
  };
  while (pos < buf.length) {
    // Some writers pad the payload with NULs; only allowed once no record follows.
    if (buf[pos] === 0) {
      for (let i = pos; i < buf.length; i++) if (buf[i] !== 0) bad('data after NUL padding');
      break;
    }
    let i = pos;
    let len = 0;
    while (i < buf.length && buf[i]! >= 0x30 && buf[i]! <= 0x39 && i - pos < 10) len = len * 10 + (buf[i++]! - 0x30);
    if (i === pos || buf[i] !== 0x20) bad('bad length');
    const end = pos + len;
    if (len <= i - pos + 1 || end > buf.length) bad('length out of range');
    if (buf[end - 1] !== 0x0a) bad('missing newline');
    const eq = buf.indexOf(0x3d, i + 1);
    if (eq < 0 || eq >= end - 1 || eq === i + 1) bad('missing key');
    let key: string;
    try {
      key = utf8.decode(buf.subarray(i + 1, eq));
    } catch {
      return bad('key is not UTF-8');
    }
    out.push({ key, value: Buffer.from(buf.subarray(eq + 1, end - 1)) });
    pos = end;
  }
  return out;
}

/** A PAX decimal integer (size, uid, gid). */
export function paxInt(v: Buffer, key: string, entry: string): number {
  const s = v.toString('latin1');
  if (!/^\d{1,16}$/.test(s) || !Number.isSafeInteger(Number(s))) {
    throw new FormatError('TAR_INVALID', `bad PAX ${key} ${JSON.stringify(s.slice(0, 40))}`, { entry });
  }
  return Number(s);
}

/** A PAX time "[-]sec[.frac]" → [sec, nsec] with nsec in [0, 1e9) (floor semantics for negatives). */
export function paxTime(v: Buffer, key: string, entry: string): [number, number] {
  const s = v.toString('latin1');
  const m = /^(-?)(\d{1,15})(?:\.(\d+))?$/.exec(s);
  if (!m) throw new FormatError('TAR_INVALID', `bad PAX ${key} ${JSON.stringify(s.slice(0, 40))}`, { entry });
  const neg = m[1] === '-';
  let sec = Number(m[2]);
  let nsec = Number(((m[3] ?? '') + '000000000').slice(0, 9));
  if (neg) {
    sec = -sec;
    if (nsec > 0) {
      sec -= 1;
      nsec = 1_000_000_000 - nsec;
    }
  }
  return [sec, nsec];
}
