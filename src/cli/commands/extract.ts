/**
 * `lazy-als extract BLOB DIR [--toc-digest D] [--diff-id D] [--media-type T]`
 *
 * Writes the layer's verified overlay view (whiteouts as 0:0 char devices, opaque dirs with
 * trusted.overlay.opaque / user.overlay.opaque = y, owners, modes, mtimes, xattrs, devices, fifos,
 * hardlinks, symlinks) into DIR, all or nothing (see extract-tree.ts). Needs root for owners,
 * devices and trusted.* xattrs. DIR must not exist or be an empty directory.
 */
import { extractLayer } from '../../extract/extract-tree.js';
import { openLocalLayer, parseLayerArgs } from '../layer-args.js';
import { UsageError, type CommandIo } from '../main.js';

const HELP = `usage: lazy-als extract BLOB DIR [--toc-digest D] [--diff-id D] [--media-type T]
Verify a local layer blob and write its overlay-ready tree into DIR (created; must not exist or be empty).
  --toc-digest D   TOC digest the TOC must hash to (else the TOC is accepted unpinned, with a note)
  --diff-id D      expected diffID (verified for plain layers)
  --media-type T   descriptor media type, cross-checked against the bytes
`;

export async function run(argv: string[], io: CommandIo): Promise<number> {
  const args = parseLayerArgs(argv, false);
  if (args.help) {
    io.stdout.write(HELP);
    return 0;
  }
  if (args.positionals.length !== 2) throw new UsageError(`expected BLOB and DIR\n${HELP}`);
  const [blob, dir] = args.positionals as [string, string];
  const s = await extractLayer(dir, async (hooks) => {
    // shared memory: a plain tar's file content goes from the reads to the fs workers uncopied
    const l = await openLocalLayer(blob, args, io, hooks, { sharedMemory: true });
    return { index: l.index, blob: l.blob, ...(args.diffId !== undefined ? { diffId: args.diffId } : {}) };
  });
  io.stderr.write(`extracted ${s.entries} entries (${s.files} files, ${s.bytes} bytes) into ${dir}\n`);
  return 0;
}
