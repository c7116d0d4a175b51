/* 4-bit grouped weights times float activations on AVX2 + FMA, for stepaudio.kernels.int4_avx2.

Weights: unsigned nibbles u in 0..15 with weight = (u - z) * scale per group of `group` inputs (z = 8 where
there are no zero points). Output rows are interleaved in blocks of 8: for each 8 inputs k .. k + 7, a block
stores 32 bytes, 4 a row (row i in bytes 4i .. 4i + 3, the lane i of a vector), byte j holding input k + j in
its low nibble and k + 4 + j in its high one. So one load, two masks and two broadcasts of 4 activation bytes
feed 64 weights, every 32-bit lane stays one output row (no horizontal sums), and a block's weights are one
linear stream. Scales are float32 [n / 8, groups, 8], zero points uint8 [n / 8, groups, 8] or NULL.

Activations are rounded to int8 per row and group (scale = absmax / 127, round to nearest even), once per
call. A group's product is then integer: sum(u * a) by maddubs (u8 x s8 -> s16 pairs, |pair| <= 3810; four
loads summed stay in int16), widened by madd, minus z * sum(a), then one FMA with scale_w * scale_a into
float accumulators that are the outputs.

The weights are streamed once: blocks of output rows are split across threads in contiguous ranges, and every
activation row is multiplied with a block while it sits in L1. Software prefetch runs ahead of each stream
so that the DRAM reads overlap the integer work. */

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define ITEM_BLOCKS 2      /* blocks of 8 output rows per thread work item */
#ifndef PREFETCH_HINT
#define PREFETCH_HINT _MM_HINT_T0
#endif
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 1024 /* how far ahead of each weight stream to prefetch */
#endif
#define SMALL_BYTES (1 << 20) /* weights below this run on one thread: waking a second costs more */

int int4_avx2_abi(void) { return 2; }

static inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* 8 activations from x (float32, or bfloat16 where bf16) at index i. */
static inline __m256 load8(const void *x, int bf16, size_t i) {
    if (!bf16) return _mm256_loadu_ps((const float *)x + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)x + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* One row of k activations to int8 per group: q, scale and the integer sum of each group. */
static void quantize_row(const void *x, int bf16, int k, int group, int8_t *q, float *scale, int32_t *sums) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int g = 0; g < k / group; g++) {
        const size_t p = (size_t)g * group;
        __m256 top = _mm256_setzero_ps();
        for (int i = 0; i < group; i += 8) top = _mm256_max_ps(top, _mm256_andnot_ps(sign, load8(x, bf16, p + i)));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(top), _mm256_extractf128_ps(top, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float amax = _mm_cvtss_f32(m);
        scale[g] = amax / 127.0f;
        const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        __m256i total = _mm256_setzero_si256();
        for (int i = 0; i < group; i += 32) {
            __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(load8(x, bf16, p + i), inv));
            __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(load8(x, bf16, p + i + 8), inv));
            __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(load8(x, bf16, p + i + 16), inv));
            __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(load8(x, bf16, p + i + 24), inv));
            total = _mm256_add_epi32(total, _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d)));
            __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
            _mm256_storeu_si256((__m256i *)(q + (size_t)g * group + i), _mm256_permutevar8x32_epi32(packed, order));
        }
        sums[g] = hsum_i32(total);
    }
}

typedef struct {
    const uint8_t *w;     /* [n / 8, k / 8, 8, 4] */
    const float *wscale;  /* [n / 8, groups, 8] */
    const uint8_t *wzero; /* [n / 8, groups, 8] or NULL */
    const int8_t *aq;     /* [rows, k] */
    const float *ascale;  /* [rows, groups] */
    const int32_t *asum;  /* [rows, groups] */
    const float *bias;    /* [n] or NULL */
    void *out;            /* [rows, n], float32 or bfloat16 where out_bf16 */
    int out_bf16;
    int k, n, group;
} problem;

/* 8 outputs at index i: float32, or bfloat16 rounded to nearest even. */
static inline void store8(const problem *p, size_t i, __m256 v) {
    if (!p->out_bf16) {
        _mm256_storeu_ps((float *)p->out + i, v);
        return;
    }
    __m256i bits = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    bits = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
    const __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
    _mm_storeu_si128((__m128i *)((uint16_t *)p->out + i), h);
}

/* Activation rows a0 .. a0 + RA - 1 times the RB blocks of 8 weight rows from block b0 (RA * RB <= 4: every
   accumulator stays in a register). Lane i of each vector is weight row 8 * block + i throughout: the dot
   products need no horizontal sums, and a group's scales and zero points are one 8-wide load. */
