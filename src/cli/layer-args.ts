/**
 * Options shared by the commands that read a local layer blob, and opening it: --toc-digest pins
 * the TOC (without it the TOC is accepted unpinned — its digest is computed and reported, chunks are
 * still verified against it — and a note says so); --diff-id is checked by full-pass (plain) readers
 * and reported as unverified otherwise; --media-type is cross-checked against the bytes.
 */
import { parseArgs } from 'node:util';
import { FileBlob, type FileBlobOptions } from '../core/blob.js';
import { parseDigest, type Digest } from '../core/digest.js';
import { isTocFormat, openLayer, resolveLayerFormat, type LayerFormat, type OpenedLayer, type OpenLayerOptions } from '../formats/index.js';
import { UsageError, type CommandIo } from './main.js';

export interface LayerArgs {
  readonly positionals: string[];
  readonly tocDigest?: Digest;
  readonly diffId?: Digest;
  readonly mediaType?: string;
  readonly json: boolean;
  readonly help: boolean;
}

export function parseLayerArgs(argv: string[], withJson: boolean): LayerArgs {
  let v: ReturnType<typeof parse>;
  function parse() {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'toc-digest': { type: 'string' },
        'diff-id': { type: 'string' },
        'media-type': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...(withJson ? { json: { type: 'boolean' as const } } : {}),
      },
    });
  }
  try {
    v = parse();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const o = v.values as Record<string, string | boolean | undefined>;
  const digest = (k: string): Digest | undefined => {
    const s = o[k];
    if (typeof s !== 'string') return undefined;
    try {
      return parseDigest(s, `--${k}`);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  };
  return {
    positionals: v.positionals,
    ...(digest('toc-digest') ? { tocDigest: digest('toc-digest')! } : {}),
    ...(digest('diff-id') ? { diffId: digest('diff-id')! } : {}),
    ...(typeof o['media-type'] === 'string' ? { mediaType: o['media-type'] } : {}),
    json: o['json'] === true,
    help: o['help'] === true,
  };
}

/** The CLI never persists a layer: no record (an extract's plain layer has none: unaddressedPieces). */
export interface OpenedLocalLayer extends Pick<OpenedLayer, 'index'> {
  readonly blob: FileBlob;
  readonly format: LayerFormat;
}

/** Open a local blob file as a layer. The caller closes `blob`. */
export async function openLocalLayer(
  path: string,
  args: LayerArgs,
  io: CommandIo,
  extra: Pick<OpenLayerOptions, 'onPlainChunk' | 'unaddressedPieces' | 'signal'> = {},
  blobOptions: Pick<FileBlobOptions, 'sharedMemory'> = {},
): Promise<OpenedLocalLayer> {
  const blob = await FileBlob.open(path, { ...blobOptions, followSymlinks: true }); // a path the user named; FIFOs still refused
  try {
    const options: OpenLayerOptions = {
      ...(args.tocDigest !== undefined ? { expectedTocDigest: args.tocDigest } : { allowUnpinnedToc: true }),
      ...(args.diffId !== undefined ? { diffId: args.diffId } : {}),
      ...(args.mediaType !== undefined ? { descriptor: { mediaType: args.mediaType } } : {}),
      ...extra,
    };
    const format = await resolveLayerFormat(blob, options);
    if (args.tocDigest === undefined && isTocFormat(format)) {
      io.stderr.write(`note: the ${format} TOC was not pinned (no --toc-digest): its digest is computed from the blob, not checked\n`);
    }
    const opened = await openLayer(blob, { ...options, format });
    return { index: opened.index, blob, format };
  } catch (e) {
    await blob.close();
    throw e;
  }
}
