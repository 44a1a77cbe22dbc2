/**
 * Xattr names beyond ASCII reach readers as the UTF-8 bytes the archive had (the bytes podman's own
 * unpack writes), through a real mount on either backend ($LAZY_ALS_BACKEND). The fidelity corpus
 * found the native backend's table truncating them to Latin-1 ("user.naïve-åå" became
 * "user.na\xefve-\xe5\xe5").
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { run, tempMount, type TempMount } from './helpers/mount-fixture.js';
import { buildStandInLayer, keyOf, StandInProvider } from './helpers/stand-in-provider.js';

const NAME = 'user.naïve-åå€🙂';
const KEY = keyOf('xattr names');

describe('xattr names', () => {
  let m: TempMount | undefined;
  afterEach(async () => {
    await m?.close();
    m = undefined;
  });

  it('a non-ASCII xattr name lists and reads back as its UTF-8 bytes', async () => {
    const layer = buildStandInLayer(KEY, [{ name: 'f', content: 'x', xattrs: { [NAME]: 'value', 'user.plain': 'p' } }]);
    m = await tempMount(new StandInProvider().add(layer));
    const file = join(m.mnt, KEY, 'diff', 'f');
    // python: names as raw bytes (hex), and a read of the value by the UTF-8 name
    const r = await run('python3', ['-c', [
      'import os, sys, json',
      'p = sys.argv[1]',
      'names = sorted(os.fsencode(n).hex() for n in os.listxattr(p))',
      'value = os.getxattr(p, os.fsencode(sys.argv[2])).decode()',
      'print(json.dumps({"names": names, "value": value}))',
    ].join('\n'), file, NAME]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      names: [Buffer.from(NAME, 'utf8').toString('hex'), Buffer.from('user.plain').toString('hex')].sort(),
      value: 'value',
    });
  });
});
