import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { open, seal } from '../../src/credentials/seal.js';

describe('sealing deploy tokens (AES-256-GCM)', () => {
  const key = randomBytes(32);
  const token = 'gldt-abcdefghijklmnopqrst';

  it('opens with the key and the same row id, with a fresh IV every time', () => {
    const a = seal(key, token, 'row-1');
    const b = seal(key, token, 'row-1');
    expect(a.subarray(0, 12).equals(b.subarray(0, 12))).toBe(false);
    expect(a.includes(Buffer.from(token))).toBe(false);
    expect(a.length).toBe(12 + 16 + Buffer.byteLength(token));
    expect(open(key, a, 'row-1')).toBe(token);
  });

  it('does not open under another key, for another row, or tampered', () => {
    const sealed = seal(key, token, 'row-1');
    expect(open(randomBytes(32), sealed, 'row-1')).toBeUndefined();
    expect(open(key, sealed, 'row-2')).toBeUndefined();
    const tampered = Buffer.from(sealed);
    tampered[tampered.length - 1]! ^= 1;
    expect(open(key, tampered, 'row-1')).toBeUndefined();
    expect(open(key, sealed.subarray(0, 20), 'row-1')).toBeUndefined();
  });
});
