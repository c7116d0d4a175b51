/* 4-bit grouped weights times float activations on AVX2 + FMA, for stepaudio.kernels.int4_avx2.

Weights: unsigned nibbles u in 0..15 with weight = (u - z) * scale per group of `group` inputs (z = 8 where
there are no zero points). Each output row is in / 2 bytes; byte j of the 32-byte chunk c holds input
64c + j in its low nibble and input 64c + 32 + j in its high nibble, so one 32-byte load and two masks give
64 weights whose activations are 64 consecutive bytes. Scales are float32 [out, groups], zero points uint8
[out, groups] or NULL.

Activations are rounded to int8 per row and group (scale = absmax / 127, round to nearest even), once per
call. A group's product is then integer: sum(u * a) by maddubs (u8 x s8 -> s16 pairs; |pair| <= 3810, and up
to 8 pairs a lane for a 256-group fit in int16), widened by madd, minus z * sum(a), then one FMA with
scale_w * scale_a into a float accumulator.

The weights are streamed once: output rows are split across threads in contiguous blocks of 16, and every
activation row is multiplied with a block while it sits in L1/L2. Software prefetch runs ahead of each row so
that the DRAM stream overlaps the integer work. */

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define BLOCK_ROWS 16      /* output rows per thread work item */
#define PREFETCH_BYTES 512 /* how far ahead of each weight row to prefetch */
#define SMALL_BYTES 65536  /* weights below this run on one thread: a parallel region costs more */

int int4_avx2_abi(void) { return 1; }

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* One row of k floats to int8 per group: q, scale and the integer sum of each group. */
static void quantize_row(const float *x, int k, int group, int8_t *q, float *scale, int32_t *sums) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int g = 0; g < k / group; g++) {
        const float *p = x + (size_t)g * group;
        __m256 top = _mm256_setzero_ps();
        for (int i = 0; i < group; i += 8) top = _mm256_max_ps(top, _mm256_andnot_ps(sign, _mm256_loadu_ps(p + i)));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(top), _mm256_extractf128_ps(top, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float amax = _mm_cvtss_f32(m);
        scale[g] = amax / 127.0f;
        const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        __m256i total = _mm256_setzero_si256();
        for (int i = 0; i < group; i += 32) {
            __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + i), inv));
            __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + i + 8), inv));
            __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + i + 16), inv));
            __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + i + 24), inv));
            total = _mm256_add_epi32(total, _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d)));
            __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
            _mm256_storeu_si256((__m256i *)(q + (size_t)g * group + i), _mm256_permutevar8x32_epi32(packed, order));
        }
        sums[g] = hsum_i32(total);
    }
}

typedef struct {
    const uint8_t *w;     /* [n, k / 2] */
    const float *wscale;  /* [n, groups] */
    const uint8_t *wzero; /* [n, groups] or NULL */
    const int8_t *aq;     /* [rows, k] */
    const float *ascale;  /* [rows, groups] */
    const int32_t *asum;  /* [rows, groups] */
    const float *bias;    /* [n] or NULL */
    float *out;           /* [rows, n] */
    int k, n, group;
} problem;

/* The group's int16 pair sums `acc` of weight row r and activation row a, finished into `*f`. */
static inline __attribute__((always_inline)) __m256 finish(const problem *p, __m256i acc, int a, int r, int g,
                                                           __m256 f) {
    const int groups = p->k / p->group;
    const size_t wi = (size_t)r * groups + g, ai = (size_t)a * groups + g;
    const int z = p->wzero ? p->wzero[wi] : 8;
    __m256i dot = _mm256_madd_epi16(acc, _mm256_set1_epi16(1));
    dot = _mm256_sub_epi32(dot, _mm256_zextsi128_si256(_mm_cvtsi32_si128(z * p->asum[ai])));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(p->wscale[wi] * p->ascale[ai]), f);
}

/* Activation rows a0 .. a0 + RA - 1 times weight rows r0 .. r0 + RW - 1 (RA * RW <= 4: accumulators and
   their int16 partial sums stay in registers). */
