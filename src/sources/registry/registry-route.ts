/**
 * Where to fetch a reference from: the endpoints (mirrors in configured order, then the primary
 * location) that registries.conf gives for it, each with its own API origin and repository path.
 *
 * Plain HTTP: used when the registry (or mirror) is `insecure = true`, and — a lazy-als choice —
 * for loopback hosts (localhost, 127.0.0.0/8, [::1]) unless registries.conf explicitly says
 * `insecure = false` for them. HTTPS is never downgraded for other hosts.
 * Docker Hub's API lives on registry-1.docker.io; credentials stay keyed by docker.io.
 */
import { InvalidReferenceError, SourceError } from '../errors.js';
import { isDockerHub, repositoryName, type ImageReference } from '../reference.js';
import type { PullFromMirror, RegistriesConf, RegistryConfig } from './registries-conf.js';

export interface Endpoint {
  /** Registry host as spelled in references and auth.json (docker.io for Docker Hub). */
  readonly registry: string;
  /** API origin, e.g. "https://registry-1.docker.io" or "http://127.0.0.1:5000". */
  readonly origin: string;
  /** Repository path on that registry. */
  readonly repository: string;
  readonly mirror: boolean;
}

export interface Route {
  readonly endpoints: readonly Endpoint[];
}

function isLoopbackHost(hostPort: string): boolean {
  const host = hostPort.startsWith('[') ? hostPort.slice(1, hostPort.indexOf(']')) : hostPort.replace(/:\d+$/, '');
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function matches(prefix: string, name: string, domain: string): boolean {
  if (prefix.startsWith('*.')) return domain.endsWith(prefix.slice(1));
  return name === prefix || name.startsWith(prefix + '/');
}

/** Longest matching prefix wins; wildcard prefixes rank below exact ones. */
function findRegistryConfig(conf: RegistriesConf, ref: ImageReference): RegistryConfig | undefined {
  const name = repositoryName(ref);
  let best: RegistryConfig | undefined;
  const rank = (r: RegistryConfig): number => (r.prefix.startsWith('*.') ? r.prefix.length - 10_000 : r.prefix.length);
  for (const r of conf.registries) {
    if (!matches(r.prefix, name, ref.domain)) continue;
    if (!best || rank(r) > rank(best)) best = r;
  }
  return best;
}

function endpointFor(location: string, insecure: boolean | undefined, mirror: boolean): Endpoint {
  const slash = location.indexOf('/');
  let registry = slash < 0 ? location : location.slice(0, slash);
  let repository = slash < 0 ? '' : location.slice(slash + 1);
  if (!registry || !repository) throw new InvalidReferenceError(`cannot route to ${JSON.stringify(location)}`);
  if (isDockerHub(registry)) {
    registry = 'docker.io';
    if (!repository.includes('/')) repository = `library/${repository}`;
  }
  const host = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
  const http = insecure === true || (insecure === undefined && isLoopbackHost(host));
  return { registry, origin: `${http ? 'http' : 'https'}://${host}`, repository, mirror };
}

function mirrorApplies(p: PullFromMirror, ref: ImageReference): boolean {
  if (p === 'all') return true;
  return p === 'digest-only' ? ref.digest !== undefined : ref.digest === undefined;
}

export function routeFor(conf: RegistriesConf, ref: ImageReference): Route {
  const name = repositoryName(ref);
  const rc = findRegistryConfig(conf, ref);
  if (!rc) return { endpoints: [endpointFor(name, undefined, false)] };
  if (rc.blocked) throw new SourceError('REGISTRY_BLOCKED', `registry blocked by ${rc.prefix} in registries.conf`, { source: ref.string });
  const rewrite = (location: string): string => (rc.prefix.startsWith('*.') ? name : location + name.slice(rc.prefix.length));
  const endpoints: Endpoint[] = [];
  for (const m of rc.mirrors) {
    if (mirrorApplies(m.pullFromMirror, ref)) endpoints.push(endpointFor(rewrite(m.location), m.insecure, true));
  }
  endpoints.push(endpointFor(rewrite(rc.location || ref.domain), rc.insecure, false));
  return { endpoints };
}
