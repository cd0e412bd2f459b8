// The evaluation report: Markdown laid out like the paper's Table 1, an SVG bar chart of Test #1
// (dependency-free), and a JSON file with every number next to the Markdown.
import type { EvalResults, Test1Row } from './evaluate.js';
import { meanStd, type Spread } from './metrics.js';
import { pairedAgainstBestClassical, type LaoKind, type LaoResults, type LaoRow } from './leave-app-out.js';

export interface DatasetStats {
  path: string;
  users: number;
  usersTotal?: number;
  apps: number;
  categories: number;
  referenceDate?: string;
  catalogApps?: number;
  meanRetention: number;
  meanInstalls: number;
  meanUninstalls: number;
  /** Weeks after the reference date whose installs are the labels (default 1). */
  labelWeeks?: number;
  /** `aetn eval --sample`: a uniform sample of the users, plus every niche adopter outside it for Test #1. */
  sample?: { uniform: number; adoptersAdded: number; total: number };
}

export interface ReportInput {
  command: string;
  startedAt: string;
  machine: string;
  dataset: DatasetStats;
  results: EvalResults;
  notes?: string;
  /** Relative path of the SVG as linked from the Markdown. */
  chartHref?: string;
  /** The leave-app-out chart, next to the report (absent when there is no leave-app-out result). */
  laoChartHref?: string;
  timings?: Record<string, number>;
  leaveAppOut?: LaoResults;
}

/** Test #1 averages the paper reports (Tencent data; docs/parts/model.md), by variant, for orientation only. */
export const PAPER_TABLE1: Record<string, number> = { dae: 0.7392, 'no-mask': 0.7908, vanilla: 0.7954, 'no-aux': 0.8, aetn: 0.8024 };
const VARIANT_LABEL: Record<string, string> = { dae: 'DAE', 'no-mask': 'AETN w/o L_mask', 'no-aux': 'AETN w/o L_aux', vanilla: 'V-AETN', aetn: 'AETN' };
/** The paper's expected order, weakest first. */
export const PAPER_ORDER = ['dae', 'no-mask', 'vanilla', 'no-aux', 'aetn'];

export function variantLabel(v: string): string {
  return VARIANT_LABEL[v] ?? v;
}

function f4(x: number | undefined): string {
  return x === undefined || Number.isNaN(x) ? '–' : x.toFixed(4);
}
function ms(s: Spread | undefined): string {
  if (!s || Number.isNaN(s.mean)) return '–';
  return s.n > 1 ? `${s.mean.toFixed(4)} ± ${s.std.toFixed(4)}` : s.mean.toFixed(4);
}
function pct(x: number): string {
  return Number.isNaN(x) ? '–' : `${(100 * x).toFixed(1)}%`;
}
function esc(s: string): string {
  return s.replace(/\|/g, '\\|');
}

/**
 * The gap between two Test #1 rows and its run-to-run spread. Every model is fitted on the same
 * split in run r, so the runs pair up: the spread is the sample standard deviation of the per-run
 * differences of the category averages (not the two rows' spreads combined, which would count the
 * split-to-split variation both rows share twice). Falls back to the combined spreads only when the
 * rows hold no per-run values.
 */
export function pairedGap(a: Test1Row, b: Test1Row): { diff: number; spread: number; runs: number; paired: boolean } {
  const perRun = (row: Test1Row) => {
    const byRun = new Map<number, number[]>();
    for (const x of row.runs) if (!Number.isNaN(x.auc)) (byRun.get(x.run) ?? byRun.set(x.run, []).get(x.run)!).push(x.auc);
    return new Map([...byRun].map(([r, v]) => [r, v.reduce((s, y) => s + y, 0) / v.length]));
  };
  const pa = perRun(a);
  const pb = perRun(b);
  const d: number[] = [];
  for (const [r, v] of pa) if (pb.has(r)) d.push(v - pb.get(r)!);
  if (d.length < 2) return { diff: a.average.mean - b.average.mean, spread: Math.hypot(a.average.std, b.average.std), runs: d.length, paired: false };
  const s = meanStd(d);
  return { diff: s.mean, spread: s.std, runs: d.length, paired: true };
}

