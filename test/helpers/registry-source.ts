/**
 * A RegistrySource wired for tests: no real sleeps between retries (backoff is still computed with
 * an injected random), short timeouts, optional static credentials.
 */
import type { Credentials, CredentialProvider } from '../../src/sources/credentials.js';
import { RegistrySource, type RegistrySourceOptions } from '../../src/sources/registry/registry-source.js';
import type { RegistryHandle } from './registry.js';

export function staticCredentials(map: Record<string, Credentials>): CredentialProvider {
  return { lookup: async (q) => map[q.registry] };
}

export function credentialsFor(reg: RegistryHandle): CredentialProvider {
  const [username, password] = Object.entries(reg.users)[0]!;
  return staticCredentials({ [reg.host]: { username, password } });
}

export function testSource(opts: RegistrySourceOptions & { sleeps?: number[] } = {}): RegistrySource {
  const sleeps = opts.sleeps;
  return new RegistrySource({
    timeoutMs: 10_000,
    ...opts,
    retry: {
      retries: 3,
      baseDelayMs: 10,
      maxDelayMs: 50,
      random: () => 0.5,
      sleep: async (ms) => {
        sleeps?.push(ms);
      },
      ...opts.retry,
    },
  });
}
