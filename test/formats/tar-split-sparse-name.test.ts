import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { parseTarSplit } from '../../src/formats/zstd-chunked/tar-split.js';
import { displayName } from '../../src/formats/byte-string.js';

// zstd:chunked binds the TOC to the tar-split's headers, read by the tar scanner. A PAX
// GNU.sparse.name on a non-sparse entry must not rename it there either: podman's non-partial pull
// (Go archive/tar) unpacks the header's path, so a TOC/tar-split naming the GNU.sparse.name must
// conflict. The tar is written by Python tarfile (an independent writer).
const tar = execFileSync('python3', ['-c', `import tarfile, io, sys
b = io.BytesIO()
t = tarfile.open(fileobj=b, mode='w', format=tarfile.PAX_FORMAT)
i = tarfile.TarInfo('usr/share/doc/x'); i.size = 5; i.pax_headers = {'GNU.sparse.name': 'etc/passwd'}
t.addfile(i, io.BytesIO(b'hello'))
t.close(); sys.stdout.buffer.write(b.getvalue())`]);

/** The tar as tar-split lines: headers as segments, the content as one file line named `name`. */
function tarSplitOf(name: string): Buffer {
  const at = tar.indexOf('hello');
  const lines = [
    { type: 2, position: 0, payload: tar.subarray(0, at).toString('base64') },
    { type: 1, position: 1, name, size: 5 },
    { type: 2, position: 2, payload: tar.subarray(at + 5).toString('base64') },
  ];
  return Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
}

describe('zstd:chunked tar-split: GNU.sparse.name applies only to GNU sparse files', () => {
  it("binds the header's own path, and refuses a file line naming GNU.sparse.name", () => {
    const ok = parseTarSplit(tarSplitOf('usr/share/doc/x'), {});
    expect(ok.entries.map((e) => displayName(e.name))).toEqual(['usr/share/doc/x']);
    expect(ok.entries[0]!.sparse).toBeUndefined();
    let err: unknown;
    try {
      parseTarSplit(tarSplitOf('etc/passwd'), {});
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'FORMAT_CONFLICT', message: expect.stringMatching(/file entry "etc\/passwd" ≠ its header's name "usr\/share\/doc\/x"/) });
  });
});
