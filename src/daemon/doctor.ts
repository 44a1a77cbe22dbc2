/**
 * `lazy-als doctor`: checks what the store needs from the machine and says what to fix.
 *
 *  - kernel FUSE: /dev/fuse is a character device we can open, `fuse` in /proc/filesystems,
 *    fusermount3 (or fusermount) on PATH (unmounts, and mounting for non-root users);
 *  - /etc/fuse.conf: `user_allow_other` when a non-root daemon mounts with allow_other;
 *  - storage.conf: `additionallayerstores` lists `<mountpoint>:ref` (without `:ref` podman cannot
 *    pull lazily) and, for podman 4, as the first entry (it asks only the first store that answers);
 *  - registries.conf: `additional-layer-store-auth-helper` (only needed for private registries);
 *  - state dir: exists or can be created, owned by us, not writable by others, free space for the
 *    configured cache_size.
 * Each check answers ok / warn / fail with a one-line fix; `fail` means the store will not work.
 */
import { constants } from 'node:fs';
import { access, open, readdir, readFile, stat, statfs } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import type { DaemonConfig } from './config.js';

type CheckLevel = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  readonly check: string;
  readonly level: CheckLevel;
  readonly message: string;
  /** What to do about it (warn/fail). */
  readonly fix?: string;
}

export interface DoctorOptions {
  readonly config: DaemonConfig;
  /** storage.conf to inspect (default: $CONTAINERS_STORAGE_CONF, else the system's or the user's). */
  readonly storageConf?: string;
  /** registries.conf to inspect (default: the config's registries_conf, else the system's). */
  readonly registriesConf?: string;
  readonly uid?: number;
  readonly env?: NodeJS.ProcessEnv;
  /** Roots of the checked files (tests). */
  readonly fuseConf?: string;
  readonly procFilesystems?: string;
  readonly devFuse?: string;
}

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

async function onPath(name: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const d of (env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter)) {
    const p = join(d, name);
    if (await access(p, constants.X_OK).then(() => true, () => false)) return p;
  }
  return undefined;
}

async function readText(p: string): Promise<string | undefined> {
  return readFile(p, 'utf8').catch(() => undefined);
}

/** Drop-in files of `<file>.d/` (containers' convention), in name order. */
async function dropIns(file: string): Promise<string[]> {
  const dir = `${file}.d`;
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith('.conf')).sort().map((n) => join(dir, n));
}

function defaultStorageConf(uid: number, env: NodeJS.ProcessEnv): string {
  if (env['CONTAINERS_STORAGE_CONF']) return env['CONTAINERS_STORAGE_CONF'];
  if (uid === 0) return '/etc/containers/storage.conf';
  return join(env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config'), 'containers', 'storage.conf');
}

async function checkFuse(o: DoctorOptions, uid: number, env: NodeJS.ProcessEnv): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const dev = o.devFuse ?? '/dev/fuse';
  const st = await stat(dev).catch(() => undefined);
  if (!st?.isCharacterDevice()) {
    out.push({
      check: 'kernel FUSE',
      level: 'fail',
      message: `${dev} is missing`,
      fix: 'load the fuse module (`modprobe fuse`); in a container, pass --device /dev/fuse',
    });
  } else {
    const fh = await open(dev, 'r+').catch((e: NodeJS.ErrnoException) => e);
    if (fh instanceof Error) {
      out.push({
        check: 'kernel FUSE',
        level: 'fail',
        message: `cannot open ${dev}: ${fh.code ?? fh.message}`,
        fix:
          uid === 0
            ? 'check the device cgroup / container runtime allows /dev/fuse'
            : `make ${dev} usable by your user (mode 0666 is Debian's default) or run as root`,
      });
    } else {
      await fh.close();
      const fs = (await readText(o.procFilesystems ?? '/proc/filesystems')) ?? '';
      const has = /\bfuse\b/.test(fs);
      out.push(
        has
          ? { check: 'kernel FUSE', level: 'ok', message: `${dev} opens and the kernel lists fuse` }
          : { check: 'kernel FUSE', level: 'fail', message: 'fuse is not in /proc/filesystems', fix: 'modprobe fuse' },
      );
    }
  }
  const fm = (await onPath('fusermount3', env)) ?? (await onPath('fusermount', env));
  out.push(
    fm
      ? { check: 'fusermount', level: 'ok', message: fm }
      : { check: 'fusermount', level: uid === 0 ? 'warn' : 'fail', message: 'neither fusermount3 nor fusermount is on PATH', fix: 'apt install fuse3' },
  );
  if (o.config.fuse.allowOther && uid !== 0) {
    const conf = (await readText(o.fuseConf ?? '/etc/fuse.conf')) ?? '';
    const allowed = conf.split('\n').some((l) => l.trim() === 'user_allow_other');
    out.push(
      allowed
        ? { check: '/etc/fuse.conf', level: 'ok', message: 'user_allow_other is set (allow_other works for non-root)' }
        : {
          check: '/etc/fuse.conf',
          level: 'fail',
          message: 'allow_other is configured but /etc/fuse.conf lacks user_allow_other',
          fix: 'add a line `user_allow_other` to /etc/fuse.conf, or set fuse.allow_other = false',
        },
    );
  } else {
    out.push({ check: '/etc/fuse.conf', level: 'ok', message: uid === 0 ? 'not needed as root' : 'allow_other is off' });
  }
  return out;
}

