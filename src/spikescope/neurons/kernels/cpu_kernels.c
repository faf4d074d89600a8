/* CPU kernels for the multi-step LIF / PLIF recurrence and the integer spike (see cpu.py for the contract).
 *
 * Every call walks the flattened [T, N] tensor in chunks of CHUNK neurons; inside a chunk the loop over T keeps the
 * membrane (forward) or dL/dV (backward) in a stack array, so each input is read once and each output written once.
 * The inner loops are plain elementwise code that the compiler vectorises; the smooth surrogates' exp and reciprocal
 * are written with AVX2 intrinsics (scalar code elsewhere). The forward is built with -ffp-contract=off: the charge
 * is evaluated as the same sequence of float32 roundings as the torch reference, so spikes are bit-identical. The
 * backward (gradients within 1e-6, not bit-identical) is built with FMA contraction.
 * Every buffer is distinct (restrict): the loops vectorise without runtime alias checks.
 * bfloat16 tensors are passed as uint16_t and converted exactly (load) or rounded to nearest even (store).
 */
#include <math.h>
#ifdef __AVX__
#include <immintrin.h>
#endif
#include <stdint.h>
#include <string.h>

#define CHUNK 512
/* Steps are taken UNROLL at a time so the membrane stays in a register for UNROLL steps between its stores to
 * the chunk's stack array (T = 4 is one trip). */
#define UNROLL 4
#define INLINE static inline __attribute__((always_inline))

enum { SAVE_NONE = 0, SAVE_H = 1, SAVE_CODES = 2 };
enum { SUR_ATAN = 0, SUR_SIGMOID = 1, SUR_RECT = 2, SUR_TRIANGLE = 3 };
enum { LEARN_NONE = 0, LEARN_K = 1, LEARN_K_X = 2 };

INLINE float bf16_load(const uint16_t *p, int64_t i) {
    uint32_t u = (uint32_t)p[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

INLINE uint16_t bf16_round(float f) { /* round to nearest even, NaN -> quiet NaN, as c10::BFloat16 */
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t r = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    return f != f ? (uint16_t)0x7FC0 : r;
}

INLINE float load(const void *p, int64_t i, const int BF) {
    return BF ? bf16_load((const uint16_t *)p, i) : ((const float *)p)[i];
}

INLINE void store(void *p, int64_t i, float v, const int BF) {
    if (BF)
        ((uint16_t *)p)[i] = bf16_round(v);
    else
        ((float *)p)[i] = v;
}

/* exp(x) for the sigmoid surrogate: Cephes' expf polynomial (relative error ~1e-7), branch-free so it vectorises.
 * n = round(x / ln 2) comes from adding 1.5 * 2^23: the sum's bits are those of 1.5 * 2^23 (0x4B400000) plus n, so
 * shifting them (plus the bias 127) left by 23 gives the bits of 2^n, the constant's bits shifting out (no round or
 * convert instructions). */
INLINE float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float shifted = x * 1.44269504088896341f + 12582912.0f;
    const float n = shifted - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = fmaf(1.9875691500e-4f, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    const float y = fmaf(p * r, r, r + 1.0f);
    uint32_t bits;
    memcpy(&bits, &shifted, 4);
    bits = (bits + 127u) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &bits, 4);
    return y * scale;
}

/* sg'(u), u = H - V_th; (a, b) as in the Triton kernels: atan (alpha/2, pi/2 alpha), sigmoid (alpha, alpha),
 * rectangle (alpha, 0.5/alpha), triangle (alpha, alpha^2) */
INLINE float surrogate(float u, float a, float b, const int SUR) {
    if (SUR == SUR_ATAN) {
        float z = b * u;
        return a / (1.0f + z * z);
    }
    if (SUR == SUR_SIGMOID) {
        float sg = 1.0f / (1.0f + exp_poly(-b * u));
        return a * sg * (1.0f - sg);
    }
    if (SUR == SUR_RECT) return fabsf(u) < b ? a : 0.0f;
    float g = a - b * fabsf(u);
    return g > 0.0f ? g : 0.0f;
}

#if defined(__AVX2__) && defined(__FMA__)
/* exp(x) on 8 lanes, ~2e-7 relative error: the same polynomial as exp_poly, as one Horner chain, the reduction
 * x - n ln 2 as one FMA (exact product; ln 2's float rounding costs < 6e-8 for the |x| < 20 where a sigmoid's
 * derivative is not negligible). max/min take the constant first so that a NaN lane stays NaN. */
INLINE __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
    const __m256 shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(12582912.0f));
    const __m256 n = _mm256_sub_ps(shifted, _mm256_set1_ps(12582912.0f));
    const __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693147180559945f), x);
    __m256 y = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* 1 / d for d >= 1: the hardware estimate (relative error < 4e-4) and one Newton step (< 2e-7), where a divide
 * would stall. d * r must not be inf * 0: d is finite here or the caller caps it. */
