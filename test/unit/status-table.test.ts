/** `lazy-als status` says which layers were refused and which quarantined, and why (issue 8). */
import { describe, expect, it } from 'vitest';
import { renderStatus } from '../../src/cli/status-table.js';

describe('status table', () => {
  it('lists refused and quarantined layers with their kind, code and message', () => {
    const now = 1_700_000_000_000;
    const out = renderStatus(
      {
        catalog: {
          refused: [
            { kind: 'quarantined', key: 'sha256:' + 'a'.repeat(64), code: 'FORMAT_CONFLICT', message: 'served layer and tar header disagree on the mode', at: now - 5000 },
            { kind: 'refused', key: 'sha256:' + 'b'.repeat(64), code: 'DIFFID_MISMATCH', message: 'uncompressed layer hashes to …', at: now - 60_000 },
          ],
        },
      },
      now,
    );
    const lines = out.split('\n');
    const q = lines.find((l) => l.includes('quarantined'));
    expect(q).toMatch(/FORMAT_CONFLICT/);
    expect(q).toMatch(/disagree on the mode/);
    expect(lines.find((l) => l.includes('DIFFID_MISMATCH'))).toMatch(/\brefused\b/);
  });
});