interface StorageConf {
  storage?: { driver?: unknown; options?: { additionallayerstores?: unknown } };
}

/** Only the overlay driver consults additional layer stores; rootless podman without a driver line may pick vfs. */
function checkDriver(driver: string | undefined, uid: number, main: string): CheckResult[] {
  const fix = `in ${main}, under [storage]: driver = "overlay" (then \`podman system reset\` if podman already chose another)`;
  if (driver === 'overlay') return [{ check: 'storage driver', level: 'ok', message: 'overlay (the only driver that uses additional layer stores)' }];
  if (driver !== undefined) return [{ check: 'storage driver', level: 'fail', message: `driver "${driver}" ignores additional layer stores`, fix }];
  if (uid !== 0) return [{
    check: 'storage driver',
    level: 'warn',
    message: 'no driver set: rootless podman may choose vfs, which has no additional layer stores',
    fix,
  }];
  return [];
}

async function checkStorageConf(o: DoctorOptions, uid: number, env: NodeJS.ProcessEnv): Promise<CheckResult[]> {
  const main = o.storageConf ?? defaultStorageConf(uid, env);
  const files = [main, ...(await dropIns(main))];
  const want = `${o.config.mountpoint}:ref`;
  let stores: string[] | undefined;
  let driver: string | undefined;
  const read: string[] = [];
  for (const f of files) {
    const text = await readText(f);
    if (text === undefined) continue;
    let conf: StorageConf;
    try {
      conf = parseToml(text) as StorageConf;
    } catch (e) {
      return [{
        check: 'storage.conf',
        level: 'fail',
        message: `${f} is not valid TOML: ${(e as Error).message.split('\n')[0]}`,
        fix: `fix the syntax of ${f}`,
      }];
    }
    read.push(f);
    const v = conf.storage?.options?.additionallayerstores;
    if (Array.isArray(v)) stores = v.map(String); // a later file overrides an earlier one
    if (typeof conf.storage?.driver === 'string' && conf.storage.driver !== '') driver = conf.storage.driver;
  }
  const drv = checkDriver(driver, uid, main);
  const where = read.length > 0 ? read.join(', ') : `${main} (absent)`;
  const fix = `in ${main}, under [storage.options]: additionallayerstores = ["${want}"]`;
  if (!stores || stores.length === 0) return [...drv, { check: 'storage.conf', level: 'fail', message: `no additionallayerstores in ${where}`, fix }];
  const i = stores.findIndex((s) => s === want);
  if (i < 0) {
    if (stores.includes(o.config.mountpoint)) {
      return [...drv, {
        check: 'storage.conf',
        level: 'fail',
        message: `${o.config.mountpoint} is listed without :ref (podman cannot name the image, so nothing is pulled lazily)`,
        fix: `use "${want}"`,
      }];
    }
    return [...drv, { check: 'storage.conf', level: 'fail', message: `additionallayerstores (${stores.join(', ')}) does not list ${want}`, fix }];
  }
  if (i > 0) {
    return [...drv, {
      check: 'storage.conf',
      level: 'warn',
      message: `${want} is entry ${i + 1} of additionallayerstores; podman 4 only asks the first store`,
      fix: `move "${want}" to the front of the list`,
    }];
  }
  return [...drv, { check: 'storage.conf', level: 'ok', message: `${want} is the first additional layer store (${where})` }];
}

