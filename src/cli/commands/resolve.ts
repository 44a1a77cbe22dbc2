/**
 * `lazy-als resolve REF [--json] [--dfs ROOT] [--no-registry] [--registries-conf FILE] [--auth-file FILE]`
 * Resolve a reference through the source chain (dfs first when given, then the registry) and print
 * every platform manifest with each layer's media type, blob digest, size, TOC digest and diffID,
 * and which source answered.
 */
import { parseCommand, REGISTRY_FLAGS } from '../command-args.js';
import { createLogger } from '../../core/log.js';
import { isLazyAlsError } from '../../core/errors.js';
import { OciLayoutSource } from '../../sources/dfs/oci-layout.js';
import { parseReference } from '../../sources/reference.js';
import { createRegistrySource } from '../../sources/registry/create-registry-source.js';
import { SourceChain } from '../../sources/source-chain.js';
import type { BlobSource, ResolvedImage } from '../../sources/source.js';

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const USAGE = 'usage: lazy-als resolve REF [--json] [--dfs ROOT] [--no-registry] [--registries-conf FILE] [--auth-file FILE] [--log-level LEVEL]\n';

export function imageSummary(img: ResolvedImage): unknown {
  return {
    reference: img.reference.string,
    digest: img.digest,
    mediaType: img.mediaType,
    source: img.sourceName,
    manifests: img.manifests.map((m) => ({
      digest: m.digest,
      mediaType: m.mediaType,
      platform: m.platform ?? null,
      config: m.configDigest,
      layers: m.layers.map((l) => ({
        index: l.index,
        mediaType: l.mediaType,
        digest: l.digest,
        size: l.size,
        tocDigest: l.tocDigest ?? null,
        diffId: l.diffId ?? null,
        ...(l.notes ? { notes: l.notes } : {}),
      })),
    })),
  };
}

function text(img: ResolvedImage): string {
  const out: string[] = [`${img.reference.string}  ${img.digest}  ${img.mediaType}`, `source: ${img.sourceName}`];
  for (const m of img.manifests) {
    const p = m.platform ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? '/' + m.platform.variant : ''}` : '-';
    out.push(`manifest ${m.digest} platform=${p} config=${m.configDigest}`);
    for (const l of m.layers) {
      out.push(`  [${l.index}] ${l.mediaType} blob=${l.digest} size=${l.size} toc=${l.tocDigest ?? '-'} diffID=${l.diffId ?? '-'}`);
      for (const n of l.notes ?? []) out.push(`      note: ${n}`);
    }
  }
  return out.join('\n') + '\n';
}

export async function buildSources(
  v: { dfs?: string | undefined; 'no-registry'?: boolean | undefined; 'registries-conf'?: string | undefined; 'auth-file'?: string | undefined },
  logLevel: string,
  stderr: NodeJS.WritableStream,
): Promise<BlobSource> {
  const logger = createLogger((logLevel as 'warn') ?? 'warn', stderr);
  const sources: BlobSource[] = [];
  if (v.dfs) sources.push(new OciLayoutSource(v.dfs, logger));
  if (!v['no-registry']) {
    sources.push(await createRegistrySource({
      ...(v['registries-conf'] ? { registriesConf: v['registries-conf'] } : {}),
      ...(v['auth-file'] ? { authFile: v['auth-file'] } : {}),
      logger,
    }));
  }
  return new SourceChain(sources, logger);
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(argv, io, USAGE, {
    json: { type: 'boolean' },
    dfs: { type: 'string' },
    'no-registry': { type: 'boolean' },
    ...REGISTRY_FLAGS,
  }, 1);
  if (typeof parsed === 'number') return parsed;
  let source: BlobSource | undefined;
  try {
    const ref = parseReference(parsed.positionals[0]!);
    source = await buildSources(parsed.values, parsed.values['log-level'] ?? 'warn', io.stderr);
    const img = await source.resolve(ref);
    io.stdout.write(parsed.values.json ? JSON.stringify(imageSummary(img), null, 2) + '\n' : text(img));
    return 0;
  } catch (e) {
    io.stderr.write(`lazy-als resolve: ${isLazyAlsError(e) ? `${e.code}: ` : ''}${(e as Error).message}\n`);
    return 1;
  } finally {
    await source?.close?.();
  }
}
