import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTar } from '../helpers/writers/tar.js';

// The fixture writer must produce archives GNU tar (an independent reader) agrees with.
describe('test tar writer', () => {
  it('round-trips through GNU tar, including PAX long/unicode names and xattrs', () => {
    const long = 'd/' + 'x'.repeat(150) + '/файл-ü.txt';
    const tar = buildTar([
      { name: 'd/', type: 'dir', mode: 0o750, uid: 1000, gid: 1000, mtime: 1704067200 },
      { name: long, type: 'reg', data: Buffer.from('hello\n'), mode: 0o600, xattrs: { 'user.test': 'v1' } },
      { name: 'd/link', type: 'symlink', linkName: '../target' },
      { name: 'd/hard', type: 'hardlink', linkName: long },
    ]);
    const dir = mkdtempSync(join(tmpdir(), 'tarw-'));
    try {
      writeFileSync(join(dir, 'a.tar'), tar);
      const list = execFileSync('tar', ['-tvf', join(dir, 'a.tar'), '--numeric-owner', '--full-time'], { encoding: 'utf8' });
      expect(list).toContain('drwxr-x--- 1000/1000');
      expect(list).toContain(long);
      expect(list).toContain('d/link -> ../target');
      expect(list).toContain(`d/hard link to ${long}`);
      expect(list).toContain('2024-01-01 00:00:00');
      const out = execFileSync('tar', ['-xOf', join(dir, 'a.tar'), long], { encoding: 'utf8' });
      expect(out).toBe('hello\n');
      const x = execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-tvvf', join(dir, 'a.tar')], { encoding: 'utf8' });
      expect(x).toMatch(/user\.test/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
