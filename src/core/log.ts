/**
 * Structured logs: one JSON object per line on stderr (or a given stream), quiet by default;
 * or, for a person at a terminal, the same record as one readable line (`text`).
 * No global logger: create one at the edge (CLI/daemon) and pass it down.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export interface LogSink {
  write(line: string): unknown;
}

/** `json`: one object per line (journald, scripts); `text`: `HH:MM:SS.mmm LEVEL event key=value…`. */
export type LogLineFormat = 'json' | 'text';

export function createLogger(
  level: LogLevel = 'warn',
  sink: LogSink = process.stderr,
  base: Record<string, unknown> = {},
  format: LogLineFormat = 'json',
): Logger {
  const min = ORDER[level];
  const emit = (lvl: Exclude<LogLevel, 'silent'>, event: string, fields?: Record<string, unknown>): void => {
    if (ORDER[lvl] < min) return;
    const rec: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, event, ...base };
    if (fields) for (const [k, v] of Object.entries(fields)) rec[k] = serializable(v);
    sink.write((format === 'text' ? textLine(rec) : JSON.stringify(rec)) + '\n');
  };
  return {
    debug: (e, f) => emit('debug', e, f),
    info: (e, f) => emit('info', e, f),
    warn: (e, f) => emit('warn', e, f),
    error: (e, f) => emit('error', e, f),
    child: (f) => createLogger(level, sink, { ...base, ...f }, format),
  };
}

/** A logger that drops everything (tests, library defaults). */
export const silentLogger: Logger = createLogger('silent');

function serializable(v: unknown): unknown {
  if (v instanceof Error) {
    const o: Record<string, unknown> = { name: v.name, message: v.message };
    const code = (v as { code?: unknown }).code;
    if (code !== undefined) o['code'] = code;
    const ctx = (v as { context?: unknown }).context;
    if (ctx !== undefined) o['context'] = ctx;
    return o;
  }
  if (typeof v === 'bigint') return v.toString();
  return v;
}

/** One readable line: local time, level, event, then key=value (strings quoted when needed). */
function textLine(rec: Record<string, unknown>): string {
  const { time, level, event, pid: _pid, ...rest } = rec;
  const d = new Date(String(time));
  const two = (v: number): string => String(v).padStart(2, '0');
  const hms = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
  const parts = [hms, String(level).toUpperCase().padEnd(5), String(event)];
  for (const [k, v] of Object.entries(rest)) {
    let t: string;
    if (v !== null && typeof v === 'object') {
      const e = v as { code?: unknown; message?: unknown };
      t = typeof e.message === 'string' ? `${e.code !== undefined ? `${String(e.code)}: ` : ''}${e.message}` : JSON.stringify(v);
    } else t = String(v);
    parts.push(`${k}=${/^[^\s"=]+$/.test(t) ? t : JSON.stringify(t)}`);
  }
  return parts.join(' ');
}
