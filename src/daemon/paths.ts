/**
 * Where the store lives by default: system paths for root, XDG base directories for a user running
 * it for rootless podman (docs/rootless.md). Kept apart from config.ts so the auth helper, which
 * podman runs on every pull, finds the socket without loading the daemon.
 */

/** Whether this process works for rootless podman: a non-root user, or root of podman's user namespace (`podman unshare`). */
export function isRootless(env: NodeJS.ProcessEnv, uid: number): boolean {
  const podmanUid = env['_CONTAINERS_ROOTLESS_UID'];
  return uid !== 0 || (podmanUid !== undefined && podmanUid !== '' && podmanUid !== '0');
}

/** The default locations of one store. */
export interface StorePaths {
  readonly configFile: string;
  readonly stateDir: string;
  readonly mountpoint: string;
  readonly socketPath: string;
}

/** Where a rootless store lives by default (XDG base directories; docs/rootless.md). */
export function userPaths(env: NodeJS.ProcessEnv): StorePaths {
  const home = env['HOME'] || '/';
  const abs = (v: string | undefined, fallback: string): string => (v !== undefined && v.startsWith('/') ? v : fallback);
  const data = abs(env['XDG_DATA_HOME'], `${home.replace(/\/$/, '')}/.local/share`);
  const config = abs(env['XDG_CONFIG_HOME'], `${home.replace(/\/$/, '')}/.config`);
  const stateDir = `${data}/lazy-als`;
  const runtime = env['XDG_RUNTIME_DIR'];
  return {
    configFile: `${config}/lazy-als/config.toml`,
    stateDir,
    mountpoint: `${stateDir}/store`,
    // Without a runtime dir (no login session) the socket stays in the private state dir.
    socketPath: runtime !== undefined && runtime.startsWith('/') ? `${runtime}/lazy-als/control.sock` : `${stateDir}/control.sock`,
  };
}

/** Where a root store lives by default. */
export const SYSTEM_PATHS: StorePaths = Object.freeze({
  configFile: '/etc/lazy-als/config.toml',
  stateDir: '/var/lib/lazy-als',
  mountpoint: '/var/lib/lazy-als/store',
  socketPath: '/run/lazy-als/control.sock',
});

/** The config file read when none is given: /etc/lazy-als/config.toml, or $XDG_CONFIG_HOME/lazy-als/config.toml when rootless. */
export function defaultConfigFile(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? 0): string {
  return defaultPaths(env, uid).configFile;
}

/** The default paths for this process: the user's when rootless, else the system's. */
export function defaultPaths(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? 0): StorePaths {
  return isRootless(env, uid) ? userPaths(env) : SYSTEM_PATHS;
}
