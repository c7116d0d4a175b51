/* The Snake activation y = x + r * sin(a * x)^2 (per channel a and r = 1/a) as one onnxruntime custom op,
 * "stepaudio.Snake": inputs x [1, C, T] (or [C, T]), a and r [.., C, 1]; output y shaped as x.
 *
 * Why: onnxruntime's Sin is a scalar loop on one thread (~3.4 ns an element on an AVX2 EPYC, 8x a Tanh), and
 * the Snake chain reads and writes the tensor five times (Mul, Sin, Mul, Mul, Add). Here one AVX2 + FMA pass
 * computes it with a polynomial sine, split over threads by channel ranges (as many as the session's
 * intra-op threads, through stepaudio_snake_set_threads).
 *
 * sin^2 has period pi: k = round(v / pi), z = v - k * pi in [-pi/2, pi/2] (pi in three parts, each product
 * exact with FMA), sin z by its Taylor series to z^11 (truncation < 6e-8 at pi/2), squared. The same
 * arithmetic in the vector body and the scalar tail, so the result does not depend on where a row ends.
 *
 * The onnxruntime C API is reached through its versioned function table (OrtApi): only the entries used
 * here are named, by their position, which onnxruntime never changes (it only appends). No onnxruntime
 * header is needed to build this file.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct OrtStatus OrtStatus;
typedef void *(*ApiFn)(void);

/* positions of the OrtApi entries used (0-based, stable since API version 1) */
enum {
  API_CREATE_STATUS = 0,
  API_CREATE_CUSTOM_OP_DOMAIN = 26,
  API_CUSTOM_OP_DOMAIN_ADD = 27,
  API_ADD_CUSTOM_OP_DOMAIN = 28,
  API_GET_TENSOR_MUTABLE_DATA = 51,
  API_GET_DIMENSIONS_COUNT = 61,
  API_GET_DIMENSIONS = 62,
  API_GET_TENSOR_SHAPE_ELEMENT_COUNT = 64,
  API_GET_TENSOR_TYPE_AND_SHAPE = 65,
  API_KERNEL_CONTEXT_GET_INPUT = 90,
  API_KERNEL_CONTEXT_GET_OUTPUT = 91,
  API_RELEASE_TENSOR_TYPE_AND_SHAPE_INFO = 99,
};
#define API_VERSION 14u /* any version the runtime serves has these entries at these positions */

typedef struct {
  const void *(*GetApi)(uint32_t version);
  const char *(*GetVersionString)(void);
} ApiBase;

/* onnxruntime's OrtCustomOp layout: a version, then function pointers in this order (unused ones left 0) */
typedef struct CustomOp {
  uint32_t version;
  void *(*CreateKernel)(const struct CustomOp *op, const void *api, const void *info);
  const char *(*GetName)(const struct CustomOp *op);
  const char *(*GetExecutionProviderType)(const struct CustomOp *op);
  int (*GetInputType)(const struct CustomOp *op, size_t index);
  size_t (*GetInputTypeCount)(const struct CustomOp *op);
  int (*GetOutputType)(const struct CustomOp *op, size_t index);
  size_t (*GetOutputTypeCount)(const struct CustomOp *op);
  void (*KernelCompute)(void *kernel, void *context);
  void (*KernelDestroy)(void *kernel);
  int (*GetInputCharacteristic)(const struct CustomOp *op, size_t index);
  int (*GetOutputCharacteristic)(const struct CustomOp *op, size_t index);
  int (*GetInputMemoryType)(const struct CustomOp *op, size_t index);
  int (*GetVariadicInputMinArity)(const struct CustomOp *op);
  int (*GetVariadicInputHomogeneity)(const struct CustomOp *op);
  int (*GetVariadicOutputMinArity)(const struct CustomOp *op);
  int (*GetVariadicOutputHomogeneity)(const struct CustomOp *op);
  void *reserved[9]; /* later entries, read by onnxruntime only for op versions above API_VERSION */
} CustomOp;

#define FLOAT_TYPE 1 /* ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT */
#define MAX_THREADS 64

static const void *const *api_table; /* set once by RegisterCustomOps, read-only after */

#define CALL(index, type) ((type)(api_table[index]))

static const float PI_A = 3.140625f, PI_B = 9.67502593994140625e-4f, PI_C = 1.509957990978376432e-7f;
static const float INV_PI = 0.318309886183790671538f;
static const float S3 = -1.0f / 6, S5 = 1.0f / 120, S7 = -1.0f / 5040, S9 = 1.0f / 362880, S11 = -1.0f / 39916800;

static inline float sin_squared(float v) {
  float k = nearbyintf(v * INV_PI);
  float z = fmaf(-k, PI_A, v);
  z = fmaf(-k, PI_B, z);
  z = fmaf(-k, PI_C, z);
  float w = z * z;
  float p = fmaf(fmaf(fmaf(fmaf(S11, w, S9), w, S7), w, S5), w, S3);
  float s = fmaf(p * w, z, z);
  return s * s;
}

