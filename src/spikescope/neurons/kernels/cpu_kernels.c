/* CPU kernels for the multi-step LIF / PLIF recurrence and the integer spike (see cpu.py for the contract).
 *
 * Every call walks the flattened [T, N] tensor in chunks of CHUNK neurons; inside a chunk the loop over T keeps the
 * membrane (forward) or dL/dV (backward) in a stack array, so each input is read once and each output written once.
 * The inner loops are plain elementwise code that the compiler vectorises. Built with -ffp-contract=off: the charge
 * is evaluated as the same sequence of float32 roundings as the torch reference, so spikes are bit-identical.
 * Every buffer is distinct (restrict): the loops vectorise without runtime alias checks.
 * bfloat16 tensors are passed as uint16_t and converted exactly (load) or rounded to nearest even (store).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define CHUNK 1024
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

/* exp(x) for the sigmoid surrogate: Cephes' expf polynomial (relative error ~1e-7), branch-free so it vectorises */
INLINE float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = fmaf(1.9875691500e-4f, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float y = fmaf(p * r, r, r + 1.0f);
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, 4);
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

/* One forward step of one neuron at offset o: returns V[t] from V[t-1] = vp. */
INLINE float fwd_step(const void *__restrict x, void *__restrict s, void *__restrict vs, float *__restrict hs,
                      uint8_t *__restrict codes, int64_t o, float vp, float k, float vth, float vr, float win,
                      const int BF, const int DECAY_INPUT, const int HARD, const int STORE_V, const int SAVE) {
    const float xt = load(x, o, BF);
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
    store(s, o, fired ? 1.0f : 0.0f, BF);
    if (STORE_V) store(vs, o, vn, BF);
    if (SAVE == SAVE_H) hs[o] = h;
    if (SAVE == SAVE_CODES) codes[o] = (uint8_t)(fired | ((fabsf(h - vth) < win) << 1));
    return vn;
}

/* Steps are taken UNROLL at a time so the membrane stays in a register for UNROLL steps between its stores to
 * the chunk's stack array (T = 4 is one trip). */
#define UNROLL 4

INLINE void lif_fwd_body(const void *__restrict x, void *__restrict s, void *__restrict vs, float *__restrict hs,
                         uint8_t *__restrict codes, int64_t T, int64_t N, int64_t c_begin, int64_t c_end, float k,
                         float vth, float vr, float win, const int BF, const int DECAY_INPUT, const int HARD,
                         const int STORE_V, const int SAVE) {
    float v[CHUNK];
#define FWD_STEP(o, vp) fwd_step(x, s, vs, hs, codes, o, vp, k, vth, vr, win, BF, DECAY_INPUT, HARD, STORE_V, SAVE)
    for (int64_t c0 = c_begin; c0 < c_end; c0 += CHUNK) {
        const int64_t n = c_end - c0 < CHUNK ? c_end - c0 : CHUNK;
        for (int64_t i = 0; i < n; i++) v[i] = vr;
        int64_t t = 0;
        for (; t + UNROLL <= T; t += UNROLL) {
            const int64_t o = t * N + c0;
#pragma GCC ivdep
            for (int64_t i = 0; i < n; i++) {
                float vp = FWD_STEP(o + i, v[i]);
                vp = FWD_STEP(o + N + i, vp);
                vp = FWD_STEP(o + 2 * N + i, vp);
                v[i] = FWD_STEP(o + 3 * N + i, vp);
            }
        }
        for (; t < T; t++) {
            const int64_t o = t * N + c0;
            for (int64_t i = 0; i < n; i++) v[i] = FWD_STEP(o + i, v[i]);
        }
    }
#undef FWD_STEP
}

/* One backward step at offset o (step t): returns dL/dH[t] * (1 - k), the dL/dV[t-1] it passes on; adds the PLIF
 * term dL/dH[t] * dH[t]/dk to *acc. dV[t]/dH[t]: hard reset 1 - S (+ (V_reset - H) sg' unless detached); soft
 * reset 1 (- V_th sg' unless detached). dL/dX = dL/dH * k with decay_input, else dL/dH. */