static inline __attribute__((always_inline)) void tile(const problem *p, int a0, int r0, const int RA,
                                                       const int RW) {
    const int k = p->k, group = p->group, groups = k / group;
    const __m256i low = _mm256_set1_epi8(0x0f);
    const uint8_t *w[4];
    const int8_t *x[4];
    __m256 f[4][4];
    for (int r = 0; r < RW; r++) w[r] = p->w + (size_t)(r0 + r) * (k / 2);
    for (int a = 0; a < RA; a++) x[a] = p->aq + (size_t)(a0 + a) * k;
    for (int a = 0; a < RA; a++)
        for (int r = 0; r < RW; r++) f[a][r] = _mm256_setzero_ps();
    if (group >= 64) {
        const int chunks = group / 64;
        for (int g = 0; g < groups; g++) {
            __m256i acc[4][4];
            for (int a = 0; a < RA; a++)
                for (int r = 0; r < RW; r++) acc[a][r] = _mm256_setzero_si256();
            for (int c = 0; c < chunks; c++) {
                const size_t at = (size_t)(g * chunks + c) * 32;
                __m256i xl[4], xh[4];
                for (int a = 0; a < RA; a++) {
                    xl[a] = _mm256_loadu_si256((const __m256i *)(x[a] + 2 * at));
                    xh[a] = _mm256_loadu_si256((const __m256i *)(x[a] + 2 * at + 32));
                }
                for (int r = 0; r < RW; r++) {
                    if (!(at & 63)) _mm_prefetch((const char *)(w[r] + at + PREFETCH_BYTES), _MM_HINT_T0);
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(w[r] + at));
                    const __m256i lo = _mm256_and_si256(v, low);
                    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    for (int a = 0; a < RA; a++)
                        acc[a][r] = _mm256_add_epi16(acc[a][r], _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl[a]),
                                                                                 _mm256_maddubs_epi16(hi, xh[a])));
                }
            }
            for (int a = 0; a < RA; a++)
                for (int r = 0; r < RW; r++) f[a][r] = finish(p, acc[a][r], a0 + a, r0 + r, g, f[a][r]);
        }
    } else { /* group 32: a chunk's low nibbles are group 2c, its high nibbles group 2c + 1 */
        for (int c = 0; c < k / 64; c++) {
            const size_t at = (size_t)c * 32;
            __m256i xl[4], xh[4];
            for (int a = 0; a < RA; a++) {
                xl[a] = _mm256_loadu_si256((const __m256i *)(x[a] + 2 * at));
                xh[a] = _mm256_loadu_si256((const __m256i *)(x[a] + 2 * at + 32));
            }
            for (int r = 0; r < RW; r++) {
                if (!(at & 63)) _mm_prefetch((const char *)(w[r] + at + PREFETCH_BYTES), _MM_HINT_T0);
                const __m256i v = _mm256_loadu_si256((const __m256i *)(w[r] + at));
                const __m256i lo = _mm256_and_si256(v, low);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                for (int a = 0; a < RA; a++) {
                    f[a][r] = finish(p, _mm256_maddubs_epi16(lo, xl[a]), a0 + a, r0 + r, 2 * c, f[a][r]);
                    f[a][r] = finish(p, _mm256_maddubs_epi16(hi, xh[a]), a0 + a, r0 + r, 2 * c + 1, f[a][r]);
                }
            }
        }
    }
    for (int a = 0; a < RA; a++)
        for (int r = 0; r < RW; r++)
            p->out[(size_t)(a0 + a) * p->n + r0 + r] = hsum(f[a][r]) + (p->bias ? p->bias[r0 + r] : 0.0f);
}

static void tile_1x4(const problem *p, int a0, int r0) { tile(p, a0, r0, 1, 4); }
static void tile_1x1(const problem *p, int a0, int r0) { tile(p, a0, r0, 1, 1); }
static void tile_2x2(const problem *p, int a0, int r0) { tile(p, a0, r0, 2, 2); }
static void tile_2x1(const problem *p, int a0, int r0) { tile(p, a0, r0, 2, 1); }
static void tile_3x1(const problem *p, int a0, int r0) { tile(p, a0, r0, 3, 1); }
static void tile_4x1(const problem *p, int a0, int r0) { tile(p, a0, r0, 4, 1); }

/* Weight rows [r0, r1) times every activation row, four activation rows at a time. */
static void block(const problem *p, int rows, int r0, int r1) {
    for (int a0 = 0; a0 < rows; a0 += 4) {
        const int ra = rows - a0 < 4 ? rows - a0 : 4;
        int r = r0;
        if (ra == 1)
            for (; r + 4 <= r1; r += 4) tile_1x4(p, a0, r);
        if (ra == 2)
            for (; r + 2 <= r1; r += 2) tile_2x2(p, a0, r);
        for (; r < r1; r++) {
            if (ra == 1) tile_1x1(p, a0, r);
            else if (ra == 2) tile_2x1(p, a0, r);
            else if (ra == 3) tile_3x1(p, a0, r);
            else tile_4x1(p, a0, r);
        }
    }
}

/* out[rows, n] = x[rows, k] (float32, int8-rounded per group) times the weights, plus bias. Returns 0, or a
   negative code for arguments it cannot take: -1 shape, -2 group size, -3 memory. */
int int4_avx2_matmul(const float *x, int rows, int k, const uint8_t *w, const float *wscale, const uint8_t *wzero,
                     int n, int group, const float *bias, float *out, int threads) {
    if (rows < 0 || n < 0 || k <= 0 || k % 64) return -1;
    if ((group != 32 && group != 64 && group != 128 && group != 256) || k % group) return -2;
    if (rows == 0 || n == 0) return 0;
    const int groups = k / group;
    int8_t *aq = aligned_alloc(64, ((size_t)rows * k + 63) / 64 * 64);
    float *ascale = malloc(sizeof(float) * (size_t)rows * groups);
    int32_t *asum = malloc(sizeof(int32_t) * (size_t)rows * groups);
    if (!aq || !ascale || !asum) {
        free(aq);
        free(ascale);
        free(asum);
        return -3;
    }
    for (int a = 0; a < rows; a++)
        quantize_row(x + (size_t)a * k, k, group, aq + (size_t)a * k, ascale + (size_t)a * groups,
                     asum + (size_t)a * groups);
    const problem p = {w, wscale, wzero, aq, ascale, asum, bias, out, k, n, group};
    const int blocks = (n + BLOCK_ROWS - 1) / BLOCK_ROWS;
    const size_t bytes = (size_t)n * k / 2;
    if (threads < 1) threads = 1;
    if (threads > blocks) threads = blocks;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && bytes >= SMALL_BYTES)
    for (int b = 0; b < blocks; b++) {
        const int r0 = b * BLOCK_ROWS;
        block(&p, rows, r0, r0 + BLOCK_ROWS < n ? r0 + BLOCK_ROWS : n);
    }
    free(aq);
    free(ascale);
    free(asum);
    return 0;
}
