// N-API addon: batched SGEMM through OpenBLAS for the tfjs BatchMatMul kernel (src/model/native-gemm.ts).
// One call runs every product of a kernel call: attention issues thousands of tiny products per
// step, and a JS -> native crossing per product would cost more than the product itself.
// Operands are float32 typed arrays (for the wasm backend: views into the module's heap), used in
// place; every length is checked here so a wrong shape is an exception, never a stray write.
#define NAPI_VERSION 8
#include <node_api.h>
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
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

static int get_f32(napi_env env, napi_value v, float **data, size_t *len) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  napi_typedarray_type type;
  void *ptr;
  if (napi_get_typedarray_info(env, v, &type, len, &ptr, NULL, NULL) != napi_ok) return 0;
  if (type != napi_float32_array) return 0;
  *data = (float *)ptr;
  return 1;
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
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  napi_typedarray_type type;
  void *ptr;
  if (napi_get_typedarray_info(env, v, &type, len, &ptr, NULL, NULL) != napi_ok) return 0;
  if (type != napi_int32_array) return 0;
  *data = (const int32_t *)ptr;
  return 1;
}

static int get_int(napi_env env, napi_value v, int64_t *out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

// gemm(a, b, c, batch, m, n, k, transA, transB, batchA, batchB, aIndex?, bIndex?)
// c[i] = op(a[ia]) x op(b[ib]) for i < batch, where ia = aIndex[i] if given, else 0 when batchA is 1,
// else i (likewise b). a holds batchA matrices of m x k (stored k x m when transA), b batchB of
// k x n (n x k when transB), c batch of m x n, all row-major and contiguous.
static napi_value gemm(napi_env env, napi_callback_info info) {
  size_t argc = 13;
  napi_value argv[13];
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
  openblas_set_num_threads((int)n);
  return NULL;
}

static napi_value get_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(napi_create_int32(env, openblas_get_num_threads(), &out));
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
