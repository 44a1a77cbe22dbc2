/** The shipped example config must load as-is and equal the embedded defaults. */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, loadConfigFile, parseSize } from '../../src/daemon/config.js';

describe('contrib/lazy-als.conf', () => {
  it('is valid TOML with exactly the defaults', async () => {
    const path = fileURLToPath(new URL('../../contrib/lazy-als.conf', import.meta.url));
    // The example is named .conf (TOML); .json would switch the parser.
    const c = await loadConfigFile(path);
    expect({ ...c, configFile: undefined }).toEqual({ ...DEFAULTS, configFile: undefined });
  });

  it('parses sizes', () => {
    expect(parseSize('10GiB', 'x')).toBe(10 * 1024 ** 3);
    expect(parseSize('512M', 'x')).toBe(512 * 1024 ** 2);
    expect(parseSize(123, 'x')).toBe(123);
    expect(() => parseSize('-1', 'x')).toThrow(/size/);
  });
});