INLINE __m256 recip8(__m256 d) {
    const __m256 r = _mm256_rcp_ps(d);
    return _mm256_fmadd_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(1.0f)), r);
}
#endif

/* out[i] = sg'(h[i] - V_th) for the n neurons of a chunk: computed before the backward recurrence, as a plain
 * elementwise loop (8 lanes at a time with AVX2 for the smooth surrogates, whose exp and divide dominate) */
INLINE void surrogate_block(const float *__restrict h, float *__restrict out, int64_t n, float vth, float a, float b,
                            const int SUR) {
    int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    if (SUR == SUR_ATAN) { /* a / (1 + (b u)^2), 1 + z^2 capped at 1e30 (beyond, the value is below 1e-30 anyway) */
        const __m256 vth8 = _mm256_set1_ps(vth), a8 = _mm256_set1_ps(a), b8 = _mm256_set1_ps(b);
        for (; i + 8 <= n; i += 8) {
            const __m256 z = _mm256_mul_ps(b8, _mm256_sub_ps(_mm256_loadu_ps(h + i), vth8));
            const __m256 d = _mm256_min_ps(_mm256_set1_ps(1e30f), _mm256_fmadd_ps(z, z, _mm256_set1_ps(1.0f)));
            _mm256_storeu_ps(out + i, _mm256_mul_ps(a8, recip8(d)));
        }
    }
    if (SUR == SUR_SIGMOID) { /* a (s - s^2), s = 1 / (1 + exp(-b u)); exp(-b u) <= exp(88), so 1 + it is finite */
        const __m256 nb = _mm256_set1_ps(-b), bvth = _mm256_set1_ps(b * vth), a8 = _mm256_set1_ps(a);
        for (; i + 8 <= n; i += 8) {
            const __m256 e = exp8(_mm256_fmadd_ps(_mm256_loadu_ps(h + i), nb, bvth));
            const __m256 sg = recip8(_mm256_add_ps(_mm256_set1_ps(1.0f), e));
            _mm256_storeu_ps(out + i, _mm256_mul_ps(a8, _mm256_fnmadd_ps(sg, sg, sg)));
        }
    }
#endif
    for (; i < n; i++) out[i] = surrogate(h[i] - vth, a, b, SUR);
}

/* Streaming stores. A call that writes more than the last-level cache holds (`stream`, decided in cpu.py) computes
 * each trip's outputs into per-step arrays of the chunk (in L1), which flush() copies out with non-temporal stores:
 * they skip reading the destination lines into the cache first, so a write costs one pass over memory, not two.
 * Smaller calls write the tensors directly (their outputs stay cached for the next layer). */
INLINE void flush(void *__restrict dst, const void *__restrict src, int64_t bytes) {
#ifdef __AVX__
    char *d = (char *)dst;
    const char *s = (const char *)src;
    int64_t head = (int64_t)((32 - ((uintptr_t)d & 31)) & 31);
    head = head < bytes ? head : bytes;
    memcpy(d, s, head);
    d += head, s += head, bytes -= head;
    for (; bytes >= 32; bytes -= 32, d += 32, s += 32)
        _mm256_stream_si256((__m256i *)d, _mm256_loadu_si256((const __m256i *)s));
    memcpy(d, s, bytes);
#else
    memcpy(dst, src, bytes);
#endif
}

INLINE void fence(int stream) {
#ifdef __AVX__
    if (stream) _mm_sfence();
#endif
}

/* The chunk's stage arrays of one output: UNROLL steps of CHUNK elements, 4 bytes each (bfloat16 and uint8 outputs use
 * the front of each row). */
typedef float Stage[UNROLL][CHUNK];

/* Where step u of a trip writes output `out` (offset o of its step in the tensor, element size es). */
INLINE void *dest(void *out, Stage *stage, int u, int64_t o, int64_t es, int stream) {
    return stream ? (void *)(*stage)[u] : (void *)((char *)out + o * es);
}

/* One forward step of neuron i (u: step within the trip; s, v, h, c: that step's destinations): returns V[t] from
 * V[t-1] = vp. */
