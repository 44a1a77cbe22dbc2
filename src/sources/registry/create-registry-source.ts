/**
 * Build a RegistrySource from the host's configuration: registries.conf (+ drop-ins) and the
 * containers auth files, with optional extra credential providers (the auth-helper store) first.
 */
import { silentLogger, type Logger } from '../../core/log.js';
import type { CredentialProvider } from '../credentials.js';
import { AuthFileCredentials } from './auth-file.js';
import { loadRegistriesConf } from './registries-conf.js';
import { RegistrySource, type RegistrySourceOptions } from './registry-source.js';

export interface HostRegistryOptions {
  readonly registriesConf?: string;
  readonly authFile?: string;
  readonly credentials?: readonly CredentialProvider[];
  readonly logger?: Logger;
  readonly env?: NodeJS.ProcessEnv;
  readonly extra?: Omit<RegistrySourceOptions, 'registries' | 'credentials' | 'logger'>;
}

export async function createRegistrySource(o: HostRegistryOptions = {}): Promise<RegistrySource> {
  const env = o.env ?? process.env;
  const registries = await loadRegistriesConf({ ...(o.registriesConf ? { path: o.registriesConf } : {}), env });
  const logger = o.logger ?? silentLogger;
  logger.debug('registry.config', { files: registries.files, registries: registries.registries.length });
  return new RegistrySource({
    ...o.extra,
    registries,
    credentials: [...(o.credentials ?? []), new AuthFileCredentials({ ...(o.authFile ? { authFile: o.authFile } : {}), env, logger })],
    logger,
  });
}
