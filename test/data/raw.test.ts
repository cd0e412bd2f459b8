import { describe, expect, it } from 'vitest';
import { intStr } from '../../src/data/lines.js';
import { parseTimestamp, splitCsv } from '../../src/data/raw.js';
import { dateBucket, weeksBefore } from '../../src/data/prepare.js';

describe('raw field parsing', () => {
  it('splits CSV lines with RFC 4180 quoting and refuses broken quoting', () => {
    expect(splitCsv('a,b,,c')).toEqual(['a', 'b', '', 'c']);
    expect(splitCsv('"a,1","say ""hi""",x')).toEqual(['a,1', 'say "hi"', 'x']);
    expect(splitCsv('x,"y"')).toEqual(['x', 'y']);
    expect(splitCsv('"open,b')).toBeNull();
    expect(splitCsv('"a"b,c')).toBeNull();
    expect(splitCsv('a"b,c')).toBeNull();
  });

  it('reads ms integers and ISO 8601 (UTC when no zone) and rejects the rest', () => {
    expect(parseTimestamp('1719833109862')).toBe(1719833109862);
    expect(parseTimestamp(1719833109862)).toBe(1719833109862);
    expect(parseTimestamp('2024-07-01T11:25:09.862Z')).toBe(1719833109862);
    expect(parseTimestamp('2024-07-01T11:25:09.862')).toBe(1719833109862);
    expect(parseTimestamp('2024-07-01T13:25:09.862+02:00')).toBe(1719833109862);
    expect(parseTimestamp('2024-07-01')).toBe(Date.UTC(2024, 6, 1));
    for (const bad of ['', 'yesterday', '12ab', -5, 1.5, '99999999999999999999']) expect(parseTimestamp(bad)).toBeNull();
  });

  it('formats large integers exactly', () => {
    for (const n of [0, 7, 2147483647, 2147483648, 10_000_000_000, 1719833109862, 1700000000000, 1719830000001, 2 ** 53 - 1]) expect(intStr(n)).toBe(String(n));
  });

  it('counts weeks back from the end of the reference date', () => {
    const end = Date.UTC(2025, 0, 1);
    expect(weeksBefore(end - 1, end)).toBe(0);
    expect(weeksBefore(end - 7 * 86_400_000, end)).toBe(0);
    expect(weeksBefore(end - 7 * 86_400_000 - 1, end)).toBe(1);
    expect(dateBucket(end - 1000 * 86_400_000, end, 52)).toBe(51);
    expect(dateBucket(end + 5, end, 52)).toBe(0);
  });
});
