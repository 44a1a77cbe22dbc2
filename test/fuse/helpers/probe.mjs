// Runs filesystem syscalls in a separate process (the FUSE server under test lives in the test
// process, whose JS thread must stay free to answer them) and prints one JSON result per op.
// Usage: node probe.mjs '<json array of ops>'
import fs from 'node:fs';
import { createHash } from 'node:crypto';

const ops = JSON.parse(process.argv[2]);
const TYPES = [
  ['isDirectory', 'dir'], ['isFile', 'reg'], ['isSymbolicLink', 'symlink'],
  ['isCharacterDevice', 'char'], ['isBlockDevice', 'block'], ['isFIFO', 'fifo'],
];
const typeOf = (d) => (TYPES.find(([m]) => d[m]()) ?? [null, 'unknown'])[1];
const out = [];
for (const op of ops) {
  try {
    let value;
    switch (op.op) {
      case 'lstat': case 'stat': {
        const s = fs[op.op + 'Sync'](op.path, { bigint: true });
        value = { ino: s.ino.toString(), mode: Number(s.mode), size: Number(s.size), nlink: Number(s.nlink), uid: Number(s.uid), gid: Number(s.gid), rdev: Number(s.rdev), mtimeMs: Number(s.mtimeMs), type: typeOf(s) };
        break;
      }
      case 'readdir':
        value = fs.readdirSync(op.path, { withFileTypes: true }).map((d) => ({ name: d.name, type: typeOf(d) }));
        break;
      case 'readlink':
        value = fs.readlinkSync(op.path);
        break;
      case 'read': {
        const b = fs.readFileSync(op.path);
        value = { length: b.length, sha256: createHash('sha256').update(b).digest('hex'), text: b.length <= 4096 ? b.toString('utf8') : undefined };
        break;
      }
      case 'create': // what containers/storage does for `use`: os.Create = O_RDWR|O_CREAT|O_TRUNC
        fs.closeSync(fs.openSync(op.path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o666));
        value = 'created';
        break;
      case 'mknod-like': // open(O_CREAT|O_EXCL|O_WRONLY)
        fs.closeSync(fs.openSync(op.path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644));
        value = 'created';
        break;
      case 'openWrite':
        fs.closeSync(fs.openSync(op.path, fs.constants.O_WRONLY));
        value = 'opened';
        break;
      case 'rmdir': fs.rmdirSync(op.path); value = 'removed'; break;
      case 'mkdir': fs.mkdirSync(op.path); value = 'made'; break;
      case 'unlink': fs.unlinkSync(op.path); value = 'unlinked'; break;
      case 'rename': fs.renameSync(op.path, op.to); value = 'renamed'; break;
      case 'symlink': fs.symlinkSync('x', op.path); value = 'linked'; break;
      case 'chmod': fs.chmodSync(op.path, 0o777); value = 'chmodded'; break;
      case 'truncate': fs.truncateSync(op.path, 0); value = 'truncated'; break;
      case 'access': fs.accessSync(op.path, fs.constants[op.mode ?? 'F_OK']); value = 'ok'; break;
      default: throw new Error('unknown op ' + op.op);
    }
    out.push({ ok: true, value });
  } catch (e) {
    out.push({ ok: false, code: e.code ?? String(e) });
  }
}
process.stdout.write(JSON.stringify(out));
