// A dependency-free SVG loss plot: per-step training loss (left) and per-epoch training and
// validation L_main (right). Plain SVG so it opens in any browser and diffs as text.

export interface Series {
  label: string;
  color: string;
  points: Array<[number, number]>;
}

interface Panel {
  title: string;
  xLabel: string;
  series: Series[];
}

const W = 460;
const H = 300;
const M = { l: 58, r: 16, t: 30, b: 44 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-3)) return v.toExponential(1);
  return Number(v.toPrecision(4)).toString();
}

function panel(p: Panel, x0: number): string {
  const pts = p.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const parts: string[] = [];
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  parts.push(`<g transform="translate(${x0},0)">`);
  parts.push(`<text x="${M.l + pw / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
  parts.push(`<rect x="${M.l}" y="${M.t}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  if (pts.length === 0) {
    parts.push(`<text x="${M.l + pw / 2}" y="${M.t + ph / 2}" text-anchor="middle" font-size="12" fill="#888">no data</text></g>`);
    return parts.join('\n');
  }
  let [xlo, xhi] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [ylo, yhi] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (xhi === xlo) [xlo, xhi] = [xlo - 1, xhi + 1];
  if (yhi === ylo) [ylo, yhi] = [ylo - Math.abs(ylo) * 0.05 - 1e-6, yhi + Math.abs(yhi) * 0.05 + 1e-6];
  const pad = (yhi - ylo) * 0.05;
  ylo -= pad;
  yhi += pad;
  const sx = (x: number) => M.l + ((x - xlo) / (xhi - xlo)) * pw;
  const sy = (y: number) => M.t + ph - ((y - ylo) / (yhi - ylo)) * ph;
  for (const t of niceTicks(ylo, yhi)) {
    parts.push(`<line x1="${M.l}" x2="${M.l + pw}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#eee"/>`);
    parts.push(`<text x="${M.l - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end" font-size="11">${fmt(t)}</text>`);
  }
  for (const t of niceTicks(xlo, xhi)) {
    parts.push(`<text x="${sx(t).toFixed(1)}" y="${M.t + ph + 16}" text-anchor="middle" font-size="11">${fmt(t)}</text>`);
  }
  parts.push(`<text x="${M.l + pw / 2}" y="${H - 8}" text-anchor="middle" font-size="12">${esc(p.xLabel)}</text>`);
  p.series.forEach((s, i) => {
    const ok = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (ok.length === 0) return;
    const d = ok.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"/>`);
    if (ok.length <= 60) for (const [x, y] of ok) parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="${s.color}"/>`);
    const ly = M.t + 14 + i * 16;
    parts.push(`<line x1="${M.l + pw - 120}" x2="${M.l + pw - 100}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"/>`);
    parts.push(`<text x="${M.l + pw - 96}" y="${ly}" font-size="11">${esc(s.label)}</text>`);
  });
  parts.push('</g>');
  return parts.join('\n');
}

export interface LossPlotInput {
  title: string;
  steps: Array<[number, number]>; // (global step, training total loss)
  epochTrain: Array<[number, number]>; // (epoch, training L_main)
  epochVal: Array<[number, number]>; // (epoch, validation L_main)
}

export function lossSvg(input: LossPlotInput): string {
  const left = panel({ title: 'training loss per step', xLabel: 'step', series: [{ label: 'train total', color: '#1f77b4', points: input.steps }] }, 0);
  const right = panel(
    {
      title: 'L_main per epoch',
      xLabel: 'epoch',
      series: [
        { label: 'train', color: '#1f77b4', points: input.epochTrain },
        { label: 'validation', color: '#d62728', points: input.epochVal },
      ],
    },
    W,
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H + 24}" viewBox="0 0 ${2 * W} ${H + 24}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W}" y="${H + 18}" text-anchor="middle" font-size="12" fill="#444">${esc(input.title)}</text>`,
    left,
    right,
    '</svg>',
    '',
  ].join('\n');
}
