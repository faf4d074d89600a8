/* CPU kernels for the multi-step LIF / PLIF recurrence and the integer spike (see cpu.py for the contract).
 *
 * Every call walks the flattened [T, N] tensor in chunks of CHUNK neurons; inside a chunk the loop over T keeps the
 * membrane (forward) or dL/dV (backward) in a stack array, so each input is read once and each output written once.
 * The inner loops are plain elementwise code that the compiler vectorises; the smooth surrogates' exp and reciprocal
 * are written with AVX-512 or AVX2 intrinsics (scalar code elsewhere). The forward is built with -ffp-contract=off:
 * the charge is evaluated as the same sequence of float32 roundings as the torch reference, so spikes are
 * bit-identical. The backward (gradients within 1e-6, not bit-identical) is built with FMA contraction.
 * Every buffer is distinct (restrict): the loops vectorise without runtime alias checks.
 * bfloat16 tensors are passed as uint16_t and converted exactly (load) or rounded to nearest even (store).
 */
#include <math.h>
#ifdef __AVX__
#include <immintrin.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Neurons per chunk (measured, docs/neurons.md: 512 made the benchmark layer's fwd+bwd 1.2-1.3x slower on an AVX-512
 * Xeon, 64 slower again) */
#define CHUNK 128
/* Steps are taken UNROLL at a time so the membrane stays in a register for UNROLL steps between its stores to
 * the chunk's stack array (T = 4 is one trip). */
#define UNROLL 4
/* A call of more than SPAN steps runs in passes of SPAN steps over all its neurons, the membrane (forward) or dL/dV
 * (backward) of each neuron carried from one pass to the next in a heap array: one chunk then walks at most SPAN rows
 * of each tensor. Measured (docs/neurons.md): without passes a step at T = 64 took 1.7-1.9x as long as at T = 16. */
#define SPAN 16
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

/* One vector of float lanes for the smooth surrogates: 16 lanes with AVX-512, else 8 with AVX2 and FMA (else the
 * scalar code above serves). Only what exp_v, recip_v and surrogate_block use is named here. */
#if defined(__AVX512F__)
#define VEC 16
typedef __m512 vfloat;
#define v_set1 _mm512_set1_ps
#define v_load _mm512_loadu_ps
#define v_store _mm512_storeu_ps
#define v_add _mm512_add_ps
#define v_sub _mm512_sub_ps
#define v_mul _mm512_mul_ps
#define v_min _mm512_min_ps
#define v_max _mm512_max_ps
#define v_fmadd _mm512_fmadd_ps
#define v_fnmadd _mm512_fnmadd_ps
#define v_rcp _mm512_rcp14_ps /* relative error < 2^-14 */
#define v_pow2(b) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_castps_si512(b), \
                                                                        _mm512_set1_epi32(127)), 23))
#elif defined(__AVX2__) && defined(__FMA__)
#define VEC 8
typedef __m256 vfloat;
#define v_set1 _mm256_set1_ps
#define v_load _mm256_loadu_ps
#define v_store _mm256_storeu_ps
#define v_add _mm256_add_ps
#define v_sub _mm256_sub_ps
#define v_mul _mm256_mul_ps
#define v_min _mm256_min_ps
#define v_max _mm256_max_ps
#define v_fmadd _mm256_fmadd_ps
#define v_fnmadd _mm256_fnmadd_ps
#define v_rcp _mm256_rcp_ps /* relative error < 1.5 * 2^-12 */
#define v_pow2(b) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(b), \
                                                                        _mm256_set1_epi32(127)), 23))
#endif

#ifdef VEC
/* exp(x) on VEC lanes, ~2e-7 relative error: the same polynomial as exp_poly, as one Horner chain, the reduction
 * x - n ln 2 as one FMA (exact product; ln 2's float rounding costs < 6e-8 for the |x| < 20 where a sigmoid's
 * derivative is not negligible). v_pow2 turns the bits of n + 1.5 * 2^23 into 2^n as exp_poly does. max/min take
 * the constant first so that a NaN lane stays NaN. */
