/**
 * The one RFC 3339 parser: timestamps as Go's time.Time marshals them into a TOC (eStargz `modtime`,
 * zstd:chunked `modtime`/`accesstime`/`changetime`: `2023-11-14T22:13:20Z`,
 * `2023-11-14T23:13:20.123456789+01:00`) → seconds since the epoch + nanoseconds, with Go's
 * time.Parse rules (any number of fraction digits, kept to the nanosecond; second 60 rejected).
 * Integer calendar arithmetic (no Date, which maps years 0–99 to 19xx and drops nanoseconds).
 */
const RE = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function daysInMonth(y: number, m: number): number {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(m) ? 30 : 31;
}

export function parseRfc3339(s: string): { sec: number; nsec: number } | undefined {
  const m = RE.exec(s);
  if (!m) return undefined;
  const [y, mo, d, h, mi, se] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo) || h > 23 || mi > 59 || se > 59) return undefined;
  let offset = 0;
  if (m[9] !== undefined) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) return undefined;
    offset = (m[9] === '-' ? -1 : 1) * (oh * 3600 + om * 60);
  }
  // Go keeps nanosecond precision and drops further digits.
  const nsec = m[7] !== undefined ? Number(m[7].slice(0, 9).padEnd(9, '0')) : 0;
  const sec = daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset;
  return { sec, nsec };
}