static inline __m256 sin_squared8(__m256 v) {
  __m256 k = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(INV_PI)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 z = _mm256_fnmadd_ps(k, _mm256_set1_ps(PI_A), v);
  z = _mm256_fnmadd_ps(k, _mm256_set1_ps(PI_B), z);
  z = _mm256_fnmadd_ps(k, _mm256_set1_ps(PI_C), z);
  __m256 w = _mm256_mul_ps(z, z);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(S11), w, _mm256_set1_ps(S9));
  p = _mm256_fmadd_ps(p, w, _mm256_set1_ps(S7));
  p = _mm256_fmadd_ps(p, w, _mm256_set1_ps(S5));
  p = _mm256_fmadd_ps(p, w, _mm256_set1_ps(S3));
  __m256 s = _mm256_fmadd_ps(_mm256_mul_ps(p, w), z, z);
  return _mm256_mul_ps(s, s);
}

/* rows [first, last) of length n: y = x + r * sin(a * x)^2 */
static void snake_rows(const float *x, const float *a, const float *r, float *y, int64_t first, int64_t last,
                       int64_t n) {
  for (int64_t c = first; c < last; c++) {
    const float *xc = x + c * n;
    float *yc = y + c * n;
    __m256 av = _mm256_set1_ps(a[c]), rv = _mm256_set1_ps(r[c]);
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) {
      __m256 xv = _mm256_loadu_ps(xc + t);
      __m256 sq = sin_squared8(_mm256_mul_ps(av, xv));
      _mm256_storeu_ps(yc + t, _mm256_add_ps(xv, _mm256_mul_ps(rv, sq)));
    }
    for (; t < n; t++) yc[t] = xc[t] + r[c] * sin_squared(a[c] * xc[t]);
  }
}

typedef struct {
  const float *x, *a, *r;
  float *y;
  int64_t first, last, n;
} Job;

static void *run_job(void *arg) {
  Job *job = (Job *)arg;
  snake_rows(job->x, job->a, job->r, job->y, job->first, job->last, job->n);
  return NULL;
}

/* the whole tensor on `threads` threads (this one included), split into contiguous channel ranges */
int stepaudio_snake(const float *x, const float *a, const float *r, float *y, int64_t channels, int64_t n,
                    int threads) {
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  if (threads > channels) threads = (int)channels;
  if (threads < 1 || channels * n < 65536) threads = 1;
  Job jobs[MAX_THREADS];
  pthread_t ids[MAX_THREADS];
  int started[MAX_THREADS] = {0};
  for (int i = 0; i < threads; i++) {
    jobs[i] = (Job){x, a, r, y, channels * i / threads, channels * (i + 1) / threads, n};
    if (i > 0) started[i] = pthread_create(&ids[i], NULL, run_job, &jobs[i]) == 0;
  }
  run_job(&jobs[0]);
  for (int i = 1; i < threads; i++) {
    if (started[i])
      pthread_join(ids[i], NULL);
    else
      run_job(&jobs[i]); /* no thread to be had: do its share here */
  }
  return 0;
}

int stepaudio_snake_abi(void) { return 2; }

typedef struct {
  int threads;
} Kernel;

/* the thread count kernels created from now on take (0: every CPU of the process' set); set before a session
 * is created, since onnxruntime creates a session's kernels while it initialises it */
static int next_threads;

void stepaudio_snake_set_threads(int threads) { __atomic_store_n(&next_threads, threads, __ATOMIC_SEQ_CST); }

static int process_threads(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return 1;
}

static void *create_kernel(const CustomOp *op, const void *api, const void *info) {
  (void)op, (void)api, (void)info;
  Kernel *kernel = malloc(sizeof(Kernel));
  if (kernel == NULL) return NULL;
  int threads = __atomic_load_n(&next_threads, __ATOMIC_SEQ_CST);
  kernel->threads = threads > 0 ? threads : process_threads();
  return kernel;
}

