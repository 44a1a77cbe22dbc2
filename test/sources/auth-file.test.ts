import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AuthFileCredentials, authFilePaths } from '../../src/sources/registry/auth-file.js';
import { SourceError } from '../../src/sources/errors.js';
import { createLogger } from '../../src/core/log.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('auth.json lookup (containers-auth.json order and key matching)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lazy-als-authfile-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('orders the files like containers/image', () => {
    expect(authFilePaths({ env: { REGISTRY_AUTH_FILE: '/a.json', XDG_RUNTIME_DIR: '/run/user/7', XDG_CONFIG_HOME: '/cfg', DOCKER_CONFIG: '/dk' }, home: '/h', uid: 7 }))
      .toEqual(['/a.json', '/run/user/7/containers/auth.json', '/cfg/containers/auth.json', '/dk/config.json']);
    expect(authFilePaths({ env: {}, home: '/h', uid: 0 })).toEqual(['/run/containers/0/auth.json', '/h/.config/containers/auth.json', '/h/.docker/config.json']);
    expect(authFilePaths({ authFile: '/x.json', env: { REGISTRY_AUTH_FILE: '/a.json' }, home: '/h', uid: 0 })[0]).toBe('/x.json');
  });

  it('most specific key first, Docker Hub aliases, first file that knows wins, identity tokens', async () => {
    const home = join(dir, 'home');
    mkdirSync(join(home, '.config/containers'), { recursive: true });
    mkdirSync(join(home, '.docker'), { recursive: true });
    writeFileSync(join(home, '.config/containers/auth.json'), JSON.stringify({
      auths: {
        'reg.example': { auth: b64('host:1') },
        'reg.example/ns': { auth: b64('ns:2') },
        'reg.example/ns/repo': { auth: b64('repo:3:with:colons') },
        'https://index.docker.io/v1/': { auth: b64('hub:4') },
        'tok.example': { identitytoken: 'refresh-me' },
        'empty.example': {},
      },
    }));
    writeFileSync(join(home, '.docker/config.json'), JSON.stringify({ auths: { 'empty.example': { auth: b64('docker:5') }, 'other.example': { auth: b64('o:6') } } }));
    const p = new AuthFileCredentials({ env: { XDG_RUNTIME_DIR: join(dir, 'none') }, home, uid: 0 });
    expect(await p.lookup({ registry: 'reg.example', repository: 'ns/repo' })).toEqual({ username: 'repo', password: '3:with:colons' });
    expect(await p.lookup({ registry: 'reg.example', repository: 'ns/other' })).toEqual({ username: 'ns', password: '2' });
    expect(await p.lookup({ registry: 'reg.example', repository: 'x/y' })).toEqual({ username: 'host', password: '1' });
    expect(await p.lookup({ registry: 'docker.io', repository: 'library/busybox' })).toEqual({ username: 'hub', password: '4' });
    expect(await p.lookup({ registry: 'registry-1.docker.io', repository: 'a/b' })).toEqual({ username: 'hub', password: '4' });
    expect(await p.lookup({ registry: 'tok.example', repository: 'a' })).toEqual({ identityToken: 'refresh-me' });
    expect(await p.lookup({ registry: 'empty.example', repository: 'a' })).toEqual({ username: 'docker', password: '5' }); // empty marker: next file
    expect(await p.lookup({ registry: 'nobody.example', repository: 'a' })).toBeUndefined();
  });

  it('runs credHelpers / credsStore with argv ["get"] and the server URL on stdin', async () => {
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    // A real executable speaking the docker-credential-helpers protocol.
    const script = join(bin, 'docker-credential-lazytest');
    writeFileSync(script, `#!/bin/sh
[ "$1" = get ] || exit 3
read url
case "$url" in
  helper.example) printf '{"ServerURL":"%s","Username":"hu","Secret":"hs"}' "$url" ;;
  token.example) printf '{"ServerURL":"%s","Username":"<token>","Secret":"idt"}' "$url" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`);
    chmodSync(script, 0o755);
    const f = join(dir, 'helpers.json');
    writeFileSync(f, JSON.stringify({ credHelpers: { 'helper.example': 'lazytest', 'token.example': 'lazytest', 'broken.example': 'doesnotexist' }, credsStore: 'lazytest' }));
    const p = new AuthFileCredentials({ authFile: f, env: { XDG_RUNTIME_DIR: join(dir, 'none'), PATH: `${bin}:/usr/bin:/bin` }, home: join(dir, 'nohome'), uid: 0, helper: { env: { PATH: `${bin}:/usr/bin:/bin` } } });
    expect(await p.lookup({ registry: 'helper.example', repository: 'a' })).toEqual({ username: 'hu', password: 'hs' });
    expect(await p.lookup({ registry: 'token.example', repository: 'a' })).toEqual({ identityToken: 'idt' });
    expect(await p.lookup({ registry: 'unknown.example', repository: 'a' })).toBeUndefined(); // credsStore: not found
    await expect(p.lookup({ registry: 'broken.example', repository: 'a' })).rejects.toMatchObject({ code: 'CREDENTIALS_INVALID' });
  });

  it('rejects malformed files with a typed error', async () => {
    const f = join(dir, 'bad.json');
    writeFileSync(f, '{"auths": {"x.example": {"auth": "' + b64('nocolon') + '"}}}');
    const p = new AuthFileCredentials({ authFile: f, env: { XDG_RUNTIME_DIR: join(dir, 'none') }, home: join(dir, 'nohome'), uid: 0 });
    await expect(p.lookup({ registry: 'x.example', repository: 'a' })).rejects.toBeInstanceOf(SourceError);
    // Not base64 (podman's decoder refuses it too): refused, not decoded into some other user:password.
    writeFileSync(f, '{"auths": {"x.example": {"auth": "dXNlcjpwYXNz_"}}}');
    await expect(p.lookup({ registry: 'x.example', repository: 'a' })).rejects.toMatchObject({ code: 'REGISTRY_CONFIG', message: expect.stringMatching(/not base64/) });
    writeFileSync(f, 'not json');
    await expect(p.lookup({ registry: 'x.example', repository: 'a' })).rejects.toMatchObject({ code: 'REGISTRY_CONFIG' });
  });

  it('permissions: readable by others → used with one warning; writable by others, owned by someone else or not a file → skipped with a warning', async () => {
    const lines: string[] = [];
    const logger = createLogger('warn', { write: (l: string) => lines.push(l) });
    const f = join(dir, 'perm.json');
    const doc = JSON.stringify({ auths: { 'p.example': { auth: b64('u:p') } } });
    const p = new AuthFileCredentials({ authFile: f, env: { XDG_RUNTIME_DIR: join(dir, 'none') }, home: join(dir, 'nohome'), uid: 0, trustedUid: 0, logger });
    const q = { registry: 'p.example', repository: 'a' };
    const events = (): { event: string; file: string; mode: string; reason: string }[] => lines.map((l) => JSON.parse(l) as { event: string; file: string; mode: string; reason: string });

    writeFileSync(f, doc, { mode: 0o600 });
    chmodSync(f, 0o600);
    expect(await p.lookup(q)).toEqual({ username: 'u', password: 'p' });
    expect(lines).toEqual([]);

    chmodSync(f, 0o644);
    expect(await p.lookup(q)).toEqual({ username: 'u', password: 'p' });
    expect(await p.lookup(q)).toEqual({ username: 'u', password: 'p' });
    expect(events()).toEqual([expect.objectContaining({ event: 'registry.auth_file_readable', file: f, mode: '0644' })]); // once, not per lookup

    lines.length = 0;
    chmodSync(f, 0o666);
    expect(await p.lookup(q)).toBeUndefined();
    expect(events()).toEqual([expect.objectContaining({ event: 'registry.auth_file_refused', file: f, reason: 'writable by group or others' })]);

    lines.length = 0;
    chmodSync(f, 0o600);
    chownSync(f, 12345, 12345);
    expect(await p.lookup(q)).toBeUndefined();
    expect(events()).toEqual([expect.objectContaining({ event: 'registry.auth_file_refused', file: f, reason: expect.stringContaining('owned by uid 12345') })]);

    // a FIFO in place of the file: skipped at once, never a hung lookup
    lines.length = 0;
    rmSync(f);
    execFileSync('mkfifo', ['-m', '600', f]);
    expect(await p.lookup(q)).toBeUndefined();
    expect(events()).toEqual([expect.objectContaining({ event: 'registry.auth_file_refused', reason: 'not a regular file' })]);
  });
});