INLINE float fwd_step(void *__restrict s, void *__restrict v, float *__restrict h_out, uint8_t *__restrict c,
                      int64_t i, float xt, float vp, float k, float vth, float vr, float win, const int BF,
                      const int DECAY_INPUT, const int HARD, const int STORE_V, const int SAVE) {
    float h, a = vp - vr;
    if (DECAY_INPUT) { /* H = V + (X - (V - V_reset)) * k */
        a = xt - a;
        a = a * k;
        h = vp + a;
    } else { /* H = V - (V - V_reset) * k + X */
        a = a * k;
        h = vp - a;
        h = h + xt;
    }
    const int fired = h >= vth;
    const float vn = HARD ? (fired ? vr : h) : (fired ? h - vth : h);
    store(s, i, fired ? 1.0f : 0.0f, BF);
    if (STORE_V) store(v, i, vn, BF);
    if (SAVE == SAVE_H) h_out[i] = h;
    if (SAVE == SAVE_CODES) c[i] = (uint8_t)(fired | ((fabsf(h - vth) < win) << 1));
    return vn;
}

INLINE void lif_fwd_body(const void *__restrict x, void *__restrict s, void *__restrict vs, float *__restrict hs,
                         uint8_t *__restrict codes, int64_t T, int64_t N, int64_t c_begin, int64_t c_end, float k,
                         float vth, float vr, float win, int stream, const int BF, const int DECAY_INPUT,
                         const int HARD, const int STORE_V, const int SAVE) {
    float v[CHUNK];
    Stage st_s, st_v, st_h, st_c;
    const int64_t es = BF ? 2 : 4;
    void *ds[UNROLL], *dv[UNROLL];
    float *dh[UNROLL];
    uint8_t *dc[UNROLL];
#define FWD_STEP(u, o, vp) \
    fwd_step(ds[u], dv[u], dh[u], dc[u], i, load(x, o, BF), vp, k, vth, vr, win, BF, DECAY_INPUT, HARD, STORE_V, SAVE)
    for (int64_t c0 = c_begin; c0 < c_end; c0 += CHUNK) {
        const int64_t n = c_end - c0 < CHUNK ? c_end - c0 : CHUNK;
        for (int64_t i = 0; i < n; i++) v[i] = vr;
        for (int64_t t = 0; t < T;) {
            const int steps = t + UNROLL <= T ? UNROLL : 1;
            for (int u = 0; u < steps; u++) {
                const int64_t o = (t + u) * N + c0;
                ds[u] = dest(s, &st_s, u, o, es, stream);
                dv[u] = dest(vs, &st_v, u, o, es, stream);
                dh[u] = (float *)dest(hs, &st_h, u, o, 4, stream);
                dc[u] = (uint8_t *)dest(codes, &st_c, u, o, 1, stream);
            }
            const int64_t o = t * N + c0;
            if (steps == UNROLL) {
#pragma GCC ivdep
                for (int64_t i = 0; i < n; i++) {
                    float vp = FWD_STEP(0, o + i, v[i]);
                    vp = FWD_STEP(1, o + N + i, vp);
                    vp = FWD_STEP(2, o + 2 * N + i, vp);
                    v[i] = FWD_STEP(3, o + 3 * N + i, vp);
                }
            } else {
#pragma GCC ivdep
                for (int64_t i = 0; i < n; i++) v[i] = FWD_STEP(0, o + i, v[i]);
            }
            if (stream)
                for (int u = 0; u < steps; u++) {
                    const int64_t ou = o + u * N;
                    flush((char *)s + ou * es, ds[u], n * es);
                    if (STORE_V) flush((char *)vs + ou * es, dv[u], n * es);
                    if (SAVE == SAVE_H) flush(hs + ou, dh[u], n * 4);
                    if (SAVE == SAVE_CODES) flush(codes + ou, dc[u], n);
                }
            t += steps;
        }
    }
    fence(stream);
#undef FWD_STEP
}

/* One backward step at offset o (step t), neuron i: writes dL/dX[t] to gx[i] (the step's destination) and returns
 * dL/dH[t] * (1 - k), the dL/dV[t-1] it passes on; adds the PLIF term dL/dH[t] * dH[t]/dk to *acc. sg is
 * sg'(H[t] - V_th) from surrogate_block (smooth surrogates). dV[t]/dH[t]: hard reset 1 - S (+ (V_reset - H) sg'
 * unless detached); soft reset 1 (- V_th sg' unless detached). dL/dX = dL/dH * k with decay_input, else dL/dH. */
