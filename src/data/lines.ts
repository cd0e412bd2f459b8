// Streaming line I/O. Reading splits 1 MiB chunks by hand (faster than node:readline) and never
// holds more than one chunk plus a partial line; writing batches small strings into large writes.
import { closeSync, openSync, readSync, writeSync, fstatSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { UserError } from '../util/errors.js';

/** Yields the lines of a UTF-8 text file (without the newline; a trailing \r is removed) with 1-based line numbers. */
export function* readLines(path: string, chunkSize = 1 << 20): Generator<[string, number]> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new UserError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    if (fstatSync(fd).isDirectory()) throw new UserError(`cannot read ${path}: it is a directory`);
    const buf = Buffer.allocUnsafe(chunkSize);
    const dec = new StringDecoder('utf8');
    let rest = '';
    let lineNo = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, chunkSize, null);
      if (n === 0) break;
      const text = rest + dec.write(n === chunkSize ? buf : buf.subarray(0, n));
      let start = 0;
      for (;;) {
        const nl = text.indexOf('\n', start);
        if (nl < 0) break;
        let end = nl;
        if (end > start && text.charCodeAt(end - 1) === 13) end--;
        lineNo++;
        yield [text.slice(start, end), lineNo];
        start = nl + 1;
      }
      rest = text.slice(start);
    }
    rest += dec.end();
    if (rest.length > 0) {
      if (rest.charCodeAt(rest.length - 1) === 13) rest = rest.slice(0, -1);
      lineNo++;
      yield [rest, lineNo];
    }
  } finally {
    closeSync(fd);
  }
}

/** Buffered synchronous writer: strings are joined and flushed in ~1 MiB writes. */
export class LineWriter {
  private fd: number;
  private parts: string[] = [];
  private size = 0;
  bytes = 0;

  constructor(readonly path: string, private readonly flushAt = 1 << 20) {
    this.fd = openSync(path, 'w');
  }

  write(s: string): void {
    this.parts.push(s);
    this.size += s.length;
    if (this.size >= this.flushAt) this.flush();
  }

  writeBytes(b: Uint8Array): void {
    this.flush();
    writeSync(this.fd, b);
    this.bytes += b.length;
  }

  flush(): void {
    if (this.parts.length === 0) return;
    const b = Buffer.from(this.parts.join(''), 'utf8');
    writeSync(this.fd, b);
    this.bytes += b.length;
    this.parts = [];
    this.size = 0;
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

/** Integer to decimal string; V8's double-to-string is slow for 13-digit millisecond timestamps. */
export function intStr(n: number): string {
  if (n < 2147483648) return `${n}`;
  const hi = Math.floor(n / 1e7);
  return `${hi}${`${n - hi * 1e7 + 1e7}`.slice(1)}`;
}
