/**
 * Image references, normalised exactly as podman's (distribution/reference) ParseNormalizedNamed
 * followed by TagNameOnly: this string is what c/storage base64-encodes into the ALS path element.
 *
 *  - The first path component is a registry domain when it contains "." or ":", is "localhost",
 *    or contains an upper-case letter; otherwise the reference is on Docker Hub ("docker.io").
 *  - "index.docker.io" is spelled "docker.io"; single-component Docker Hub names get "library/".
 *  - No tag and no digest: ":latest". Tag and digest: the tag is dropped ("name@digest").
 */
import { parseDigest, type Digest } from '../core/digest.js';
import { decodeBase64Strict } from '../core/base64.js';
import { InvalidReferenceError } from './errors.js';

export interface ImageReference {
  readonly domain: string;
  /** Repository path on the domain, e.g. "library/busybox". */
  readonly path: string;
  readonly tag?: string;
  readonly digest?: Digest;
  /** Normalised full string, e.g. "docker.io/library/busybox:latest". */
  readonly string: string;
}

const DOCKER_HUB_DOMAIN = 'docker.io';
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

// distribution/reference grammar (regexp.go), written out here.
const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|[-]+)';
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const IPV6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|${IPV6})(?::[0-9]+)?$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const MAX_NAME = 255;

/** Whether `host` names Docker Hub (any of its spellings). */
export function isDockerHub(host: string): boolean {
  return DOCKER_HUB_ALIASES.has(host.toLowerCase());
}

export function parseReference(input: string): ImageReference {
  if (typeof input !== 'string' || input.length === 0) throw new InvalidReferenceError('empty reference');
  if (input.length > 4096 || /\s/.test(input)) throw new InvalidReferenceError(`invalid reference ${JSON.stringify(input.slice(0, 200))}`);
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    try {
      digest = parseDigest(rest.slice(at + 1), 'reference digest');
    } catch {
      throw new InvalidReferenceError(`invalid digest in reference ${JSON.stringify(input)}`);
    }
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw new InvalidReferenceError(`invalid tag ${JSON.stringify(tag)} in reference ${JSON.stringify(input)}`);
  }
  let domain: string;
  let path: string;
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost' || first.toLowerCase() !== first)) {
    domain = first;
    path = rest.slice(slash + 1);
  } else {
    domain = DOCKER_HUB_DOMAIN;
    path = rest;
  }
  if (domain === 'index.docker.io') domain = DOCKER_HUB_DOMAIN;
  if (domain === DOCKER_HUB_DOMAIN && !path.includes('/')) path = `library/${path}`;
  if (!DOMAIN_RE.test(domain)) throw new InvalidReferenceError(`invalid registry domain ${JSON.stringify(domain)} in reference ${JSON.stringify(input)}`);
  if (!PATH_RE.test(path)) {
    const why = path.toLowerCase() === path ? 'invalid repository name' : 'repository name must be lowercase';
    throw new InvalidReferenceError(`${why}: ${JSON.stringify(path)} in reference ${JSON.stringify(input)}`);
  }
  if (domain.length + 1 + path.length > MAX_NAME) throw new InvalidReferenceError(`repository name longer than ${MAX_NAME} characters`);
  if (digest !== undefined) tag = undefined;
  else if (tag === undefined) tag = 'latest';
  const name = `${domain}/${path}`;
  const string = digest !== undefined ? `${name}@${digest}` : `${name}:${tag}`;
  return Object.freeze({ domain, path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}), string });
}

/** "domain/path" without tag or digest. */
export function repositoryName(ref: Pick<ImageReference, 'domain' | 'path'>): string {
  return `${ref.domain}/${ref.path}`;
}

/** The same repository pinned to a digest (tag dropped, as podman does). */
export function withDigest(ref: ImageReference, digest: Digest): ImageReference {
  return parseReference(`${repositoryName(ref)}@${digest}`);
}

/** The ALS path element: standard base64 with padding of the normalised reference string. */
export function refToBase64(ref: ImageReference | string): string {
  const s = typeof ref === 'string' ? parseReference(ref).string : ref.string;
  return Buffer.from(s, 'utf8').toString('base64');
}

/**
 * Decode an ALS path element. Rejects anything that is not canonical padded standard base64 of a
 * reference that is already in normalised form (podman never writes any other spelling).
 */
export function refFromBase64(elem: string): ImageReference {
  const buf = elem.length > 0 && elem.length <= 4096 ? decodeBase64Strict(elem) : undefined;
  if (buf === undefined) {
    throw new InvalidReferenceError(`reference element is not padded standard base64: ${JSON.stringify(elem.slice(0, 100))}`);
  }
  // One spelling per reference: podman writes the canonical encoding, so only that names a layer.
  if (buf.toString('base64') !== elem) throw new InvalidReferenceError(`reference element is not canonical base64: ${JSON.stringify(elem.slice(0, 100))}`);
  const s = buf.toString('utf8');
  if (Buffer.from(s, 'utf8').compare(buf) !== 0) throw new InvalidReferenceError('reference element does not decode to UTF-8');
  const ref = parseReference(s);
  if (ref.string !== s) throw new InvalidReferenceError(`reference element ${JSON.stringify(s)} is not in normalised form (${ref.string})`);
  return ref;
}
