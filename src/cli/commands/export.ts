/**
 * `lazy-als export REF DIR [--registries-conf FILE] [--auth-file FILE]`
 * Copy an image (every platform) from its registry into an OCI layout under DIR
 * (`DIR/<domain>/<path>/`), the layout the dfs source reads. Every blob is verified while written.
 */
import { parseCommand, REGISTRY_FLAGS } from '../command-args.js';
import { createLogger } from '../../core/log.js';
import { isLazyAlsError } from '../../core/errors.js';
import { exportImage } from '../../sources/dfs/export-image.js';
import { parseReference } from '../../sources/reference.js';
import { createRegistrySource } from '../../sources/registry/create-registry-source.js';
import type { RegistrySource } from '../../sources/registry/registry-source.js';
import type { CliIo } from './resolve.js';

const USAGE = 'usage: lazy-als export REF DIR [--registries-conf FILE] [--auth-file FILE] [--log-level LEVEL]\n';

export async function run(argv: string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(argv, io, USAGE, { ...REGISTRY_FLAGS }, 2);
  if (typeof parsed === 'number') return parsed;
  const logger = createLogger((parsed.values['log-level'] as 'warn') ?? 'warn', io.stderr);
  let reg: RegistrySource | undefined;
  try {
    const ref = parseReference(parsed.positionals[0]!);
    const root = parsed.positionals[1]!;
    reg = await createRegistrySource({
      ...(parsed.values['registries-conf'] ? { registriesConf: parsed.values['registries-conf'] } : {}),
      ...(parsed.values['auth-file'] ? { authFile: parsed.values['auth-file'] } : {}),
      logger,
    });
    const r = reg;
    const img = await r.resolve(ref);
    const res = await exportImage(img, ref, root, async (d) => (await r.streamBlob(ref, d)).body, logger);
    const counts = `${res.blobsWritten} blobs written, ${res.blobsSkipped} already present, ${res.bytesWritten} bytes`;
    io.stdout.write(`${ref.string} ${img.digest} → ${res.dir} (${img.manifests.length} manifest(s), ${counts})\n`);
    return 0;
  } catch (e) {
    io.stderr.write(`lazy-als export: ${isLazyAlsError(e) ? `${e.code}: ` : ''}${(e as Error).message}\n`);
    return 1;
  } finally {
    await reg?.close();
  }
}
