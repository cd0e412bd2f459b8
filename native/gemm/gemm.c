// N-API addon: batched SGEMM through OpenBLAS for the tfjs BatchMatMul kernel (src/model/native-gemm.ts).
// One call runs every product of a kernel call: attention issues thousands of tiny products per
// step, and a JS -> native crossing per product would cost more than the product itself.
// Operands are float32 typed arrays (for the wasm backend: views into the module's heap), used in
// place; every length is checked here so a wrong shape is an exception, never a stray write.
#define NAPI_VERSION 8
#include <node_api.h>
#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "aetn_gemm: N-API call failed: " #call); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

#define FAIL(msg)                           \
  do {                                      \
    napi_throw_error(env, NULL, "aetn_gemm: " msg); \
    return NULL;                            \
  } while (0)

// A typed array of the wanted element type: its data pointer and element count.
static int get_typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, v, &type, len, data, NULL, NULL) != napi_ok) return 0;
  return type == want;
}

static int get_f32(napi_env env, napi_value v, float **data, size_t *len) {
  return get_typed(env, v, napi_float32_array, (void **)data, len);
}

// Optional Int32Array of per-product matrix indices (general batch broadcasting); undefined/null = none.
static int get_index(napi_env env, napi_value v, const int32_t **data, size_t *len) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_undefined || t == napi_null) {
    *data = NULL;
    *len = 0;
    return 1;
  }
  return get_typed(env, v, napi_int32_array, (void **)data, len);
}

static int get_int(napi_env env, napi_value v, int64_t *out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

// ---- Batch-invariant products (inference) ----
// OpenBLAS's bits for one row of C depend on where the row sits in the call (measured on 0.3.21 Zen:
// with rows along OpenBLAS's n, rows come in groups of 12 whose halves get different bits; with rows
// along m, the first and last 8-row tiles of the m range and of each thread's share differ from the
// inner ones, and calls of ~700+ rows have more odd rows, as OpenBLAS cuts m into GEMM_P chunks).
// The invariant path therefore:
//   - puts the rows on OpenBLAS's m and issues them in calls of exactly INV_PAD + INV_ROWS + INV_PAD
//     rows, the real rows always in the middle, the rest zero: every row is an inner-tile row of a
//     call of one fixed shape (144 rows: invariant in tests with k = 64-2000, n = 37-2000);
//   - runs OpenBLAS on 1 thread per call (its thread split makes more edge tiles); with more threads
//     configured, our own threads share the fixed-shape calls instead (inv_run);
//   - computes single-row products (per-user gathers such as [1, R] x [R, d], R the batch's longest
//     retention) with a plain loop in k order, so trailing zero padding of k cannot change the bits
//     (OpenBLAS's k unrolling and k blocking both do).
// Cost: 16 zero rows per 128 and a transpose of each output block; bench/model-train.ts compares
// embedding against plain calls (AETN_NATIVE_GEMM=all) in the same run.
#define INV_ROWS 128
#define INV_PAD 8
#define INV_MP (INV_PAD + INV_ROWS + INV_PAD)

// OpenBLAS's thread count is process-wide; invariant calls (from any thread) hold it at 1 and the
// last one out restores the setting. set_threads during such a call updates the saved value.
static pthread_mutex_t threads_mu = PTHREAD_MUTEX_INITIALIZER;
static int single_holders = 0;
static int saved_threads = 1;

// Returns the thread count the process is set to (what the invariant call may use itself).
static int single_thread_enter(void) {
  pthread_mutex_lock(&threads_mu);
  if (single_holders++ == 0) {
    saved_threads = openblas_get_num_threads();
    if (saved_threads != 1) openblas_set_num_threads(1);
  }
  const int t = saved_threads;
  pthread_mutex_unlock(&threads_mu);
  return t;
}

static void single_thread_leave(void) {
  pthread_mutex_lock(&threads_mu);
  if (--single_holders == 0 && saved_threads != 1) openblas_set_num_threads(saved_threads);
  pthread_mutex_unlock(&threads_mu);
}

// rows x n block of C (row stride ldc) = rows of op(A) (row r at arow(r)) x op(B), through padded
// scratch: as (INV_MP x k, zero outside the real rows) and cs (n x INV_MP, OpenBLAS's column-major
// INV_MP x n result).
static void inv_block(const float *a, int64_t m, int64_t k, bool ta, int64_t r0, int64_t rows, const float *b, int64_t n,
                      bool tb, float *c, float *as, float *cs) {
  memset(as + (size_t)INV_PAD * k, 0, (size_t)INV_ROWS * k * sizeof(float));
  for (int64_t r = 0; r < rows; r++) {
    float *dst = as + (size_t)(INV_PAD + r) * k;
    if (!ta) memcpy(dst, a + (size_t)(r0 + r) * k, (size_t)k * sizeof(float));
    else
      for (int64_t t = 0; t < k; t++) dst[t] = a[(size_t)t * m + r0 + r];
  }
  // Column-major: C' (INV_MP x n) = as' (stored k x INV_MP, so Trans) x op(B) (row-major B is
  // column-major B^T: Trans for a k x n B, NoTrans for an n x k one).
  cblas_sgemm(CblasColMajor, CblasTrans, tb ? CblasNoTrans : CblasTrans, INV_MP, (int)n, (int)k, 1.0f, as, (int)k, b,
              (int)(tb ? k : n), 0.0f, cs, INV_MP);
  // Transposed back in strips of 16 columns: 16 contiguous source streams at a time stay in cache.
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    const int64_t j1 = j0 + 16 < n ? j0 + 16 : n;
    for (int64_t r = 0; r < rows; r++) {
      float *dst = c + (size_t)r * n;
      const float *src = cs + INV_PAD + r;
      for (int64_t j = j0; j < j1; j++) dst[j] = src[(size_t)j * INV_MP];
    }
  }
}