INLINE vfloat exp_v(vfloat x) {
    x = v_min(v_set1(88.0f), v_max(v_set1(-87.0f), x));
    const vfloat shifted = v_fmadd(x, v_set1(1.44269504088896341f), v_set1(12582912.0f));
    const vfloat n = v_sub(shifted, v_set1(12582912.0f));
    const vfloat r = v_fnmadd(n, v_set1(0.693147180559945f), x);
    vfloat y = v_fmadd(v_set1(1.9875691500e-4f), r, v_set1(1.3981999507e-3f));
    y = v_fmadd(y, r, v_set1(8.3334519073e-3f));
    y = v_fmadd(y, r, v_set1(4.1665795894e-2f));
    y = v_fmadd(y, r, v_set1(1.6666665459e-1f));
    y = v_fmadd(y, r, v_set1(5.0000001201e-1f));
    y = v_fmadd(y, r, v_set1(1.0f));
    y = v_fmadd(y, r, v_set1(1.0f));
    return v_mul(y, v_pow2(shifted));
}

/* 1 / d for d >= 1: the hardware estimate and one Newton step (< 2e-7), where a divide would stall. d * r must not
 * be inf * 0: d is finite here or the caller caps it. */
INLINE vfloat recip_v(vfloat d) {
    const vfloat r = v_rcp(d);
    return v_fmadd(r, v_fnmadd(d, r, v_set1(1.0f)), r);
}
#endif

/* out[i] = sg'(h[i] - V_th) for the n neurons of a chunk: computed before the backward recurrence, as a plain
 * elementwise loop (VEC lanes at a time for the smooth surrogates, whose exp and divide dominate) */
