// A dependency-free progress bar on stderr. On a TTY it redraws one line; otherwise (CI, logs) it
// prints a line at most every `intervalMs` so long jobs still show life without flooding output.
export interface ProgressOptions {
  label: string;
  total?: number; // unknown totals show a counter and a rate only
  unit?: string; // e.g. 'users'
  intervalMs?: number;
  stream?: NodeJS.WriteStream;
  silent?: boolean;
}

export class Progress {
  private done = 0;
  private readonly start = performance.now();
  private lastDraw = 0;
  private extra = '';
  private readonly tty: boolean;
  private readonly stream: NodeJS.WriteStream;
  private readonly silent: boolean;

  constructor(private readonly opts: ProgressOptions) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = Boolean(this.stream.isTTY);
    // runtime.progress in the config schema (util cannot read the config: it sits below it).
    this.silent = opts.silent ?? ['0', 'false', 'off'].includes((process.env.AETN_PROGRESS ?? '').trim().toLowerCase());
  }

  /** Advance by n units; `extra` is a short status such as `loss 0.231`. */
  tick(n = 1, extra?: string): void {
    this.done += n;
    if (extra !== undefined) this.extra = extra;
    const now = performance.now();
    const interval = this.opts.intervalMs ?? (this.tty ? 100 : 5000);
    if (now - this.lastDraw >= interval) {
      this.lastDraw = now;
      this.draw(false);
    }
  }

  set(done: number, extra?: string): void {
    this.tick(done - this.done, extra);
  }

  get count(): number {
    return this.done;
  }

  get rate(): number {
    const s = (performance.now() - this.start) / 1000;
    return s > 0 ? this.done / s : 0;
  }

  finish(extra?: string): void {
    if (extra !== undefined) this.extra = extra;
    this.draw(true);
  }

  private draw(final: boolean): void {
    if (this.silent) return;
    const { label, total, unit = 'items' } = this.opts;
    const secs = (performance.now() - this.start) / 1000;
    const rate = `${fmt(this.rate)} ${unit}/s`;
    let line: string;
    if (total && total > 0) {
      const frac = Math.min(1, this.done / total);
      const width = 28;
      const fill = Math.round(frac * width);
      const eta = this.rate > 0 ? (total - this.done) / this.rate : 0;
      line = `${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${(frac * 100).toFixed(1)}% ${this.done}/${total} ${rate} ${final ? `in ${secs.toFixed(1)}s` : `eta ${eta.toFixed(0)}s`}`;
    } else {
      line = `${label} ${this.done} ${unit} ${rate} ${secs.toFixed(1)}s`;
    }
    if (this.extra) line += ` ${this.extra}`;
    if (this.tty) this.stream.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
    else this.stream.write(`${line}\n`);
  }
}

function fmt(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}