function spreadsText(diff: number, spread: number): string {
  if (spread === 0) return diff === 0 ? 'no difference' : 'no spread';
  return `${(diff / spread).toFixed(1)} spreads`;
}

/** "A − B = x; paired spread of the difference s (k spreads): verdict" for two Test #1 rows. */
export function gapLine(a: Test1Row, b: Test1Row, la: string, lb: string): string {
  const { diff, spread: noise, runs, paired } = pairedGap(a, b);
  const verdict =
    diff > 2 * noise ? `${la} is ahead by more than two spreads.` : diff > noise ? `${la} is ahead by one to two spreads.` : diff >= -noise ? 'within one spread of each other.' : `${la} is behind by more than one spread.`;
  const what = paired ? `sample std of the ${runs} paired per-run differences` : 'the two run-to-run spreads combined';
  return `${la} − ${lb} = ${diff >= 0 ? '+' : ''}${diff.toFixed(4)}; spread of the difference ${noise.toFixed(4)} (${what}; ${spreadsText(diff, noise)}): ${verdict}`;
}

/** Does Test #1 follow the paper's ordering? One line per adjacent pair present in the results. */
export function orderingFindings(res: EvalResults): string[] {
  const rows = res.test1?.rows ?? [];
  const byVariant = new Map<string, Test1Row>();
  for (const m of res.models) {
    const r = rows.find((x) => x.model === m.name);
    if (r && PAPER_ORDER.includes(m.variant) && !byVariant.has(m.variant)) byVariant.set(m.variant, r);
  }
  const present = PAPER_ORDER.filter((v) => byVariant.has(v));
  const out: string[] = [];
  if (present.length < 2) return ['Fewer than two of the paper\'s variants were evaluated: no ordering to check.'];
  const line = present.map((v) => `${variantLabel(v)} ${f4(byVariant.get(v)!.average.mean)}`).join(' < ');
  out.push(`Paper order (Test #1 average AUC, weakest first): ${line.replace(/ < /g, ' → ')}.`);
  const dae = byVariant.get('dae');
  const aetn = byVariant.get('aetn');
  if (dae && aetn) {
    const { diff, spread: noise, runs, paired } = pairedGap(aetn, dae);
    out.push(
      `AETN − DAE = ${diff >= 0 ? '+' : ''}${diff.toFixed(4)} (paper: +${(PAPER_TABLE1.aetn - PAPER_TABLE1.dae).toFixed(4)}); ` +
        `spread of the difference ${noise.toFixed(4)} (${paired ? `sample std of the ${runs} paired per-run differences` : 'the two run-to-run spreads combined'}; ${spreadsText(diff, noise)}): ` +
        (diff > 2 * noise ? 'AETN is ahead by more than two spreads.' : Math.abs(diff) <= noise ? 'within one spread of each other.' : diff > 0 ? 'AETN is ahead by one to two spreads.' : 'the paper\'s gain does NOT reproduce here.'),
    );
  }
  // The questions of the synthetic world's report: does AETN beat the retention-only classical
  // baseline, does the realtime head add to AETN, and do recent sequences predict at all?
  // With several models of one variant (say two AETN trainings) each line names the one it uses:
  // the first of the variant, and for the head the AETN it was trained on (its base).
  const count = (variant: string) => res.models.filter((x) => x.variant === variant).length;
  const pick = (variant: string, base?: string) => {
    const m = res.models.find((x) => x.variant === variant && (base === undefined || x.featureId === base));
    const row = m ? rows.find((x) => x.model === m.name) : undefined;
    return m && row ? { m, row } : undefined;
  };
  const label = (variant: string, fallback: string, name: string) => (count(variant) > 1 || count(variant.split('+')[0]) > 1 ? name : fallback);
  const pairs: [string, string, string, string][] = [
    ['aetn', 'tfidf-svd', 'AETN', 'TF-IDF + SVD'],
    ['aetn', 'activity', 'AETN', 'activity'],
    ['aetn+realtime', 'aetn', 'AETN + head', 'AETN'],
    ['recent', 'tfidf-svd', 'recent events (classical)', 'TF-IDF + SVD'],
    ['tfidf-svd+recent', 'aetn', 'TF-IDF + SVD ‖ recent events', 'AETN'],
  ];
  for (const [va, vb, la, lb] of pairs) {
    const a = pick(va);
    // The combined row's feature id is '<base>+<head>': compare it with its own base.
    const b = va === 'aetn+realtime' && a?.m.featureId ? pick(vb, a.m.featureId.split('+')[0]) : pick(vb);
    if (a && b) out.push(gapLine(a.row, b.row, label(va, la, a.m.name), label(vb, lb, b.m.name)));
  }
  const inversions: string[] = [];
  for (let i = 0; i < present.length; i++)
    for (let j = i + 1; j < present.length; j++) {
      const ra = byVariant.get(present[i])!;
      const rb = byVariant.get(present[j])!;
      const g = pairedGap(ra, rb);
      if (g.diff > 0) inversions.push(`${variantLabel(present[i])} (${f4(ra.average.mean)}) > ${variantLabel(present[j])} (${f4(rb.average.mean)})${g.diff <= g.spread ? ' (within spread)' : ''}`);
    }
  out.push(inversions.length === 0 ? 'The full ordering holds.' : `Out of the paper's order: ${inversions.join('; ')}.`);
  return out;
}

