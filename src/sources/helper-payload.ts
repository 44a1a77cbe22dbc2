/**
 * The additional-layer-store-auth-helper payload (containers/image ≥ 5.31, docs/als-contract.md §9): one
 * JSON object `{"<physical ref>": {"username","password","identityToken"}}` on the helper's stdin,
 * keys omitted when empty, `{}` for anonymous access. Several entries may come at once.
 */
import { SourceError } from './errors.js';
import type { Credentials } from './credentials.js';
import { parseReference, type ImageReference } from './reference.js';

export const MAX_HELPER_PAYLOAD_BYTES = 1024 * 1024;

export interface HelperEntry {
  readonly ref: ImageReference;
  readonly credentials: Credentials;
}

function bad(msg: string): SourceError {
  return new SourceError('CREDENTIALS_INVALID', `auth-helper payload: ${msg}`);
}

export function parseHelperPayload(input: string | Uint8Array): HelperEntry[] {
  const text = typeof input === 'string' ? input : Buffer.from(input).toString('utf8');
  if (Buffer.byteLength(text) > MAX_HELPER_PAYLOAD_BYTES) throw bad('larger than 1 MiB');
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw bad('not a JSON object');
  const out: HelperEntry[] = [];
  for (const [key, value] of Object.entries(j)) {
    let ref: ImageReference;
    try {
      ref = parseReference(key);
    } catch (e) {
      throw bad(`key ${JSON.stringify(key.slice(0, 200))} is not an image reference: ${(e as Error).message}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(`value for ${ref.string} is not an object`);
    const v = value as Record<string, unknown>;
    const creds: { username?: string; password?: string; identityToken?: string } = {};
    for (const k of ['username', 'password', 'identityToken'] as const) {
      const f = v[k];
      if (f === undefined || f === null || f === '') continue;
      if (typeof f !== 'string') throw bad(`${k} for ${ref.string} is not a string`);
      creds[k] = f;
    }
    if ((creds.username === undefined) !== (creds.password === undefined) && creds.identityToken === undefined) {
      throw bad(`${ref.string}: username and password must come together`);
    }
    out.push({ ref, credentials: creds });
  }
  return out;
}
