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

/** Ground truth from the held-out week after the reference date (present when the input had one). */
export interface NextWeekLabels {
  userId: string;
  /** App ids (catalog ids, in or out of the vocabulary) the user installed in the held-out week. */
  appIds: string[];
}
