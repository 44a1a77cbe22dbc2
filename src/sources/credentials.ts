/**
 * Credentials for a registry, and the provider interface the registry client asks. Providers are
 * consulted in order (the auth-helper store first, then auth.json and credential helpers): the
 * first that knows the registry/repository wins.
 */
export interface Credentials {
  readonly username?: string;
  readonly password?: string;
  /** OAuth2 refresh token ("identitytoken" in auth.json, Secret of a "<token>" helper user). */
  readonly identityToken?: string;
}

export interface CredentialQuery {
  /** Registry host as the user spells it in references / auth.json keys (docker.io, not registry-1.docker.io). */
  readonly registry: string;
  /** Repository path on that registry. */
  readonly repository: string;
}

export interface CredentialProvider {
  /** undefined: this provider knows nothing; an empty object: explicitly anonymous. */
  lookup(q: CredentialQuery): Promise<Credentials | undefined>;
}

export function chainCredentials(...providers: readonly CredentialProvider[]): CredentialProvider {
  return {
    async lookup(q) {
      for (const p of providers) {
        const c = await p.lookup(q);
        if (c !== undefined) return c;
      }
      return undefined;
    },
  };
}

export function hasSecret(c: Credentials | undefined): c is Credentials {
  return c !== undefined && (c.identityToken !== undefined || (c.username !== undefined && c.password !== undefined));
}