// One row: c (1 x n) = a (1 x k) x op(B), summed in k order for every column.
static void row_product(const float *a, int64_t k, const float *b, int64_t n, bool tb, float *c) {
  if (!tb) {
    for (int64_t j = 0; j < n; j++) c[j] = 0.0f;
    for (int64_t t = 0; t < k; t++) {
      const float x = a[t];
      const float *bt = b + (size_t)t * n;
      for (int64_t j = 0; j < n; j++) c[j] += x * bt[j];
    }
  } else {
    for (int64_t j = 0; j < n; j++) {
      const float *bj = b + (size_t)j * k;
      float s = 0.0f;
      for (int64_t t = 0; t < k; t++) s += a[t] * bj[t];
      c[j] = s;
    }
  }
}

// An invariant call's work: tasks are 128-row blocks (mode 1) or products (mode 2). With more than
// one thread configured, our own threads take tasks round-robin, each calling single-threaded
// OpenBLAS on its own scratch: which thread computes a task never changes its bits.
typedef struct {
  int mode;
  const float *a, *b;
  float *c;
  int64_t m, n, k, batchA, batchB, prods, rowsPer, blocksPer, tasks;
  bool ta, tb;
  const int32_t *ia, *ib;
  uint64_t sa, sb, sc;
  int nthreads;
  volatile int failed;
} inv_job;

typedef struct {
  inv_job *job;
  int t;
} inv_arg;

static void *inv_worker(void *p) {
  const inv_arg *arg = p;
  inv_job *j = arg->job;
  float *as = NULL, *cs = NULL;
  if (j->mode == 1) {
    as = calloc((size_t)INV_MP * (size_t)j->k, sizeof(float));
    cs = malloc((size_t)INV_MP * (size_t)j->n * sizeof(float));
    if (!as || !cs) {
      free(as);
      free(cs);
      j->failed = 1;
      return NULL;
    }
  }
  const int lda = (int)(j->ta ? j->m : j->k), ldb = (int)(j->tb ? j->k : j->n), ldc = (int)j->n;
  for (int64_t task = arg->t; task < j->tasks; task += j->nthreads) {
    if (j->mode == 1) {
      const int64_t i = task / j->blocksPer, r0 = (task % j->blocksPer) * INV_ROWS;
      const int64_t ai = j->ia ? j->ia[i] : (j->batchA == 1 ? 0 : i);
      const int64_t rows = j->rowsPer - r0 < INV_ROWS ? j->rowsPer - r0 : INV_ROWS;
      inv_block(j->a + (j->ta ? ai * j->sa : 0), j->m, j->k, j->ta, r0, rows, j->b, j->n, j->tb, j->c + i * j->sc + r0 * j->n, as, cs);
    } else {
      const int64_t i = task;
      const int64_t ai = j->ia ? j->ia[i] : (j->batchA == 1 ? 0 : i);
      const int64_t bi = j->ib ? j->ib[i] : (j->batchB == 1 ? 0 : i);
      if (j->m == 1)
        row_product(j->a + ai * j->sa, j->k, j->b + bi * j->sb, j->n, j->tb, j->c + i * j->sc);
      else
        cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, (int)j->m, (int)j->n,
                    (int)j->k, 1.0f, j->a + ai * j->sa, lda, j->b + bi * j->sb, ldb, 0.0f, j->c + i * j->sc, ldc);
    }
  }
  free(as);
  free(cs);
  return NULL;
}

