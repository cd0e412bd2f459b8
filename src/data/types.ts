// The data contract shared by preprocessing (src/data), the models (src/model), the realtime head
// and evaluation. Data knows no model: these are plain arrays, already mapped to vocabulary indices.

/** One app of the vocabulary: its row in the tied app matrix W_a is `index`. */
export interface VocabApp {
  index: number; // 0..M-1, dense; the model adds its own padding row
  appId: string;
  category: number; // index into Vocabulary.categories
  packages: string[]; // every package name merged into this app
}

export interface Vocabulary {
  /** Content hash of apps + categories; a model trained on one vocabulary refuses another. */
  hash: string;
  apps: VocabApp[];
  categories: string[];
}

/** One user's training example (paper §4.1), relative to the dataset's reference date. */
export interface UserExample {
  userId: string;
  /** Apps installed now (retention), as sorted unique app indices. */
  retention: Int32Array;
  /** Most recent <= seqLen installs, oldest first (most recent last). */
  installs: Int32Array;
  /** Week bucket of each install: floor(days before the reference date / 7), clamped to [0, dateBuckets). */
  installDates: Int32Array;
  /** Event time of each install in ms since the epoch (the realtime head buckets time gaps from it). */
  installTimes: Float64Array;
  uninstalls: Int32Array;
  uninstallDates: Int32Array;
  uninstallTimes: Float64Array;
  /** Time of the user's most recent kept event in ms (0 when the user has no events). */
  lastActiveMs: number;
}

/** Ground truth from the held-out week(s) after the reference date (present when the input had them). */
export interface NextWeekLabels {
  userId: string;
  /** App ids (catalog ids, in or out of the vocabulary) the user installed in the held-out weeks (manifest.labelWeeks). */
  appIds: string[];
}

// ---- Prepared dataset (written by `aetn prepare`, read by openPrepared in src/data/prepared.ts) ----

/** Why a catalog app is not in the vocabulary (null: it is). */
export type DropReason = 'universal' | 'preinstalled' | 'below-threshold' | 'excluded';

/** Every app of the input catalog, kept or dropped, so evaluation can label apps outside the vocabulary. */
export interface CatalogEntry {
  appId: string;
  category: string; // fine-grained category name
  packages: string[];
  preinstalled: boolean;
  universal: boolean;
  /** Row in the vocabulary, or -1 when dropped. */
  vocabIndex: number;
  dropReason: DropReason | null;
  /** Valid retention entries + history install events seen for this app (the threshold's count). */
  installCount: number;
}

export interface ShardInfo {
  file: string; // relative to the prepared directory
  users: number;
  bytes: number;
  crc32: number;
}

/** Ground truth copied from a generated world (absent for user-supplied data without a truth file). */
export interface DatasetTruth {
  nicheCategories: string[];
  /** Configured (scaled) weekly install rate per million users of each niche category, same order. */
  nicheRatesPerMillion: number[];
  /** The paper's unscaled rates (600, 400, 25, 300 per million) and the scale applied. */
  nicheBaseRatesPerMillion: number[];
  nicheScale: number;
  /** Look-alike target apps: kept out of the vocabulary, their adopters are ground truth. */
  lookalikeTargetAppIds: string[];
  seed?: number;
}

export interface PreparedManifest {
  format: 'aetn-prepared';
  version: number;
  vocabHash: string;
  referenceDate: string; // YYYY-MM-DD, the last day of history
  seqLen: number; // I = 25
  dateBuckets: number; // 52 week buckets
  weeklyCap: number; // at most this many (un)install operations per user per week
  minInstalls: number; // install-count threshold of the vocabulary
  /** 'flag': --min-installs was given; 'derived': from the number of users (defaultMinInstalls). Absent in older datasets. */
  minInstallsSource?: 'flag' | 'derived';
  numUsers: number;
  /** Users read (with any record) that kept no vocabulary app at all: not written, so they get no vector
   *  (= counts['users.empty-skipped']). Absent in older datasets. */
  usersWithoutVector?: number;
  numApps: number;
  numCategories: number;
  shards: ShardInfo[];
  hasLabels: boolean;
  /** Weeks after the reference date that labels.ndjson covers (installs of any of them). Absent in older datasets: 1. */
  labelWeeks?: number;
  labelUsers: number;
  /** Preprocessing counts: records read, rejected (by reason), dropped (by rule), truncated. */
  counts: Record<string, number>;
  source: { dir: string; files: Record<string, string> };
  truth: DatasetTruth | null;
  createdBy: string;
}

/** Catalog apps outside the vocabulary ('excluded' or 'below-threshold') that a user had (history install or retention). */
export interface OutOfVocabApps {
  userId: string;
  appIds: string[];
}
