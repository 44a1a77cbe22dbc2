/**
 * Writes OCI image layouts (the format OciLayoutSource reads). Blobs are streamed to a temp file in
 * the same directory while hashed, checked against the expected digest and size, then renamed into
 * place, so a reader never sees a partial or wrong blob. index.json is rewritten atomically too.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DigestHasher, type Digest } from '../../core/digest.js';
import { DigestMismatchError } from '../../core/errors.js';
import { SourceError } from '../errors.js';
import { blobPath, REF_NAME_ANNOTATION } from './oci-layout.js';

export interface LayoutDescriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly annotations?: Record<string, string>;
}

export class OciLayoutWriter {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  async init(): Promise<void> {
    await mkdir(join(this.dir, 'blobs'), { recursive: true });
    await writeFile(join(this.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }) + '\n');
  }

  async has(d: Digest, size?: number): Promise<boolean> {
    try {
      const st = await stat(blobPath(this.dir, d));
      return st.isFile() && (size === undefined || st.size === size);
    } catch {
      return false;
    }
  }

  /** Write a blob from bytes or a stream; verified before it becomes visible. Returns bytes written. */
  async writeBlob(d: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, size?: number): Promise<number> {
    const final = blobPath(this.dir, d);
    await mkdir(dirname(final), { recursive: true });
    const tmp = `${final}.tmp-${randomBytes(6).toString('hex')}`;
    const fh = await open(tmp, 'wx');
    const h = DigestHasher.for(d);
    try {
      const chunks = data instanceof Uint8Array ? [data] : data;
      for await (const c of chunks) {
        h.update(c);
        await fh.write(c);
      }
      await fh.sync();
    } catch (e) {
      await fh.close();
      await rm(tmp, { force: true });
      throw e;
    }
    await fh.close();
    const got = h.digest();
    if (got !== d || (size !== undefined && h.bytes !== size)) {
      await rm(tmp, { force: true });
      if (got !== d) throw new DigestMismatchError('blob written to layout', d, got, { blob: d, source: this.dir });
      throw new SourceError('BODY_TRUNCATED', `blob has ${h.bytes} bytes, descriptor says ${size}`, { blob: d, source: this.dir });
    }
    await rename(tmp, final);
    return h.bytes;
  }

  /** Add (or replace, for the same ref name) a top-level entry of index.json. */
  async addToIndex(desc: LayoutDescriptor): Promise<void> {
    const path = join(this.dir, 'index.json');
    let index: { schemaVersion: number; mediaType?: string; manifests: LayoutDescriptor[] } = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [],
    };
    try {
      index = JSON.parse(await readFile(path, 'utf8')) as typeof index;
      if (!Array.isArray(index.manifests)) index.manifests = [];
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new SourceError(
        'LAYOUT_INVALID',
        'existing index.json unreadable',
        { source: path },
        { cause: e },
      );
    }
    const name = desc.annotations?.[REF_NAME_ANNOTATION];
    index.manifests = index.manifests.filter((m) =>
      name !== undefined
        ? m.annotations?.[REF_NAME_ANNOTATION] !== name
        : !(m.digest === desc.digest && m.annotations?.[REF_NAME_ANNOTATION] === undefined),
    );
    index.manifests.push(desc);
    const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
    await writeFile(tmp, JSON.stringify(index, null, 2) + '\n');
    await rename(tmp, path);
  }
}
