/**
 * `lazy-als doctor` against real files (storage.conf, registries.conf and drop-ins, a state dir with
 * real owners and modes, this machine's /dev/fuse), run as the CLI; and the log line formats.
 */
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/log.js';
import { lineFormat } from '../../src/cli/commands/serve.js';
import { cmd } from '../integration/support/commands.js';
import { CLI } from '../integration/support/daemon.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-ops-doctor-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Check {
  check: string;
  level: string;
  message: string;
  fix?: string;
}

async function doctor(name: string, storageConf: string | undefined, registriesConf: string, stateDir?: string): Promise<{ code: number | null; checks: Map<string, Check>; text: string }> {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  const state = stateDir ?? join(d, 'state');
  await writeFile(join(d, 'config.toml'), `state_dir = "${state}"\nmountpoint = "/var/lib/lazy-als-doctor/store"\ncache_size = "1MiB"\n`);
  const sc = join(d, 'storage.conf');
  if (storageConf !== undefined) await writeFile(sc, storageConf);
  const rc = join(d, 'registries.conf');
  await writeFile(rc, registriesConf);
  const args = [CLI, 'doctor', '--config', join(d, 'config.toml'), '--storage-conf', sc, '--registries-conf', rc];
  const j = await cmd(process.execPath, [...args, '--json']);
  const t = await cmd(process.execPath, args);
  expect(t.code).toBe(j.code);
  const checks = new Map((JSON.parse(j.stdout) as Check[]).map((c) => [c.check, c]));
  return { code: j.code, checks, text: t.stdout };
}

const STORE = '/var/lib/lazy-als-doctor/store';
const helperLine = `additional-layer-store-auth-helper = "${process.execPath}"\n`;

describe('lazy-als doctor', () => {
  it('all good: exit 0, every check ok (as root on this machine)', async () => {
    const r = await doctor('good', `[storage]\ndriver = "overlay"\n[storage.options]\nadditionallayerstores = ["${STORE}:ref", "/other/store:ref"]\n`, helperLine);
    expect([...r.checks.values()].filter((c) => c.level !== 'ok')).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.checks.get('kernel FUSE')!.message).toContain('/dev/fuse');
    expect(r.text).toMatch(/\nno problems\n$/);
  });

  it('missing store, store without :ref, store not first, helper missing: says what to fix, exit code follows', async () => {
    const missing = await doctor('missing', undefined, '');
    expect(missing.code).toBe(1);
    expect(missing.checks.get('storage.conf')).toMatchObject({ level: 'fail' });
    expect(missing.checks.get('storage.conf')!.fix).toContain(`additionallayerstores = ["${STORE}:ref"]`);
    expect(missing.checks.get('registries.conf')).toMatchObject({ level: 'warn' });
    expect(missing.text).toContain('fix: in ');
    expect(missing.text).toMatch(/1 problem\(s\) to fix, 1 warning\(s\)\n$/);

    const noRef = await doctor('noref', `[storage.options]\nadditionallayerstores = ["${STORE}"]\n`, helperLine);
    expect(noRef.code).toBe(1);
    expect(noRef.checks.get('storage.conf')!.message).toContain('without :ref');

    const second = await doctor('second', `[storage.options]\nadditionallayerstores = ["/other:ref", "${STORE}:ref"]\n`, helperLine);
    expect(second.checks.get('storage.conf')).toMatchObject({ level: 'warn' });
    expect(second.checks.get('storage.conf')!.message).toContain('podman 4');
    expect(second.code).toBe(0);

    // A drop-in in storage.conf.d overrides the main file's list.
    const d = join(dir, 'dropin');
    await mkdir(join(d, 'storage.conf.d'), { recursive: true });
    await writeFile(join(d, 'storage.conf.d', '50-lazy-als.conf'), `[storage.options]\nadditionallayerstores = ["${STORE}:ref"]\n`);
    const dropin = await doctor('dropin', `[storage]\ndriver = "overlay"\n`, helperLine);
    expect(dropin.checks.get('storage.conf')).toMatchObject({ level: 'ok' });

    const badHelper = await doctor('badhelper', `[storage.options]\nadditionallayerstores = ["${STORE}:ref"]\n`, 'additional-layer-store-auth-helper = "no-such-helper-xyz"\n');
    expect(badHelper.checks.get('registries.conf')).toMatchObject({ level: 'fail' });
    expect(badHelper.code).toBe(1);

    // Only the overlay driver consults additional layer stores (rootless podman may pick vfs).
    const vfs = await doctor('vfs', `[storage]\ndriver = "vfs"\n[storage.options]\nadditionallayerstores = ["${STORE}:ref"]\n`, helperLine);
    expect(vfs.checks.get('storage driver')).toMatchObject({ level: 'fail' });
    expect(vfs.checks.get('storage driver')!.fix).toContain('driver = "overlay"');
    expect(vfs.code).toBe(1);

    const badToml = await doctor('badtoml', '[storage.options\n', helperLine);
    expect(badToml.checks.get('storage.conf')!.message).toContain('not valid TOML');
  });

  it('state dir: writable by others is a warning, owned by someone else fails', async () => {
    const good = `[storage.options]\nadditionallayerstores = ["${STORE}:ref"]\n`;
    const open = join(dir, 'open-state');
    await mkdir(open);
    await chmod(open, 0o777);
    const r1 = await doctor('open', good, helperLine, open);
    expect(r1.checks.get('state dir')).toMatchObject({ level: 'warn' });
    expect(r1.checks.get('state dir')!.fix).toBe(`chmod 700 ${open}`);
    const theirs = join(dir, 'their-state');
    await mkdir(theirs, { mode: 0o700 });
    await chown(theirs, 65534, 65534);
    const r2 = await doctor('theirs', good, helperLine, theirs);
    expect(r2.checks.get('state dir')).toMatchObject({ level: 'fail' });
    expect(r2.code).toBe(1);
  });
});

describe('log lines', () => {
  it('text for a terminal, JSON under journald or a pipe; text lines carry the same fields', () => {
    expect(lineFormat('auto', { isTTY: true }, {})).toBe('text');
    expect(lineFormat('auto', { isTTY: true }, { JOURNAL_STREAM: '8:1234' })).toBe('json');
    expect(lineFormat('auto', { isTTY: false }, {})).toBe('json');
    expect(lineFormat('json', { isTTY: true }, {})).toBe('json');
    expect(lineFormat('text', { isTTY: false }, {})).toBe('text');
    const lines: string[] = [];
    const sink = { write: (s: string) => lines.push(s) };
    const err = Object.assign(new Error('TOC digest mismatch'), { code: 'TOC_DIGEST_MISMATCH' });
    createLogger('info', sink, { pid: 7 }, 'text').child({ layer: 'sha256:ab' }).warn('catalog.refused', { file: 'a b', error: err, n: 3 });
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN {2}catalog\.refused layer=sha256:ab file="a b" error="TOC_DIGEST_MISMATCH: TOC digest mismatch" n=3\n$/);
    createLogger('info', sink, { pid: 7 }, 'json').info('daemon.ready', { mountpoint: '/m' });
    expect(JSON.parse(lines[1]!)).toMatchObject({ level: 'info', event: 'daemon.ready', pid: 7, mountpoint: '/m' });
  });
});