static inline __attribute__((always_inline)) void tile(const problem *p, int a0, int b0, const int RA,
                                                       const int RB) {
    const int k = p->k, group = p->group, groups = k / group;
    const __m256i low = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const uint8_t *w[4];
    const int8_t *x[4];
    __m256 f[4][4];
    for (int b = 0; b < RB; b++) w[b] = p->w + (size_t)(b0 + b) * 4 * k;
    for (int a = 0; a < RA; a++) x[a] = p->aq + (size_t)(a0 + a) * k;
    for (int a = 0; a < RA; a++)
        for (int b = 0; b < RB; b++) f[a][b] = _mm256_setzero_ps();
    for (int g = 0; g < groups; g++) {
        __m256i acc[4][4];
        for (int a = 0; a < RA; a++)
            for (int b = 0; b < RB; b++) acc[a][b] = _mm256_setzero_si256();
        for (int s = 0; s < group; s += 32) { /* 32 inputs: four loads, at most 4 x 7620 in an int16 lane */
            __m256i part[4][4];
            for (int a = 0; a < RA; a++)
                for (int b = 0; b < RB; b++) part[a][b] = _mm256_setzero_si256();
            for (int j = 0; j < 4; j++) {
                const int at = g * group + s + 8 * j; /* first input of this load */
                __m256i xl[4], xh[4];
                for (int a = 0; a < RA; a++) {
                    xl[a] = _mm256_set1_epi32(*(const int32_t *)(x[a] + at));
                    xh[a] = _mm256_set1_epi32(*(const int32_t *)(x[a] + at + 4));
                }
                for (int b = 0; b < RB; b++) {
                    const uint8_t *src = w[b] + (size_t)at * 4;
                    if (j & 1) _mm_prefetch((const char *)(src + PREFETCH_BYTES), PREFETCH_HINT);
                    const __m256i v = _mm256_loadu_si256((const __m256i *)src);
                    const __m256i lo = _mm256_and_si256(v, low);
                    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    for (int a = 0; a < RA; a++)
                        part[a][b] = _mm256_add_epi16(part[a][b], _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl[a]),
                                                                                   _mm256_maddubs_epi16(hi, xh[a])));
                }
            }
            for (int a = 0; a < RA; a++)
                for (int b = 0; b < RB; b++) acc[a][b] = _mm256_add_epi32(acc[a][b], _mm256_madd_epi16(part[a][b], ones));
        }
        for (int b = 0; b < RB; b++) {
            const size_t at = ((size_t)(b0 + b) * groups + g) * 8;
            const __m256 ws = _mm256_loadu_ps(p->wscale + at);
            __m256i z = _mm256_set1_epi32(8);
            if (p->wzero) z = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p->wzero + at)));
            for (int a = 0; a < RA; a++) {
                const size_t ai = (size_t)(a0 + a) * groups + g;
                const __m256i dot = _mm256_sub_epi32(acc[a][b], _mm256_mullo_epi32(z, _mm256_set1_epi32(p->asum[ai])));
                f[a][b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(ws, _mm256_set1_ps(p->ascale[ai])),
                                          f[a][b]);
            }
        }
    }
    for (int b = 0; b < RB; b++) {
        const int r0 = 8 * (b0 + b);
        const __m256 bias = p->bias ? _mm256_loadu_ps(p->bias + r0) : _mm256_setzero_ps();
        for (int a = 0; a < RA; a++) store8(p, (size_t)(a0 + a) * p->n + r0, _mm256_add_ps(f[a][b], bias));
    }
}

static void tile_1x2(const problem *p, int a0, int b0) { tile(p, a0, b0, 1, 2); }
static void tile_1x1(const problem *p, int a0, int b0) { tile(p, a0, b0, 1, 1); }
static void tile_2x2(const problem *p, int a0, int b0) { tile(p, a0, b0, 2, 2); }
static void tile_2x1(const problem *p, int a0, int b0) { tile(p, a0, b0, 2, 1); }
static void tile_3x1(const problem *p, int a0, int b0) { tile(p, a0, b0, 3, 1); }
static void tile_4x1(const problem *p, int a0, int b0) { tile(p, a0, b0, 4, 1); }

/* Blocks of 8 weight rows [b0, b1) times every activation row, up to four activation rows at a time. */
static void span(const problem *p, int rows, int b0, int b1) {
    for (int a0 = 0; a0 < rows; a0 += 4) {
        const int ra = rows - a0 < 4 ? rows - a0 : 4;
        int b = b0;
        if (ra <= 2)
            for (; b + 2 <= b1; b += 2) (ra == 1 ? tile_1x2 : tile_2x2)(p, a0, b);
        for (; b < b1; b++) {
            if (ra == 1) tile_1x1(p, a0, b);
            else if (ra == 2) tile_2x1(p, a0, b);
            else if (ra == 3) tile_3x1(p, a0, b);
            else tile_4x1(p, a0, b);
        }
    }
}

/* out[rows, n] = x[rows, k] (int8-rounded per group) times the weights, plus bias (float32). x and out are
   float32, or bfloat16 where `bf16` (bit 0: x, bit 1: out). Returns 0, or a negative code for arguments it
   cannot take: -1 shape, -2 group size, -3 memory. */
int int4_avx2_matmul(const void *x, int rows, int k, const uint8_t *w, const float *wscale, const uint8_t *wzero,
                     int n, int group, const float *bias, void *out, int bf16, int threads) {
    if (rows < 0 || n < 0 || n % 8 || k <= 0) return -1;
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
        quantize_row((const char *)x + (size_t)a * k * (bf16 & 1 ? 2 : 4), bf16 & 1, k, group, aq + (size_t)a * k, ascale + (size_t)a * groups,
                     asum + (size_t)a * groups);
    const problem p = {w, wscale, wzero, aq, ascale, asum, bias, out, (bf16 >> 1) & 1, k, n, group};
    const int items = (n / 8 + ITEM_BLOCKS - 1) / ITEM_BLOCKS;
    const size_t bytes = (size_t)n * k / 2;
    if (threads < 1) threads = 1;
    if (threads > items) threads = items;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && bytes >= SMALL_BYTES)
    for (int i = 0; i < items; i++) {
        const int b0 = i * ITEM_BLOCKS;
        span(&p, rows, b0, b0 + ITEM_BLOCKS < n / 8 ? b0 + ITEM_BLOCKS : n / 8);
    }
    free(aq);
    free(ascale);
    free(asum);
    return 0;
}