INLINE float bwd_step(const void *__restrict gs, const void *__restrict gv, const float *__restrict hs,
                      const uint8_t *__restrict codes, const void *__restrict x, void *__restrict gx, float sg,
                      int64_t i, int64_t o, int64_t N, int first, float g, float *acc, float k, float vth, float vr,
                      float sg_a, const int BF, const int SAVE, const int HAS_GV, const int LEARN, const int HARD,
                      const int DETACH, const int DECAY_INPUT) {
    float h = 0.0f, s;
    if (SAVE == SAVE_H) {
        h = hs[o];
        s = h >= vth ? 1.0f : 0.0f;
    } else {
        const uint8_t c = codes[o];
        s = (c & 1) ? 1.0f : 0.0f;
        sg = (c & 2) ? sg_a : 0.0f;
    }
    if (HAS_GV) g = g + load(gv, o, BF);
    float dvdh;
    if (HARD)
        dvdh = DETACH ? 1.0f - s : (1.0f - s) + (vr - h) * sg;
    else
        dvdh = DETACH ? 1.0f : 1.0f - vth * sg;
    const float gh = load(gs, o, BF) * sg + g * dvdh;
    store(gx, i, DECAY_INPUT ? gh * k : gh, BF);
    if (LEARN != LEARN_NONE) {
        float vprev = vr;
        if (!first) {
            const float hp = hs[o - N];
            vprev = hp >= vth ? (HARD ? vr : hp - vth) : hp;
        }
        float dhdk = -(vprev - vr);
        if (LEARN == LEARN_K_X) dhdk = load(x, o, BF) + dhdk;
        *acc = *acc + gh * dhdk;
    }
    return gh * (1.0f - k);
}

INLINE void lif_bwd_body(const void *__restrict gs, const void *__restrict gv, const float *__restrict hs,
                         const uint8_t *__restrict codes, const void *__restrict x, void *__restrict gx,
                         double *__restrict gk, int64_t T, int64_t N, int64_t c_begin, int64_t c_end, float k,
                         float vth, float vr, float sg_a, float sg_b, int stream, const int BF, const int SUR,
                         const int SAVE, const int HAS_GV, const int LEARN, const int HARD, const int DETACH,
                         const int DECAY_INPUT) {
    float gnext[CHUNK], acc[CHUNK];
    Stage st_gx, sgs; /* dL/dX of the trip's steps t, t - 1, ... when streaming; their sg'(H - V_th) */
    const int64_t es = BF ? 2 : 4;
    void *dg[UNROLL];
    double total = 0.0;
#define BWD_STEP(u, o, first, g, a) \
    bwd_step(gs, gv, hs, codes, x, dg[u], sgs[u][i], i, o, N, first, g, a, k, vth, vr, sg_a, BF, SAVE, HAS_GV, \
             LEARN, HARD, DETACH, DECAY_INPUT)
    for (int64_t c0 = c_begin; c0 < c_end; c0 += CHUNK) {
        const int64_t n = c_end - c0 < CHUNK ? c_end - c0 : CHUNK;
        for (int64_t i = 0; i < n; i++) gnext[i] = 0.0f, acc[i] = 0.0f;
        for (int64_t t = T - 1; t >= 0;) {
            const int steps = t - UNROLL + 1 >= 1 ? UNROLL : 1; /* a trip of UNROLL steps never includes step 0 */
            const int64_t o = t * N + c0;
            for (int u = 0; u < steps; u++) {
                dg[u] = dest(gx, &st_gx, u, o - u * N, es, stream);
                if (SAVE == SAVE_H) surrogate_block(hs + o - u * N, sgs[u], n, vth, sg_a, sg_b, SUR);
            }
            if (steps == UNROLL) {
#pragma GCC ivdep
                for (int64_t i = 0; i < n; i++) {
                    float a = acc[i];
                    float g = BWD_STEP(0, o + i, 0, gnext[i], &a);
                    g = BWD_STEP(1, o - N + i, 0, g, &a);
                    g = BWD_STEP(2, o - 2 * N + i, 0, g, &a);
                    gnext[i] = BWD_STEP(3, o - 3 * N + i, 0, g, &a);
                    acc[i] = a;
                }
            } else {
#pragma GCC ivdep
                for (int64_t i = 0; i < n; i++) gnext[i] = BWD_STEP(0, o + i, t == 0, gnext[i], &acc[i]);
            }
            if (stream)
                for (int u = 0; u < steps; u++) flush((char *)gx + (o - u * N) * es, dg[u], n * es);
            t -= steps;
        }
        if (LEARN != LEARN_NONE)
            for (int64_t i = 0; i < n; i++) total += acc[i];
    }
    fence(stream);
#undef BWD_STEP
    if (LEARN != LEARN_NONE) *gk = total;
}

