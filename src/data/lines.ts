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

/**
 * Buffered synchronous writer: each string is UTF-8 encoded straight into one reusable buffer that is
 * written out when full (measured ~3x cheaper than collecting strings and joining them).
 */
export class LineWriter {
  private fd: number;
  private buf: Buffer;
  private off = 0;
  bytes = 0;

  constructor(readonly path: string, bufferSize = 1 << 20) {
    this.fd = openSync(path, 'w');
    this.buf = Buffer.allocUnsafe(Math.max(4096, bufferSize));
  }

  write(s: string): void {
    // a UTF-16 code unit takes at most 3 UTF-8 bytes
    if (this.off + 3 * s.length > this.buf.length) {
      this.flush();
      if (3 * s.length > this.buf.length) {
        this.writeBytes(Buffer.from(s, 'utf8'));
        return;
      }
    }
    this.off += this.buf.write(s, this.off, 'utf8');
  }

  writeBytes(b: Uint8Array): void {
    this.flush();
    let done = 0;
    while (done < b.length) done += writeSync(this.fd, b, done, b.length - done);
    this.bytes += b.length;
  }

  flush(): void {
    if (this.off === 0) return;
    let done = 0;
    while (done < this.off) done += writeSync(this.fd, this.buf, done, this.off - done);
    this.bytes += this.off;
    this.off = 0;
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