// Threads only for work worth a thread start (~1M multiply-adds); a failed start runs that share here.
#define INV_MAX_THREADS 64
static void inv_run(inv_job *j, int threads, uint64_t macs) {
  int nt = threads < 1 ? 1 : threads > INV_MAX_THREADS ? INV_MAX_THREADS : threads;
  if ((int64_t)nt > j->tasks) nt = (int)j->tasks;
  if (macs < (1u << 20)) nt = 1;
  j->nthreads = nt;
  pthread_t tid[INV_MAX_THREADS];
  inv_arg args[INV_MAX_THREADS];
  bool started[INV_MAX_THREADS] = {false};
  for (int t = 1; t < nt; t++) {
    args[t] = (inv_arg){j, t};
    started[t] = pthread_create(&tid[t], NULL, inv_worker, &args[t]) == 0;
  }
  args[0] = (inv_arg){j, 0};
  inv_worker(&args[0]);
  for (int t = 1; t < nt; t++) {
    if (started[t])
      pthread_join(tid[t], NULL);
    else
      inv_worker(&args[t]);
  }
}

// gemm(a, b, c, batch, m, n, k, transA, transB, batchA, batchB, aIndex?, bIndex?, invariant?)
// c[i] = op(a[ia]) x op(b[ib]) for i < batch, where ia = aIndex[i] if given, else 0 when batchA is 1,
// else i (likewise b). a holds batchA matrices of m x k (stored k x m when transA), b batchB of
// k x n (n x k when transB), c batch of m x n, all row-major and contiguous.
// invariant: 0 = plain OpenBLAS calls (fastest; a row's bits depend on the call's shape and the row's
// position, and on the thread count); 1 = batch-invariant, rows of op(a) against one shared matrix b
// (batchB 1, e.g. activations x weights): every row's bits depend only on the row, b, n and k;
// 2 = batch-invariant, per-product: each product on its own (1 thread; single-row products in k
// order), for products that each belong to one item (per-user attention and gathers).
static napi_value gemm(napi_env env, napi_callback_info info) {
  size_t argc = 14;
  napi_value argv[14];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 11) FAIL("gemm needs (a, b, c, batch, m, n, k, transA, transB, batchA, batchB[, aIndex, bIndex])");
  float *a, *b, *c;
  size_t la, lb, lc;
  if (!get_f32(env, argv[0], &a, &la) || !get_f32(env, argv[1], &b, &lb) || !get_f32(env, argv[2], &c, &lc))
    FAIL("a, b and c must be Float32Arrays");
  int64_t batch, m, n, k, batchA, batchB;
  if (!get_int(env, argv[3], &batch) || !get_int(env, argv[4], &m) || !get_int(env, argv[5], &n) ||
      !get_int(env, argv[6], &k) || !get_int(env, argv[9], &batchA) || !get_int(env, argv[10], &batchB))
    FAIL("batch, m, n, k, batchA and batchB must be numbers");
  bool ta = false, tb = false;
  CHECK(napi_get_value_bool(env, argv[7], &ta));
  CHECK(napi_get_value_bool(env, argv[8], &tb));
  if (batch < 0 || m < 0 || n < 0 || k < 0 || batchA < 1 || batchB < 1) FAIL("negative size or empty operand batch");
  // cblas takes int dimensions and leading dimensions.
  if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) FAIL("matrix dimension exceeds 2^31-1");
  const int32_t *ia = NULL, *ib = NULL;
  size_t lia = 0, lib = 0;
  if (argc > 11 && !get_index(env, argv[11], &ia, &lia)) FAIL("aIndex must be an Int32Array or null");
  if (argc > 12 && !get_index(env, argv[12], &ib, &lib)) FAIL("bIndex must be an Int32Array or null");
  if (ia && lia < (size_t)batch) FAIL("aIndex is shorter than batch");
  if (ib && lib < (size_t)batch) FAIL("bIndex is shorter than batch");
  int64_t invariant = 0;
  if (argc > 13) {
    napi_valuetype t;
    CHECK(napi_typeof(env, argv[13], &t));
    if (t != napi_undefined && (!get_int(env, argv[13], &invariant) || invariant < 0 || invariant > 2))
      FAIL("invariant must be 0, 1 or 2");
  }
  if (invariant == 1 && (batchB != 1 || ib)) FAIL("invariant mode 1 needs a single shared b (batchB 1)");
  if (!ia && batchA != 1 && batchA != batch) FAIL("batchA must be 1 or batch when no aIndex is given");
  if (!ib && batchB != 1 && batchB != batch) FAIL("batchB must be 1 or batch when no bIndex is given");
  const uint64_t sa = (uint64_t)m * (uint64_t)k, sb = (uint64_t)k * (uint64_t)n, sc = (uint64_t)m * (uint64_t)n;
  if ((uint64_t)la < (uint64_t)batchA * sa) FAIL("a is shorter than batchA * m * k");
  if ((uint64_t)lb < (uint64_t)batchB * sb) FAIL("b is shorter than batchB * k * n");
  if ((uint64_t)lc < (uint64_t)batch * sc) FAIL("c is shorter than batch * m * n");
  for (int64_t i = 0; i < batch; i++) {
    if ((ia && (ia[i] < 0 || ia[i] >= batchA)) || (ib && (ib[i] < 0 || ib[i] >= batchB))) FAIL("batch index out of range");
  }
  if (batch == 0 || sc == 0) return NULL;
  if (k == 0) {
    memset(c, 0, (size_t)(batch * sc) * sizeof(float));
    return NULL;
  }
  if (invariant != 0) {
    // Without transA (mode 1), the rows of all products are one contiguous row-major matrix: one
    // stream of blocks. Blocks never straddle products either way (row bits ignore neighbours).
    inv_job job = {.mode = (int)invariant, .a = a, .b = b, .c = c, .m = m, .n = n, .k = k, .ta = ta, .tb = tb,
                   .ia = ia, .ib = ib, .batchA = batchA, .batchB = batchB, .sa = sa, .sb = sb, .sc = sc, .failed = 0};
    if (invariant == 1) {
      job.prods = ta ? batch : 1;
      job.rowsPer = ta ? m : batch * m;
      job.blocksPer = (job.rowsPer + INV_ROWS - 1) / INV_ROWS;
      job.tasks = job.prods * job.blocksPer;
    } else {
      job.prods = batch;
      job.tasks = batch;
    }
    const int threads = single_thread_enter();
    inv_run(&job, threads, (uint64_t)batch * sc * (uint64_t)k);
    single_thread_leave();
    if (job.failed) FAIL("out of memory for the invariant product's scratch");
    return NULL;
  }
  const int lda = (int)(ta ? m : k), ldb = (int)(tb ? k : n), ldc = (int)n;
  for (int64_t i = 0; i < batch; i++) {
    const int64_t ai = ia ? ia[i] : (batchA == 1 ? 0 : i);
    const int64_t bi = ib ? ib[i] : (batchB == 1 ? 0 : i);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
                1.0f, a + ai * sa, lda, b + bi * sb, ldb, 0.0f, c + i * sc, ldc);
  }
  return NULL;
}