async function checkRegistriesConf(o: DoctorOptions, env: NodeJS.ProcessEnv): Promise<CheckResult[]> {
  const main = o.registriesConf ?? o.config.registriesConf ?? '/etc/containers/registries.conf';
  const files = [main, ...(await dropIns(main))];
  let helper: string | undefined;
  for (const f of files) {
    const text = await readText(f);
    if (text === undefined) continue;
    try {
      const v = (parseToml(text) as Record<string, unknown>)['additional-layer-store-auth-helper'];
      if (typeof v === 'string') helper = v;
    } catch (e) {
      return [{
        check: 'registries.conf',
        level: 'fail',
        message: `${f} is not valid TOML: ${(e as Error).message.split('\n')[0]}`,
        fix: `fix the syntax of ${f}`,
      }];
    }
  }
  if (helper === undefined) {
    return [{
      check: 'registries.conf',
      level: 'warn',
      message: 'no additional-layer-store-auth-helper: the store sees only credentials from auth files',
      fix: `for private registries add additional-layer-store-auth-helper = "lazy-als-auth-helper" at the top of ${main}`,
    }];
  }
  const found = helper.includes('/') ? ((await exists(helper)) ? helper : undefined) : await onPath(helper, env);
  if (!found) return [{
    check: 'registries.conf',
    level: 'fail',
    message: `auth helper ${helper} is not on PATH`,
    fix: 'install lazy-als-auth-helper (the Debian package puts it in /usr/bin)',
  }];
  return [{ check: 'registries.conf', level: 'ok', message: `auth helper ${found}` }];
}

async function checkStateDir(o: DoctorOptions, uid: number): Promise<CheckResult[]> {
  const dir = o.config.stateDir;
  const st = await stat(dir).catch(() => undefined);
  const out: CheckResult[] = [];
  let probe = dir;
  if (!st) {
    // It will be created on start: the nearest existing parent must be ours to write.
    probe = dirname(dir);
    while (!(await exists(probe)) && probe !== '/') probe = dirname(probe);
    const w = await access(probe, constants.W_OK).then(() => true, () => false);
    out.push(
      w
        ? { check: 'state dir', level: 'ok', message: `${dir} will be created` }
        : { check: 'state dir', level: 'fail', message: `${dir} does not exist and ${probe} is not writable`, fix: `mkdir -p ${dir} && chown ${uid} ${dir}` },
    );
  } else if (!st.isDirectory()) {
    out.push({ check: 'state dir', level: 'fail', message: `${dir} is not a directory`, fix: `remove it or set state_dir` });
  } else if (st.uid !== uid) {
    out.push({ check: 'state dir', level: 'fail', message: `${dir} is owned by uid ${st.uid}, not ${uid}`, fix: `chown -R ${uid} ${dir}` });
  } else if ((st.mode & 0o022) !== 0) {
    out.push({
      check: 'state dir',
      level: 'warn',
      message: `${dir} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}): others could plant cache files`,
      fix: `chmod 700 ${dir}`,
    });
  } else {
    out.push({ check: 'state dir', level: 'ok', message: `${dir} (mode ${(st.mode & 0o777).toString(8)})` });
  }
  const fs = await statfs(probe).catch(() => undefined);
  if (fs) {
    const free = fs.bavail * fs.bsize;
    const want = o.config.cacheSizeBytes;
    const gib = (n: number): string => `${(n / 1024 ** 3).toFixed(1)} GiB`;
    out.push(
      free >= want
        ? { check: 'free space', level: 'ok', message: `${gib(free)} free for a cache of ${gib(want)}` }
        : {
          check: 'free space',
          level: free < Math.min(want, 1024 ** 3) ? 'fail' : 'warn',
          message: `${gib(free)} free but cache_size is ${gib(want)}`,
          fix: 'free space, move state_dir, or lower cache_size',
        },
    );
  }
  return out;
}

export async function runDoctor(o: DoctorOptions): Promise<CheckResult[]> {
  const uid = o.uid ?? process.getuid?.() ?? 0;
  const env = o.env ?? process.env;
  return [
    ...(await checkFuse(o, uid, env)),
    ...(await checkStorageConf(o, uid, env)),
    ...(await checkRegistriesConf(o, env)),
    ...(await checkStateDir(o, uid)),
  ];
}
