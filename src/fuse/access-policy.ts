/**
 * Who may make the daemon resolve layers, and the mount options that make the kernel enforce the
 * layers' own permissions. One place for every FUSE backend.
 *
 * Resolving a layer (the first lookup of `<key>/diff|info|blob`) spends the daemon's registry
 * credentials, network and memory, so by default only root (and the daemon's own uid, for a daemon
 * running in a user namespace) may cause it: podman and CRI-O do their lookups as root, and
 * containers read layers through overlayfs, which looks up and checks lower layers with the
 * mounter's credentials. An admin may allow more uids/gids (config `fuse.resolve_uids` /
 * `fuse.resolve_gids`).
 *
 * Two ways to enforce it, both driven from here:
 *  - by the kernel: the mount has `default_permissions`, and the control directories (`<refB64>`,
 *    `<key>`) are owned by the one allowed non-root uid (else root) and the one allowed gid, mode
 *    0750/0700 — a user without search permission gets EACCES before the daemon hears of the lookup.
 *    Root passes by CAP_DAC_OVERRIDE, so the ALS `use` create and `rmdir` protocol keeps working.
 *    A backend that cannot see the caller's ids (fuse-native) relies on this alone, which is why a
 *    policy it cannot express (two non-root uids, two gids) is refused there (`kernelEnforceable`).
 *  - by the backend: one that knows the caller passes it in OpContext.caller and the tree asks
 *    `mayResolve` too.
 * Inside `diff/` the kernel checks the layer's own modes, owners and groups, exactly as for an
 * extracted copy of the layer.
 */
import { FuseError } from './errors.js';

export interface Caller {
  readonly uid: number;
  readonly gid: number;
  /** Supplementary groups, when the backend knows them. */
  readonly groups?: readonly number[];
}

export interface AccessPolicyConfig {
  /** uids that may trigger resolution (root always may). */
  readonly resolveUids: readonly number[];
  /** gids whose members may trigger resolution. */
  readonly resolveGids: readonly number[];
  /** The daemon's own uid (it may always resolve: a daemon in a user namespace is root there). */
  readonly daemonUid: number;
}

export interface ControlDirAttrs {
  readonly uid: number;
  readonly gid: number;
  /** Permission bits (no type bits). */
  readonly mode: number;
}

export class AccessPolicy {
  readonly #uids: ReadonlySet<number>;
  readonly #gids: ReadonlySet<number>;
  /** Owner/group/mode of `<refB64>` and `<key>` directories. */
  readonly controlDir: ControlDirAttrs;
  /** Whether owner + group + mode of the control dirs express the policy exactly. */
  readonly kernelEnforceable: boolean;

  /** `callerIds`: the backend passes every caller's ids (so check() decides when modes cannot). */
  private constructor(uids: ReadonlySet<number>, gids: ReadonlySet<number>, callerIds = false) {
    this.#uids = uids;
    this.#gids = gids;
    const users = [...uids].filter((u) => u !== 0);
    const groups = [...gids];
    this.kernelEnforceable = users.length <= 1 && groups.length <= 1;
    // Lists modes cannot express, with a backend that sees callers: everyone may search the
    // control dirs and check() decides (it is then the only gate).
    this.controlDir = this.kernelEnforceable || !callerIds
      ? { uid: users[0] ?? 0, gid: groups[0] ?? 0, mode: groups.length > 0 ? 0o750 : 0o700 }
      : { uid: 0, gid: 0, mode: 0o755 };
  }

  /** The same policy for a backend that passes every caller's ids (the native backend). */
  withCallerIds(): AccessPolicy {
    return new AccessPolicy(this.#uids, this.#gids, true);
  }

  /** Root only (plus the daemon's uid): the default. */
  static rootOnly(daemonUid = process.getuid?.() ?? 0): AccessPolicy {
    return AccessPolicy.fromConfig({ resolveUids: [], resolveGids: [], daemonUid });
  }

  static fromConfig(c: AccessPolicyConfig): AccessPolicy {
    return new AccessPolicy(new Set([0, c.daemonUid, ...c.resolveUids]), new Set(c.resolveGids));
  }

  mayResolve(c: Caller): boolean {
    if (this.#uids.has(c.uid) || this.#gids.has(c.gid)) return true;
    return c.groups?.some((g) => this.#gids.has(g)) ?? false;
  }

  /**
   * Throws EACCES when a known caller may not resolve. When the control dirs' modes express the
   * policy, the kernel has already checked the caller (supplementary groups included) before the
   * request reached us; a caller whose groups we were not told is then not refused for them.
   */
  check(caller: Caller | undefined, path: string): void {
    if (!caller || this.mayResolve(caller)) return;
    if (this.kernelEnforceable && caller.groups === undefined && this.#gids.size > 0) return;
    throw new FuseError('EACCES', 'this user may not make the store resolve layers (fuse.resolve_uids / resolve_gids)', { entry: path });
  }

  /** What a backend that only has modes (fuse-native) must refuse. */
  assertKernelEnforceable(backend: string): void {
    if (!this.kernelEnforceable) {
      throw new FuseError(
        'FUSE_MOUNT',
        `the ${backend} backend cannot see the caller's ids and enforces fuse.resolve_uids/resolve_gids through directory modes: ` +
          'list at most one non-root uid and one gid',
        {},
      );
    }
  }
}

export interface MountPolicyOptions {
  readonly allowOther: boolean;
  /** Honour setuid/setgid bits of layer files (root mounts only). */
  readonly suid: boolean;
}

/**
 * The `-o` options every backend mounts with. `default_permissions`: the kernel checks modes,
 * owners and groups as on any filesystem (the daemon never answers ACCESS). `nodev` always: device
 * nodes in a layer are data for overlayfs, never devices to open through the store.
 */
export function mountOptionList(o: MountPolicyOptions): string[] {
  return ['default_permissions', ...(o.allowOther ? ['allow_other'] : []), o.suid ? 'suid' : 'nosuid', 'nodev'];
}