// OpenBLAS's thread count is process-wide: every worker thread of this process shares it.
static napi_value set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t n;
  if (argc < 1 || !get_int(env, argv[0], &n) || n < 1 || n > 1024) FAIL("setThreads needs an integer in [1, 1024]");
  pthread_mutex_lock(&threads_mu);
  // During an invariant call the setting takes effect when the last one ends.
  if (single_holders > 0)
    saved_threads = (int)n;
  else
    openblas_set_num_threads((int)n);
  pthread_mutex_unlock(&threads_mu);
  return NULL;
}

static napi_value get_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  pthread_mutex_lock(&threads_mu);
  const int t = single_holders > 0 ? saved_threads : openblas_get_num_threads();
  pthread_mutex_unlock(&threads_mu);
  CHECK(napi_create_int32(env, t, &out));
  return out;
}

static napi_value config(napi_env env, napi_callback_info info) {
  (void)info;
  char buf[512];
  const char *cfg = openblas_get_config();
  const char *core = openblas_get_corename();
  snprintf(buf, sizeof buf, "%s; core %s", cfg ? cfg : "?", core ? core : "?");
  napi_value out;
  CHECK(napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &out));
  return out;
}

// NAPI_MODULE_INIT makes the addon context-aware: each worker thread loads its own instance.
NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"gemm", NULL, gemm, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_default, NULL},
      {"getThreads", NULL, get_threads, NULL, NULL, NULL, napi_default, NULL},
      {"config", NULL, config, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