export function renderMarkdown(input: ReportInput): string {
  const { results: r, dataset: ds } = input;
  const L: string[] = [];
  const paper = r.test1 !== undefined || r.test2 !== undefined || r.audience !== undefined || r.overlap !== undefined;
  const what = [paper ? "the paper's tests" : '', input.leaveAppOut ? 'leave-app-out look-alike' : ''].filter((x) => x !== '').join(' and ');
  L.push(`# Offline evaluation: ${what || 'no test ran'} on \`${esc(ds.path)}\``, '');
  L.push('Produced by:', '', '```sh', input.command, '```', '');
  L.push(`Started ${input.startedAt} on ${input.machine}; evaluation ${r.seconds.toFixed(0)} s${input.timings ? ` (${Object.entries(input.timings).map(([k, v]) => `${k} ${v.toFixed(0)} s`).join(', ')})` : ''}; seed ${r.seed}.`, '');

  L.push('## Dataset', '');
  L.push('| | |', '|---|---|');
  L.push(`| prepared data | \`${esc(ds.path)}\` |`);
  L.push(`| users evaluated | ${ds.users.toLocaleString('en-US')}${ds.usersTotal && ds.usersTotal !== ds.users ? ` of ${ds.usersTotal.toLocaleString('en-US')}` : ''} |`);
  if (ds.sample) {
    L.push(`| uniform sample (Test #1 negatives; every other test) | ${ds.sample.uniform.toLocaleString('en-US')} of ${ds.sample.total.toLocaleString('en-US')} users |`);
    L.push(`| niche adopters outside the sample, added for Test #1 | ${ds.sample.adoptersAdded.toLocaleString('en-US')} |`);
  }
  if (ds.referenceDate) L.push(`| reference date (held-out week follows) | ${ds.referenceDate} |`);
  L.push(`| apps in the vocabulary / categories | ${ds.apps.toLocaleString('en-US')} / ${ds.categories}${ds.catalogApps ? ` (catalog: ${ds.catalogApps.toLocaleString('en-US')} apps)` : ''} |`);
  L.push(`| mean retention / installs / uninstalls per user | ${ds.meanRetention.toFixed(1)} / ${ds.meanInstalls.toFixed(1)} / ${ds.meanUninstalls.toFixed(1)} |`);
  const window = (ds.labelWeeks ?? 1) === 1 ? 'next-week adopters' : `adopters in the ${ds.labelWeeks} held-out weeks`;
  if (r.test1) for (const c of r.test1.categories) L.push(`| niche category \`${esc(c.name)}\`: ${window} | ${c.positives} (${c.perMillion.toFixed(0)} per million) |`);
  if (r.test2) L.push(`| look-alike target \`${esc(r.test2.target)}\` (out of vocabulary): adopters | ${r.test2.adopters} (${pct(r.test2.rate)}) |`);
  L.push('');

  L.push('## Models', '');
  L.push('| model | variant | feature id | dim | details |', '|---|---|---|---:|---|');
  for (const m of r.models) {
    const info = m.info ? Object.entries(m.info).map(([k, v]) => `${k}: ${typeof v === 'number' ? (Number.isInteger(v) ? v.toLocaleString('en-US') : v.toFixed(2)) : String(v)}`).join('; ') : '';
    L.push(`| ${esc(m.name)} | ${esc(variantLabel(m.variant))} | ${m.featureId ? `\`${m.featureId}\`` : '–'} | ${m.dim} | ${esc(info)} |`);
  }
  L.push('');

  if (r.test1 || r.test2) {
    L.push('## Table 1: next-week installation (Test #1) and look-alike (Test #2), AUC', '');
    const cats = r.test1?.categories ?? [];
    const head = ['Model', ...cats.map((c) => `#1 ${c.name}`), '#1 Average', '#2 Look-alike', 'paper #1 avg'];
    L.push(`| ${head.map(esc).join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
    const names = r.models.map((m) => m.name).filter((nm) => r.test1?.rows.some((x) => x.model === nm) || r.test2?.rows.some((x) => x.model === nm));
    for (const nm of names) {
      const t1 = r.test1?.rows.find((x) => x.model === nm);
      const t2 = r.test2?.rows.find((x) => x.model === nm);
      const variant = r.models.find((m) => m.name === nm)?.variant ?? '';
      L.push(`| ${esc(nm)} | ${cats.map((_, i) => ms(t1?.perCategory[i])).join(' | ')}${cats.length ? ' | ' : ''}${ms(t1?.average)} | ${ms(t2?.auc)} | ${f4(PAPER_TABLE1[variant])} |`);
    }
    L.push('');
    if (r.test1) L.push(`Test #1: ${r.test1.classifier}; ${r.test1.split}; mean ± sample std over ${r.test1.runs} runs (each run a new split and initialisation, the same splits for every model). Average = mean over categories per run.`);
    if (r.test1 && ds.sample)
      L.push(
        `Sampled: each category's rows are all ${ds.sample.total.toLocaleString('en-US')} users' adopters of it plus the uniform sample of ${ds.sample.uniform.toLocaleString('en-US')} (${r.test1.categories.map((c) => `${c.name} ${c.rows?.toLocaleString('en-US') ?? '–'} rows`).join(', ')}); the negatives are the sample's non-adopters, a uniform sample of all non-adopters, which leaves the AUC unbiased (it compares positives with negatives only). Test #2 and the audience tests use the uniform sample alone.`,
      );
    if (r.test2) L.push(`Test #2: ${r.test2.classifier}; ${r.test2.folds}-fold stratified cross-validation, mean ± std over folds.`);
    L.push('The paper column is the Tencent result for the same variant (average of its 4 niche categories), for orientation: different data, not a target.', '');
    if (input.chartHref) L.push(`![Test #1 AUC per model](${input.chartHref})`, '');
    L.push('### Ordering', '');
    for (const f of orderingFindings(r)) L.push(`- ${f}`);
    L.push('');
  }

  if (r.audience) {
    const a = r.audience;
    L.push('## Look-alike audience extension with hidden adopters', '');
    L.push(
      `Target \`${esc(a.target)}\`: ${a.seeds} adopters are the seeds, ${a.hidden} are hidden; each method returns an audience of N users (seeds excluded) and we count the hidden adopters in it. N = ${a.multiples.map((m, i) => `${m}x (${a.sizes[i]})`).join(', ')} the hidden set.`,
      '',
    );
    const head = ['method', 'vectors', ...a.multiples.map((m) => `recall@${m}x`), ...a.multiples.map((m) => `precision@${m}x`), 'seconds'];
    L.push(`| ${head.join(' | ')} |`, `|---|---|${head.slice(2).map(() => '---:').join('|')}|`);
    for (const b of a.baselines) L.push(`| ${esc(b.method)} | – | ${b.recall.map(pct).join(' | ')} | ${b.precision.map(pct).join(' | ')} | ${b.seconds.toFixed(1)} |`);
    for (const x of a.rows) L.push(`| ${esc(x.method)} | ${esc(x.model)} | ${x.recall.map(pct).join(' | ')} | ${x.precision.map(pct).join(' | ')} | ${x.seconds.toFixed(1)} |`);
    L.push('');
  }

  if (r.overlap) {
    L.push('## App overlap with the nearest neighbour (paper §5.5)', '');
    L.push(`${r.overlap.sampled.toLocaleString('en-US')} sampled users, each paired with its nearest other user by cosine of the vectors (exact scan). Overlap = ${r.overlap.metric}.`, '');
    L.push('| pairing | retention | installs | uninstalls | mean neighbour cosine |', '|---|---:|---:|---:|---:|');
    for (const o of r.overlap.rows) L.push(`| ${esc(o.model)} | ${f4(o.retention)} | ${f4(o.installs)} | ${f4(o.uninstalls)} | ${f4(o.meanNeighborCosine)} |`);
    L.push('');
  }

  if (input.leaveAppOut) L.push(...renderLeaveAppOut(input.leaveAppOut, input.laoChartHref));

  if (input.notes) L.push('## Notes', '', input.notes.trim(), '');
  L.push('Every number of this report is also in the JSON file next to it.', '');
  return L.join('\n');
}

/** The leave-app-out table: mean ± standard error over apps, best of each column in bold. */
export function renderLeaveAppOut(x: LaoResults, chartHref?: string): string[] {
  const L: string[] = [];
  L.push('## Leave-app-out look-alike', '');
  L.push(
    `${x.apps} apps outside the vocabulary with ${x.minUsers}-${x.maxUsers} installers among the evaluated users; for each, half of the installers are the seeds (mean ${x.meanSeeds.toFixed(1)}) and half are hidden (mean ${x.meanHidden.toFixed(1)}). ` +
      'Each method ranks every non-seed user; recall of the hidden users in the top ' +
      `${x.multiples.map((m) => `${m}x`).join(', ')} the hidden set, and AUC of hidden vs the other non-seed users. Mean ± standard error over apps (the same splits for every row).`,
    '',
  );
  if (x.apps === 0) {
    L.push('No app qualified: prepare the data with `aetn prepare --leave-out-apps MIN:MAX` so that such apps are kept out of the vocabulary.', '');
    return L;
  }
  const head = ['method', 'vectors', ...x.multiples.map((m) => `recall@${m}x`), 'AUC', 'seconds'];
  L.push(`| ${head.join(' | ')} |`, `|---|---|${head.slice(2).map(() => '---:').join('|')}|`);
  const bestR = x.multiples.map((_, k) => Math.max(...x.rows.map((r) => r.recall[k]!.mean)));
  const bestA = Math.max(...x.rows.map((r) => r.auc.mean));
  const cell = (m: number, se: number, best: boolean) => {
    const t = Number.isNaN(m) ? '–' : `${m.toFixed(3)} ± ${Number.isNaN(se) ? '–' : se.toFixed(3)}`;
    return best ? `**${t}**` : t;
  };
  for (const r of x.rows) {
    L.push(
      `| ${esc(r.method)} | ${esc(r.vectors)} | ${r.recall.map((s, k) => cell(s.mean, r.recallSe[k]!, s.mean === bestR[k])).join(' | ')} | ${cell(r.auc.mean, r.aucSe, r.auc.mean === bestA)} | ${r.seconds.toFixed(1)} |`,
    );
  }
  L.push('');
  if (chartHref) L.push(`![Leave-app-out recall@1x and AUC per method](${chartHref})`, '');
  const served = x.rows.filter((r) => r.kind === 'served');
  if (served.length > 0 && x.rows.some((r) => r.kind === 'classical')) {
    L.push(
      '**Served against the best classical row** (paired: the mean over apps of the per-app difference, ± its standard error; the best classical row is chosen per metric by its mean):',
      '',
    );
    const verdict = (d: number, se: number) => (d >= 0 ? 'at or above' : d < -2 * se ? 'below, by more than two standard errors' : 'below, within two standard errors');
    const line = (r: LaoRow, metric: number | 'auc') => {
      const p = pairedAgainstBestClassical(x, r, metric)!;
      const name = metric === 'auc' ? 'AUC' : `recall@${x.multiples[metric]}x`;
      return `${name} ${p.diff >= 0 ? '+' : '−'}${Math.abs(p.diff).toFixed(3)} ± ${p.se.toFixed(3)} against ${esc(p.baseline.method)}${p.baseline.vectors === '–' ? '' : ` on ${esc(p.baseline.vectors)}`} (${verdict(p.diff, p.se)})`;
    };
    for (const r of served) L.push(`- ${esc(r.method)} on ${esc(r.vectors)}: ${line(r, 0)}; ${line(r, 'auc')}.`);
    L.push('');
  }
  return L;
}

/** Grouped bar chart of Test #1 AUC: one group per model, one bar per category plus the average. */
export function renderChart(res: EvalResults): string {
  const t1 = res.test1;
  if (!t1 || t1.rows.length === 0) return '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="60"><text x="10" y="35" font-family="sans-serif" font-size="14">No Test #1 results</text></svg>\n';
  const series = [...t1.categories.map((c) => c.name), 'average'];
  const colors = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#b07aa1', '#76b7b2', '#edc948'];
  const values = t1.rows.map((r) => [...r.perCategory, r.average]);
  let lo = 1;
  for (const v of values) for (const s of v) if (!Number.isNaN(s.mean)) lo = Math.min(lo, s.mean - s.std);
  const yMin = Math.max(0, Math.floor(Math.min(0.5, lo) * 10) / 10);
  const yMax = 1;
  const W = Math.max(520, 90 + t1.rows.length * (series.length * 16 + 30));
  const H = 360;
  const left = 56;
  const top = 30;
  const plotH = 230;
  const plotW = W - left - 20;
  const groupW = plotW / t1.rows.length;
  const barW = Math.min(18, (groupW - 16) / series.length);
  const y = (v: number) => top + plotH - ((Math.min(yMax, Math.max(yMin, v)) - yMin) / (yMax - yMin)) * plotH;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${left}" y="18" font-size="13" font-weight="bold">Test #1: next-week installation AUC (mean ± std over ${t1.runs} runs)</text>`);
  for (let k = 0; k <= 5; k++) {
    const v = yMin + ((yMax - yMin) * k) / 5;
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(2)}</text>`);
  }
  t1.rows.forEach((row, g) => {
    const gx = left + g * groupW + (groupW - barW * series.length) / 2;
    values[g].forEach((s, k) => {
      if (Number.isNaN(s.mean)) return;
      const x = gx + k * barW;
      out.push(`<rect x="${x.toFixed(1)}" y="${y(s.mean).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(top + plotH - y(s.mean)).toFixed(1)}" fill="${colors[k % colors.length]}"${k === series.length - 1 ? ' stroke="#000"' : ''}><title>${xml(row.model)} ${xml(series[k])}: ${s.mean.toFixed(4)} ± ${s.std.toFixed(4)}</title></rect>`);
      if (s.std > 0) {
        const cx = x + (barW - 2) / 2;
        out.push(`<line x1="${cx.toFixed(1)}" x2="${cx.toFixed(1)}" y1="${y(s.mean + s.std).toFixed(1)}" y2="${y(s.mean - s.std).toFixed(1)}" stroke="#222"/>`);
      }
    });
    out.push(`<text x="${(left + g * groupW + groupW / 2).toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle">${xml(row.model)}</text>`);
    out.push(`<text x="${(left + g * groupW + groupW / 2).toFixed(1)}" y="${top + plotH + 30}" text-anchor="middle" fill="#555">avg ${row.average.mean.toFixed(4)}</text>`);
  });
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="#000"/>`);
  out.push(`<line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="#000"/>`);
  series.forEach((s, k) => {
    const lx = left + k * 130;
    out.push(`<rect x="${lx}" y="${H - 34}" width="10" height="10" fill="${colors[k % colors.length]}"/><text x="${lx + 14}" y="${H - 25}">${xml(s)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Leave-app-out chart: one horizontal bar per row in two panels (recall@1x and AUC), ± the standard
 * error over apps, coloured by the row's kind, so the served rows can be compared with the
 * classical ones at a glance.
 */
export function renderLaoChart(x: LaoResults): string {
  if (x.apps === 0 || x.rows.length === 0) return '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="60"><text x="10" y="35" font-family="sans-serif" font-size="14">No leave-app-out results</text></svg>\n';
  const colour: Record<LaoKind, string> = { floor: '#bab0ac', classical: '#4e79a7', model: '#f28e2b', served: '#59a14f' };
  const label = (r: LaoRow) => (r.vectors === '–' ? r.method : `${r.method} · ${r.vectors}`);
  const labelW = Math.min(360, 20 + 6.2 * Math.max(...x.rows.map((r) => label(r).length)));
  const panelW = 250;
  const rowH = 20;
  const top = 48;
  const H = top + x.rows.length * rowH + 40;
  const W = labelW + 2 * (panelW + 30) + 10;
  // recall@1x runs from 0 to the tenth above the largest mean + its error; AUC from 0.4 to 1
  const recallTop = Math.max(...x.rows.map((r) => r.recall[0]!.mean + (r.recallSe[0] || 0)));
  const panels: { title: string; lo: number; hi: number; get: (r: LaoRow) => [number, number] }[] = [
    { title: `recall@${x.multiples[0]}x`, lo: 0, hi: Math.min(1, Math.ceil(recallTop * 10 + 0.5) / 10), get: (r) => [r.recall[0]!.mean, r.recallSe[0]!] },
    { title: 'AUC', lo: 0.4, hi: 1, get: (r) => [r.auc.mean, r.aucSe] },
  ];
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W.toFixed(0)}" height="${H}" viewBox="0 0 ${W.toFixed(0)} ${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${W.toFixed(0)}" height="${H}" fill="white"/>`);
  out.push(`<text x="10" y="18" font-size="13" font-weight="bold">Leave-app-out look-alike: ${x.apps} apps, mean ± standard error over apps</text>`);
  panels.forEach((p, k) => {
    const x0 = labelW + k * (panelW + 30);
    const sx = (v: number) => x0 + ((Math.min(p.hi, Math.max(p.lo, v)) - p.lo) / (p.hi - p.lo)) * panelW;
    out.push(`<text x="${x0}" y="${top - 10}" font-weight="bold">${xml(p.title)}</text>`);
    const ticks = Math.max(2, Math.min(10, Math.round((p.hi - p.lo) / 0.1)));
    for (let t = 0; t <= ticks; t++) {
      const v = p.lo + ((p.hi - p.lo) * t) / ticks;
      out.push(`<line x1="${sx(v).toFixed(1)}" x2="${sx(v).toFixed(1)}" y1="${top}" y2="${top + x.rows.length * rowH}" stroke="#ddd"/>`);
      out.push(`<text x="${sx(v).toFixed(1)}" y="${top + x.rows.length * rowH + 14}" text-anchor="middle">${v.toFixed(2)}</text>`);
    }
    x.rows.forEach((r, i) => {
      const [m, se] = p.get(r);
      if (Number.isNaN(m)) return;
      const y = top + i * rowH + 3;
      out.push(`<rect x="${x0}" y="${y}" width="${(sx(m) - x0).toFixed(1)}" height="${rowH - 6}" fill="${colour[r.kind]}"><title>${xml(label(r))}: ${m.toFixed(3)} ± ${Number.isNaN(se) ? '–' : se.toFixed(3)}</title></rect>`);
      if (se > 0) out.push(`<line x1="${sx(m - se).toFixed(1)}" x2="${sx(m + se).toFixed(1)}" y1="${y + (rowH - 6) / 2}" y2="${y + (rowH - 6) / 2}" stroke="#222"/>`);
      out.push(`<text x="${(sx(m + (se > 0 ? se : 0)) + 4).toFixed(1)}" y="${y + rowH - 9}" fill="#333">${m.toFixed(3)}</text>`);
    });
  });
  x.rows.forEach((r, i) => out.push(`<text x="${labelW - 8}" y="${top + i * rowH + rowH - 6}" text-anchor="end"${r.kind === 'served' ? ' font-weight="bold"' : ''}>${xml(label(r))}</text>`));
  Object.entries(colour).forEach(([kind, c], k) => {
    const lx = 10 + k * 110;
    out.push(`<rect x="${lx}" y="${H - 16}" width="10" height="10" fill="${c}"/><text x="${lx + 14}" y="${H - 7}">${kind}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Every number, NaN written as null (JSON has no NaN). */
export function renderJson(input: ReportInput): string {
  const { notes: _notes, ...rest } = input;
  return JSON.stringify(rest, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n';
}
