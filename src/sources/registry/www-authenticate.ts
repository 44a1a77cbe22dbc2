/**
 * WWW-Authenticate parsing (RFC 9110 §11.6.1 challenges as registries send them):
 * `Bearer realm="https://auth/token",service="reg",scope="repository:a/b:pull,push", Basic realm="x"`.
 * Quoted strings may contain commas and backslash escapes; several challenges may share one header.
 */
export interface Challenge {
  /** Lower-cased scheme: "bearer", "basic", ... */
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/;

export function parseWwwAuthenticate(header: string | readonly string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const text = typeof header === 'string' ? header : header.join(', ');
  const out: Challenge[] = [];
  let i = 0;
  let current: { scheme: string; params: Record<string, string> } | undefined;
  const skipWs = (): void => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i++;
  };
  while (i < text.length) {
    skipWs();
    if (text[i] === ',') {
      i++;
      continue;
    }
    const m = TOKEN.exec(text.slice(i));
    if (!m) break; // garbage: keep what we have
    const word = m[0];
    i += word.length;
    skipWs();
    if (text[i] === '=') {
      // auth-param of the current challenge
      i++;
      skipWs();
      let value = '';
      if (text[i] === '"') {
        i++;
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\' && i + 1 < text.length) i++;
          value += text[i];
          i++;
        }
        i++; // closing quote
      } else {
        const v = TOKEN.exec(text.slice(i));
        value = v ? v[0] : '';
        i += value.length;
      }
      if (current) current.params[word.toLowerCase()] = value;
    } else {
      // a new scheme (possibly followed by params or token68, which we do not need)
      current = { scheme: word.toLowerCase(), params: {} };
      out.push(current);
    }
  }
  return out;
}
