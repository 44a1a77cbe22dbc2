import { describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/core/digest.js';
import { indexFromToc } from '../../src/formats/estargz/build-index.js';
import { parseToc } from '../../src/formats/estargz/toc.js';
import { VerifiedToc } from '../../src/formats/verified-toc.js';

const json = Buffer.from(JSON.stringify({ version: 1, entries: [{ name: 'a.txt', type: 'reg', size: 0, mode: 420 }] }));
const meta = { format: 'estargz', blobSize: 1000, tocOffset: 900, footerSize: 51, blobName: 'test' } as const;

describe('VerifiedToc: the only TOC the parser and the index builders take', () => {
  it('is made from bytes that hash to the pinned digest, and carries that digest into the index', () => {
    const toc = VerifiedToc.verify(json, sha256Of(json), 'TOC', {});
    expect(toc.pinned).toBe(true);
    const index = indexFromToc(toc, parseToc(toc, {}, 100), meta);
    expect(index.tocDigest).toBe(sha256Of(json));
  });

  it('refuses bytes that do not hash to the pinned digest (TOC_DIGEST_MISMATCH)', () => {
    const other = sha256Of(Buffer.from('another TOC'));
    expect(() => VerifiedToc.verify(json, other, 'TOC', { blob: 'b' })).toThrow(expect.objectContaining({ code: 'TOC_DIGEST_MISMATCH' }));
  });

  it('unpinned (allowed by the caller): records what the bytes hash to, says so', () => {
    const toc = VerifiedToc.verify(json, undefined, 'TOC', {});
    expect(toc).toMatchObject({ pinned: false, digest: sha256Of(json) });
  });

  it('cannot be imitated: a look-alike object does not type-check (npm run check holds this)', () => {
    const fake = { bytes: json, digest: sha256Of(json), pinned: true };
    // @ts-expect-error — a structurally equal object is not a VerifiedToc (private brand field)
    expect(() => parseToc(fake, {}, 100)).not.toThrow();
    // @ts-expect-error — nor can anything but verify() construct one
    expect(() => new VerifiedToc(json, sha256Of(json), true)).not.toThrow();
  });
});