static const char *op_name(const CustomOp *op) { (void)op; return "Snake"; }
static const char *op_provider(const CustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static int float_type(const CustomOp *op, size_t index) { (void)op, (void)index; return FLOAT_TYPE; }
static size_t three(const CustomOp *op) { (void)op; return 3; }
static size_t one(const CustomOp *op) { (void)op; return 1; }
static int required(const CustomOp *op, size_t index) { (void)op, (void)index; return 0; }
static int default_memory(const CustomOp *op, size_t index) { (void)op, (void)index; return 0; }
static int arity(const CustomOp *op) { (void)op; return 1; }
static void destroy_kernel(void *kernel) { free(kernel); }

typedef OrtStatus *(*GetInputFn)(const void *context, size_t index, const void **out);
typedef OrtStatus *(*GetOutputFn)(void *context, size_t index, const int64_t *dims, size_t count, void **out);
typedef OrtStatus *(*TypeAndShapeFn)(const void *value, void **out);
typedef OrtStatus *(*DimsCountFn)(const void *info, size_t *out);
typedef OrtStatus *(*DimsFn)(const void *info, int64_t *dims, size_t count);
typedef OrtStatus *(*ElementCountFn)(const void *info, size_t *out);
typedef void (*ReleaseInfoFn)(void *info);
typedef OrtStatus *(*MutableDataFn)(void *value, void **out);

/* failures of the calls below mean a broken runtime; the output is then left as onnxruntime made it */
static void compute(void *kernel_state, void *context) {
  const Kernel *kernel = (const Kernel *)kernel_state;
  const void *values[3];
  for (size_t i = 0; i < 3; i++)
    if (CALL(API_KERNEL_CONTEXT_GET_INPUT, GetInputFn)(context, i, &values[i]) != NULL) return;
  void *info = NULL;
  if (CALL(API_GET_TENSOR_TYPE_AND_SHAPE, TypeAndShapeFn)(values[0], &info) != NULL) return;
  size_t rank = 0;
  int64_t dims[8];
  int ok = CALL(API_GET_DIMENSIONS_COUNT, DimsCountFn)(info, &rank) == NULL && rank >= 1 && rank <= 8 &&
           CALL(API_GET_DIMENSIONS, DimsFn)(info, dims, rank) == NULL;
  CALL(API_RELEASE_TENSOR_TYPE_AND_SHAPE_INFO, ReleaseInfoFn)(info);
  if (!ok) return;
  size_t channel_count = 0;
  if (CALL(API_GET_TENSOR_TYPE_AND_SHAPE, TypeAndShapeFn)(values[1], &info) != NULL) return;
  ok = CALL(API_GET_TENSOR_SHAPE_ELEMENT_COUNT, ElementCountFn)(info, &channel_count) == NULL;
  CALL(API_RELEASE_TENSOR_TYPE_AND_SHAPE_INFO, ReleaseInfoFn)(info);
  if (!ok) return;
  int64_t total = 1;
  for (size_t i = 0; i < rank; i++) total *= dims[i];
  int64_t n = rank >= 1 ? dims[rank - 1] : 1;
  void *output = NULL;
  if (CALL(API_KERNEL_CONTEXT_GET_OUTPUT, GetOutputFn)(context, 0, dims, rank, &output) != NULL) return;
  void *data[4];
  for (size_t i = 0; i < 3; i++)
    if (CALL(API_GET_TENSOR_MUTABLE_DATA, MutableDataFn)((void *)values[i], &data[i]) != NULL) return;
  if (CALL(API_GET_TENSOR_MUTABLE_DATA, MutableDataFn)(output, &data[3]) != NULL) return;
  if (total == 0) return;
  int64_t rows = total / n;
  if ((int64_t)channel_count != rows) { /* the rewrite only makes [.., C, T] with C values of a and r: say so */
    for (int64_t i = 0; i < total; i++) ((float *)data[3])[i] = NAN;
    return;
  }
  stepaudio_snake((const float *)data[0], (const float *)data[1], (const float *)data[2], (float *)data[3], rows, n,
                  kernel->threads);
}

static CustomOp snake_op = {
    .version = API_VERSION,
    .CreateKernel = create_kernel,
    .GetName = op_name,
    .GetExecutionProviderType = op_provider,
    .GetInputType = float_type,
    .GetInputTypeCount = three,
    .GetOutputType = float_type,
    .GetOutputTypeCount = one,
    .KernelCompute = compute,
    .KernelDestroy = destroy_kernel,
    .GetInputCharacteristic = required,
    .GetOutputCharacteristic = required,
    .GetInputMemoryType = default_memory,
    .GetVariadicInputMinArity = arity,
    .GetVariadicInputHomogeneity = arity,
    .GetVariadicOutputMinArity = arity,
    .GetVariadicOutputHomogeneity = arity,
};

typedef OrtStatus *(*CreateDomainFn)(const char *name, void **out);
typedef OrtStatus *(*DomainAddFn)(void *domain, const CustomOp *op);
typedef OrtStatus *(*AddDomainFn)(void *options, void *domain);
typedef OrtStatus *(*CreateStatusFn)(int code, const char *message);

/* the entry onnxruntime's register_custom_ops_library calls */
__attribute__((visibility("default"))) OrtStatus *RegisterCustomOps(void *options, const ApiBase *base) {
  const void *const *table = (const void *const *)base->GetApi(API_VERSION);
  if (table == NULL) return NULL; /* cannot even make a status; the session then fails on the unknown op */
  api_table = table;
  void *domain = NULL;
  OrtStatus *status = CALL(API_CREATE_CUSTOM_OP_DOMAIN, CreateDomainFn)("stepaudio", &domain);
  if (status != NULL) return status;
  status = CALL(API_CUSTOM_OP_DOMAIN_ADD, DomainAddFn)(domain, &snake_op);
  if (status != NULL) return status;
  return CALL(API_ADD_CUSTOM_OP_DOMAIN, AddDomainFn)(options, domain);
}