INLINE float bwd_step(const void *__restrict gs, const void *__restrict gv, const float *__restrict hs,
                      const uint8_t *__restrict codes, const void *__restrict x, void *__restrict gx, int64_t o,
                      int64_t N, int first, float g, float *acc, float k, float vth, float vr, float sg_a,
                      float sg_b, const int BF, const int SUR, const int SAVE, const int HAS_GV, const int LEARN,
                      const int HARD, const int DETACH, const int DECAY_INPUT) {
    float h = 0.0f, s, sg;
    if (SAVE == SAVE_H) {
        h = hs[o];
        s = h >= vth ? 1.0f : 0.0f;
        sg = surrogate(h - vth, sg_a, sg_b, SUR);
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
    store(gx, o, DECAY_INPUT ? gh * k : gh, BF);
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
                         float vth, float vr, float sg_a, float sg_b, const int BF, const int SUR, const int SAVE,
                         const int HAS_GV, const int LEARN, const int HARD, const int DETACH, const int DECAY_INPUT) {
    float gnext[CHUNK], acc[CHUNK];
    double total = 0.0;
#define BWD_STEP(o, first, g, a)                                                                                   \
    bwd_step(gs, gv, hs, codes, x, gx, o, N, first, g, a, k, vth, vr, sg_a, sg_b, BF, SUR, SAVE, HAS_GV, LEARN,    \
             HARD, DETACH, DECAY_INPUT)
    for (int64_t c0 = c_begin; c0 < c_end; c0 += CHUNK) {
        const int64_t n = c_end - c0 < CHUNK ? c_end - c0 : CHUNK;
        for (int64_t i = 0; i < n; i++) gnext[i] = 0.0f, acc[i] = 0.0f;
        int64_t t = T - 1;
        for (; t - UNROLL + 1 >= 1; t -= UNROLL) { /* steps t .. t - 3, all > 0 */
            const int64_t o = t * N + c0;
#pragma GCC ivdep
            for (int64_t i = 0; i < n; i++) {
                float a = acc[i];
                float g = BWD_STEP(o + i, 0, gnext[i], &a);
                g = BWD_STEP(o - N + i, 0, g, &a);
                g = BWD_STEP(o - 2 * N + i, 0, g, &a);
                gnext[i] = BWD_STEP(o - 3 * N + i, 0, g, &a);
                acc[i] = a;
            }
        }
        for (; t >= 0; t--) {
            const int64_t o = t * N + c0;
            for (int64_t i = 0; i < n; i++) gnext[i] = BWD_STEP(o + i, t == 0, gnext[i], &acc[i]);
        }
        if (LEARN != LEARN_NONE)
            for (int64_t i = 0; i < n; i++) total += acc[i];
    }
#undef BWD_STEP
    if (LEARN != LEARN_NONE) *gk = total;
}

#ifdef SPK_LIF_FWD /* -DSPK_LIF_FWD -DK_BF= -DK_DECAY_INPUT= -DK_HARD= -DK_STORE_V= -DK_SAVE= */
void spk_lif_fwd(const void *x, void *s, void *vs, float *hs, uint8_t *codes, int64_t T, int64_t N, int64_t c_begin,
                 int64_t c_end, float k, float vth, float vr, float win) {
    lif_fwd_body(x, s, vs, hs, codes, T, N, c_begin, c_end, k, vth, vr, win, K_BF, K_DECAY_INPUT, K_HARD, K_STORE_V, K_SAVE);
}
#endif

#ifdef SPK_LIF_BWD /* -DSPK_LIF_BWD -DK_BF= -DK_SUR= -DK_SAVE= -DK_HAS_GV= -DK_LEARN= -DK_HARD= -DK_DETACH= -DK_DECAY_INPUT= */
void spk_lif_bwd(const void *gs, const void *gv, const float *hs, const uint8_t *codes, const void *x, void *gx,
                 double *gk, int64_t T, int64_t N, int64_t c_begin, int64_t c_end, float k, float vth, float vr,
                 float sg_a, float sg_b) {
    lif_bwd_body(gs, gv, hs, codes, x, gx, gk, T, N, c_begin, c_end, k, vth, vr, sg_a, sg_b, K_BF, K_SUR, K_SAVE,
                 K_HAS_GV, K_LEARN, K_HARD, K_DETACH, K_DECAY_INPUT);
}
#endif

/* integer spike: s = round_half_even(clip(x, 0, D)) / norm (divide only when norm != 1); inside = 0 <= x <= D */
INLINE void int_fwd_body(const void *__restrict x, void *__restrict s, uint8_t *__restrict inside, int64_t n, float d, float norm, const int BF,
                         const int DIVIDE) {
    for (int64_t i = 0; i < n; i++) {
        const float xi = load(x, i, BF);
        float c = xi < 0.0f ? 0.0f : xi;
        c = c > d ? d : c;
        float q = nearbyintf(c);
        if (DIVIDE) q = q / norm;
        store(s, i, q, BF);
        inside[i] = (uint8_t)((xi >= 0.0f) & (xi <= d));
    }
}

INLINE void int_bwd_body(const void *__restrict g, const uint8_t *__restrict inside, void *__restrict gx, int64_t n, float norm, const int BF,
                         const int DIVIDE) {
    for (int64_t i = 0; i < n; i++) {
        float gi = load(g, i, BF);
        if (DIVIDE) gi = gi / norm;
        store(gx, i, inside[i] ? gi : 0.0f, BF);
    }
}

#ifdef SPK_INT /* -DSPK_INT -DK_BF= -DK_DIVIDE= */
void spk_int_fwd(const void *x, void *s, uint8_t *inside, int64_t n, float d, float norm) {
    int_fwd_body(x, s, inside, n, d, norm, K_BF, K_DIVIDE);
}

void spk_int_bwd(const void *g, const uint8_t *inside, void *gx, int64_t n, float norm) {
    int_bwd_body(g, inside, gx, n, norm, K_BF, K_DIVIDE);
}
#endif
