/**
 * The catalog's name for one store path `<root>[/<refElem>]/<key>`: the raw ref element (or none, for
 * a store configured without `:ref`) and the key, joined by a NUL (which neither can contain).
 */
declare const layerIdBrand: unique symbol;
export type LayerId = string & { readonly [layerIdBrand]: true };

const SEP = '\u0000';

export function layerIdOf(refElem: string | undefined, key: string): LayerId {
  return `${refElem ?? ''}${SEP}${key}` as LayerId;
}

export function splitLayerId(id: LayerId): { refElem: string | undefined; key: string } {
  const i = id.indexOf(SEP);
  const r = id.slice(0, i);
  return { refElem: r === '' ? undefined : r, key: id.slice(i + 1) };
}

/** `ref/key` for log lines. */
export function layerIdText(id: LayerId): string {
  return id.replace(SEP, '/');
}