#ifdef SPK_LIF_FWD /* -DSPK_LIF_FWD -DK_BF= -DK_DECAY_INPUT= -DK_HARD= -DK_STORE_V= -DK_SAVE= */
void spk_lif_fwd(const void *x, void *s, void *vs, float *hs, uint8_t *codes, int64_t T, int64_t N, int64_t c_begin,
                 int64_t c_end, float k, float vth, float vr, float win, int64_t stream) {
    lif_fwd_body(x, s, vs, hs, codes, T, N, c_begin, c_end, k, vth, vr, win, (int)stream, K_BF, K_DECAY_INPUT, K_HARD, K_STORE_V, K_SAVE);
}
#endif

#ifdef SPK_LIF_BWD /* -DSPK_LIF_BWD -DK_BF= -DK_SUR= -DK_SAVE= -DK_HAS_GV= -DK_LEARN= -DK_HARD= -DK_DETACH= -DK_DECAY_INPUT= */
void spk_lif_bwd(const void *gs, const void *gv, const float *hs, const uint8_t *codes, const void *x, void *gx,
                 double *gk, int64_t T, int64_t N, int64_t c_begin, int64_t c_end, float k, float vth, float vr,
                 float sg_a, float sg_b, int64_t stream) {
    lif_bwd_body(gs, gv, hs, codes, x, gx, gk, T, N, c_begin, c_end, k, vth, vr, sg_a, sg_b, (int)stream, K_BF, K_SUR, K_SAVE,
                 K_HAS_GV, K_LEARN, K_HARD, K_DETACH, K_DECAY_INPUT);
}
#endif

/* integer spike: s = round_half_even(clip(x, 0, D)) / norm (divide only when norm != 1); inside = 0 <= x <= D.
 * Chunks of CHUNK elements; with `stream` the outputs go through stage arrays and non-temporal stores as above. */
INLINE void int_fwd_body(const void *__restrict x, void *__restrict s, uint8_t *__restrict inside, int64_t n, float d,
                         float norm, int stream, const int BF, const int DIVIDE) {
    Stage st_s, st_in;
    const int64_t es = BF ? 2 : 4;
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) {
        const int64_t m = n - c0 < CHUNK ? n - c0 : CHUNK;
        void *ds = dest(s, &st_s, 0, c0, es, stream);
        uint8_t *din = (uint8_t *)dest(inside, &st_in, 0, c0, 1, stream);
#pragma GCC ivdep
        for (int64_t i = 0; i < m; i++) {
            const float xi = load(x, c0 + i, BF);
            float c = xi < 0.0f ? 0.0f : xi;
            c = c > d ? d : c;
            float q = nearbyintf(c);
            if (DIVIDE) q = q / norm;
            store(ds, i, q, BF);
            din[i] = (uint8_t)((xi >= 0.0f) & (xi <= d));
        }
        if (stream) {
            flush((char *)s + c0 * es, ds, m * es);
            flush(inside + c0, din, m);
        }
    }
    fence(stream);
}

INLINE void int_bwd_body(const void *__restrict g, const uint8_t *__restrict inside, void *__restrict gx, int64_t n,
                         float norm, int stream, const int BF, const int DIVIDE) {
    Stage st;
    const int64_t es = BF ? 2 : 4;
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) {
        const int64_t m = n - c0 < CHUNK ? n - c0 : CHUNK;
        void *dg = dest(gx, &st, 0, c0, es, stream);
#pragma GCC ivdep
        for (int64_t i = 0; i < m; i++) {
            float gi = load(g, c0 + i, BF);
            if (DIVIDE) gi = gi / norm;
            store(dg, i, inside[c0 + i] ? gi : 0.0f, BF);
        }
        if (stream) flush((char *)gx + c0 * es, dg, m * es);
    }
    fence(stream);
}

#ifdef SPK_INT /* -DSPK_INT -DK_BF= -DK_DIVIDE= */
void spk_int_fwd(const void *x, void *s, uint8_t *inside, int64_t n, float d, float norm, int64_t stream) {
    int_fwd_body(x, s, inside, n, d, norm, (int)stream, K_BF, K_DIVIDE);
}

void spk_int_bwd(const void *g, const uint8_t *inside, void *gx, int64_t n, float norm, int64_t stream) {
    int_bwd_body(g, inside, gx, n, norm, (int)stream, K_BF, K_DIVIDE);
}
#endif
