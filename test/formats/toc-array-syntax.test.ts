import { describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/core/digest.js';
import { parseToc } from '../../src/formats/estargz/toc.js';
import { splitTopLevelArray } from '../../src/formats/json-count.js';
import { VerifiedToc } from '../../src/formats/verified-toc.js';

// The eStargz TOC is parsed one entry at a time when the splitter recognises the "entries" array;
// its own syntax must then be exactly JSON's, or the store would serve a TOC that Go's
// encoding/json (stargz-snapshotter, c/storage) refuses.
const A = '{"name":"a","type":"reg","size":0,"mode":420}';
const B = '{"name":"b","type":"reg","size":0,"mode":420}';
const tocOf = (entries: string): Buffer => Buffer.from(`{"version":1,"entries":${entries}}`);
const parse = (text: Buffer): string => {
  try {
    const toc = VerifiedToc.verify(text, sha256Of(text), 'TOC', {});
    return parseToc(toc, {}, 100)
      .map((e) => e.name)
      .join(',');
  } catch (e) {
    return `${(e as { code?: string }).code}`;
  }
};

describe('eStargz TOC entries array: JSON syntax as Go reads it', () => {
  it('splits well-formed arrays (with whitespace) element by element', () => {
    for (const t of [`[${A},${B}]`, `[ ${A} , ${B} ]`, `[\n${A}\n,\n${B}\n]`]) {
      expect(splitTopLevelArray(tocOf(t), 'entries')?.elements.length).toBe(4);
      expect(parse(tocOf(t))).toBe('a,b');
    }
    expect(splitTopLevelArray(tocOf('[ ]'), 'entries')?.elements.length).toBe(0);
    expect(parse(tocOf('[ ]'))).toBe('');
  });

  it('refuses missing, leading, doubled and trailing commas like the strict parser (TOC_MALFORMED)', () => {
    for (const t of [`[${A}${B}]`, `[${A} ${B}]`, `[,${A}]`, `[${A},,${B}]`, `[${A},]`, `[,]`, `[${A}}`]) {
      expect(splitTopLevelArray(tocOf(t), 'entries'), t).toBeUndefined();
      expect(() => JSON.parse(tocOf(t).toString()), t).toThrow(); // what any strict JSON parser says
      expect(parse(tocOf(t)), t).toBe('TOC_MALFORMED');
    }
  });
});