INLINE void surrogate_block(const float *__restrict h, float *__restrict out, int64_t n, float vth, float a, float b,
                            const int SUR) {
    int64_t i = 0;
#ifdef VEC
    if (SUR == SUR_ATAN) { /* a / (1 + (b u)^2), 1 + z^2 capped at 1e30 (beyond, the value is below 1e-30 anyway) */
        const vfloat vthv = v_set1(vth), av = v_set1(a), bv = v_set1(b);
        for (; i + VEC <= n; i += VEC) {
            const vfloat z = v_mul(bv, v_sub(v_load(h + i), vthv));
            const vfloat d = v_min(v_set1(1e30f), v_fmadd(z, z, v_set1(1.0f)));
            v_store(out + i, v_mul(av, recip_v(d)));
        }
    }
    if (SUR == SUR_SIGMOID) { /* a (s - s^2), s = 1 / (1 + exp(-b u)); exp(-b u) <= exp(88), so 1 + it is finite */
        const vfloat nb = v_set1(-b), bvth = v_set1(b * vth), av = v_set1(a);
        for (; i + VEC <= n; i += VEC) {
            const vfloat e = exp_v(v_fmadd(v_load(h + i), nb, bvth));
            const vfloat sg = recip_v(v_add(v_set1(1.0f), e));
            v_store(out + i, v_mul(av, v_fnmadd(sg, sg, sg)));
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

/* The chunk's stage array of one output: UNROLL steps of CHUNK elements of up to 4 bytes, the rows packed (CHUNK
 * elements of size es each). */
typedef float Stage[UNROLL][CHUNK];

/* Where step u of a trip writes output `out` (offset o of its step in the tensor, element size es). */
INLINE void *dest(void *out, Stage *stage, int u, int64_t o, int64_t es, int stream) {
    return stream ? (void *)((char *)*stage + u * CHUNK * es) : (void *)((char *)out + o * es);
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
    float *carry = T > SPAN ? (float *)malloc((c_end - c_begin) * sizeof(float)) : NULL; /* V between passes */
    const int64_t span = carry ? SPAN : T; /* no memory for it: one pass */
#define FWD_STEP(u, o, vp) \
    fwd_step(ds[u], dv[u], dh[u], dc[u], i, load(x, o, BF), vp, k, vth, vr, win, BF, DECAY_INPUT, HARD, STORE_V, SAVE)
    for (int64_t t0 = 0; t0 < T; t0 += span) {
        const int64_t t1 = t0 + span < T ? t0 + span : T; /* this pass: steps t0 .. t1 - 1 */
        for (int64_t c0 = c_begin; c0 < c_end; c0 += CHUNK) {
            const int64_t n = c_end - c0 < CHUNK ? c_end - c0 : CHUNK;
            for (int64_t i = 0; i < n; i++) v[i] = t0 == 0 ? vr : carry[c0 - c_begin + i];
            for (int64_t t = t0; t < t1;) {
                const int steps = t + UNROLL <= t1 ? UNROLL : 1;
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
            if (t1 < T) memcpy(carry + (c0 - c_begin), v, n * sizeof(float));
        }
    }
    free(carry);
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
    float *carry = T > SPAN ? (float *)malloc((c_end - c_begin) * sizeof(float)) : NULL; /* dL/dV between passes */
    const int64_t span = carry ? SPAN : T;
#define BWD_STEP(u, o, first, g, a) \
    bwd_step(gs, gv, hs, codes, x, dg[u], sgs[u][i], i, o, N, first, g, a, k, vth, vr, sg_a, BF, SAVE, HAS_GV, \
             LEARN, HARD, DETACH, DECAY_INPUT)
    for (int64_t t1 = T; t1 > 0; t1 -= span) {
        const int64_t t0 = t1 - span > 0 ? t1 - span : 0; /* this pass: steps t1 - 1 down to t0 */
        const int64_t low = t0 > 1 ? t0 : 1;               /* a trip of UNROLL steps never includes step 0 */
        for (int64_t c0 = c_begin; c0 < c_end; c0 += CHUNK) {
            const int64_t n = c_end - c0 < CHUNK ? c_end - c0 : CHUNK;
            for (int64_t i = 0; i < n; i++) gnext[i] = t1 == T ? 0.0f : carry[c0 - c_begin + i], acc[i] = 0.0f;
            for (int64_t t = t1 - 1; t >= t0;) {
                const int steps = t - UNROLL + 1 >= low ? UNROLL : 1;
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
            if (t0 > 0) memcpy(carry + (c0 - c_begin), gnext, n * sizeof(float));
            if (LEARN != LEARN_NONE)
                for (int64_t i = 0; i < n; i++) total += acc[i];
        }
    }
    free(carry);
    fence(stream);
#undef BWD_STEP
    if (LEARN != LEARN_NONE) *gk = total;
}

#ifdef SPK_LIF_FWD /* -DSPK_LIF_FWD -DK_BF= -DK_DECAY_INPUT= -DK_HARD= -DK_STORE_V= -DK_SAVE= */
void spk_lif_fwd(const void *x, void *s, void *vs, float *hs, uint8_t *codes, int64_t T, int64_t N, int64_t c_begin,
                 int64_t c_end, float k, float vth, float vr, float win, int64_t stream) {
    lif_fwd_body(x, s, vs, hs, codes, T, N, c_begin, c_end, k, vth, vr, win, (int)stream, K_BF, K_DECAY_INPUT, K_HARD,
                 K_STORE_V, K_SAVE);
}
#endif

#ifdef SPK_LIF_BWD /* -DSPK_LIF_BWD -DK_BF= -DK_SUR= -DK_SAVE= -DK_HAS_GV= -DK_LEARN= -DK_HARD= -DK_DETACH= -DK_DECAY_INPUT= */
void spk_lif_bwd(const void *gs, const void *gv, const float *hs, const uint8_t *codes, const void *x, void *gx,
                 double *gk, int64_t T, int64_t N, int64_t c_begin, int64_t c_end, float k, float vth, float vr,
                 float sg_a, float sg_b, int64_t stream) {
    lif_bwd_body(gs, gv, hs, codes, x, gx, gk, T, N, c_begin, c_end, k, vth, vr, sg_a, sg_b, (int)stream, K_BF, K_SUR,
                 K_SAVE, K_HAS_GV, K_LEARN, K_HARD, K_DETACH, K_DECAY_INPUT);
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
