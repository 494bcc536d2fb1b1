// kanlab's native CPU kernels: building the fused feature matrix of a KAN layer and the
// contraction of its gradient with the B-spline derivatives.
//
// Plain C ABI on raw pointers, loaded with ctypes by kanlab/native.py: no PyTorch headers, so the
// library builds in a second and does not depend on the installed torch's C++ ABI. The tensors
// are allocated (and kept alive) by the Python caller; these functions only fill them.
//
// Layout (the same as kanlab/functional.py): input i owns columns i*W .. i*W + P of a feature
// row, W = 1 + P, P = G + k basis functions: column i*W is the base value b(x_i), column
// i*W + 1 + m is B_m(x_i). The last column (index n_in*W) is a "dummy" column whose weight row is
// zero; it is 0 here, or NaN when some input of the row is NaN (so NaN propagates through the
// matrix product as it does on the PyTorch path).
//
// On knot span s of input i (t_s <= x < t_{s+1}, s in [0, S)), with u = (x - t_s) / (t_{s+1} - t_s),
// the k+1 non-zero functions B_{s-k+r}, r = 0..k, are polynomials sum_p C[p][r] u^p. A uniform
// grid shares one table C (K x K, K = k+1) across spans and inputs; otherwise every (input, span)
// has its own table at poly[((i*S + s)*K + p)*K + r]. Tables are float64; arithmetic runs in
// float64 and results are rounded to the tensor's dtype once.
#include <Python.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

// The hot loops are compiled twice on x86-64 with GCC, for the baseline and for AVX2 + FMA
// (x86-64-v3), and the loader picks the version the CPU runs (ifunc); elsewhere once.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define KANLAB_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define KANLAB_CLONES
#endif
#define KANLAB_INLINE inline __attribute__((always_inline))

namespace {

constexpr int kMaxK = 16;  // spline orders above this take the PyTorch path

struct Grid {
    int64_t n_in, S, P, k;
    int uniform;
    const double* t0;     // uniform: first knot per input (n_in)
    const double* inv_h;  // uniform: 1/h per input (n_in); else per span (n_in, S), 0 if degenerate
    const double* knots;  // non-uniform: knots (n_in, S + 1)
    const double* poly;   // uniform: (K, K); else (n_in, S, K, K)
};

// Span of x on input i (-1 or S when outside the grid), its local coordinate, 1/h and the table.
KANLAB_INLINE int64_t locate(const Grid& g, int64_t i, double x, double* u, const double** C,
                      double* inv_h, int64_t KK) {
    if (g.uniform) {
        const double s = (x - g.t0[i]) * g.inv_h[i];
        const double f = std::floor(s);
        *u = s - f;
        *C = g.poly;
        *inv_h = g.inv_h[i];
        if (f < 0.0) return -1;
        if (f >= (double)g.S) return g.S;
        return (int64_t)f;
    }
    const double* t = g.knots + i * (g.S + 1);
    // number of knots <= x, minus one (searchsorted with right=True): a branch-free count on
    // short knot vectors, bisection on long ones
    int64_t s;
    if (g.S < 64) {
        int64_t c = 0;
        for (int64_t j = 0; j <= g.S; ++j) c += (t[j] <= x);
        s = c - 1;
    } else {
        int64_t lo = 0, hi = g.S + 1;
        while (lo < hi) {
            const int64_t mid = (lo + hi) >> 1;
            if (t[mid] <= x) lo = mid + 1; else hi = mid;
        }
        s = lo - 1;
    }
    if (s < 0) return -1;
    if (s >= g.S) return g.S;
    *inv_h = g.inv_h[i * g.S + s];
    *u = (x - t[s]) * *inv_h;
    *C = g.poly + (i * g.S + s) * KK;
    return s;
}

// The K values sum_p C[p][r] u^p (K a compile-time constant >= 1, or 0 for "runtime k + 1").
template <int KC>
KANLAB_INLINE void eval_values(const double* C, double u, int64_t Kr, double* v) {
    const int64_t K = KC > 0 ? KC : Kr;
    for (int64_t r = 0; r < K; ++r) v[r] = C[(K - 1) * K + r];
    for (int64_t p = K - 2; p >= 0; --p)
        for (int64_t r = 0; r < K; ++r) v[r] = v[r] * u + C[p * K + r];
}

// d/du of the same polynomials.
template <int KC>
KANLAB_INLINE void eval_derivs(const double* C, double u, int64_t Kr, double* d) {
    const int64_t K = KC > 0 ? KC : Kr;
    for (int64_t r = 0; r < K; ++r) d[r] = (double)(K - 1) * C[(K - 1) * K + r];
    for (int64_t p = K - 2; p >= 1; --p)
        for (int64_t r = 0; r < K; ++r) d[r] = d[r] * u + (double)p * C[p * K + r];
}

// Uniform grids, a block of rows at a time in passes over the block's (row, input) pairs, so
// the arithmetic vectorizes whatever the layer's width: span and local coordinate, the K
// polynomials (one shared table), then the stores. Arithmetic in T, as on the PyTorch path.
template <typename T, int KC>
struct UniformBlock {
    const Grid& g;
    int64_t K, rows_cap;
    std::vector<T> t0, ih, u, v, dv;  // t0, ih tiled over the block's rows; v, dv: (K, pairs)
    std::vector<int32_t> span;
    T C[kMaxK * kMaxK];

    explicit UniformBlock(const Grid& grid) : g(grid), K(KC > 0 ? KC : grid.k + 1) {
        const int64_t n = grid.n_in;
        rows_cap = n >= 256 ? 1 : 256 / n;
        const int64_t L = rows_cap * n;
        t0.resize(L);
        ih.resize(L);
        for (int64_t q = 0; q < L; ++q) {
            t0[q] = (T)grid.t0[q % n];
            ih[q] = (T)grid.inv_h[q % n];
        }
        u.resize(L);
        v.resize(K * L);
        dv.resize(K * L);
        span.resize(L);
        for (int64_t q = 0; q < K * K; ++q) C[q] = (T)grid.poly[q];
    }

    // span (-1 or S outside) and u of L consecutive pairs; true if some input is NaN
    KANLAB_INLINE bool locate(const T* xq, int64_t L) {
        const T hi = (T)g.S;
        int nan = 0;
        T* __restrict uu = u.data();
        int32_t* __restrict sp = span.data();
        const T* __restrict tt = t0.data();
        const T* __restrict hh = ih.data();
        for (int64_t q = 0; q < L; ++q) {
            const T xv = xq[q];
            nan |= (xv != xv);
            T s = (xv - tt[q]) * hh[q];
            s = s < (T)-1 ? (T)-1 : s;  // NaN stays NaN here, becomes -1 next
            s = s < hi ? s : hi;
            s = s >= (T)-1 ? s : (T)-1;
            int32_t j = (int32_t)s;  // truncation; floor below for s in [-1, 0)
            j -= ((T)j > s);
            sp[q] = j;
            uu[q] = s - (T)j;
        }
        return nan != 0;
    }

    // the K polynomials at the first L u's (row stride L in v), and with `deriv` their d/dx
    KANLAB_INLINE void evaluate(int64_t L, bool deriv) {
        const T* __restrict uu = u.data();
        for (int64_t r = 0; r < K; ++r) {
            T* __restrict vr = v.data() + r * L;
            const T top = C[(K - 1) * K + r];
            for (int64_t q = 0; q < L; ++q) vr[q] = top;
            for (int64_t p = K - 2; p >= 0; --p) {
                const T c = C[p * K + r];
                for (int64_t q = 0; q < L; ++q) vr[q] = vr[q] * uu[q] + c;
            }
        }
        if (!deriv) return;
        const T* __restrict hh = ih.data();
        for (int64_t r = 0; r < K; ++r) {
            T* __restrict dr = dv.data() + r * L;
            const T top = (T)(K - 1) * C[(K - 1) * K + r];
            for (int64_t q = 0; q < L; ++q) dr[q] = top;
            for (int64_t p = K - 2; p >= 1; --p) {
                const T c = (T)p * C[p * K + r];
                for (int64_t q = 0; q < L; ++q) dr[q] = dr[q] * uu[q] + c;
            }
            for (int64_t q = 0; q < L; ++q) dr[q] *= hh[q];
        }
    }
};

// Writes the K values of input i (span s) into its row segment; with `der`, its K derivatives
// (zero for functions that do not exist) and span.
template <typename T>
KANLAB_INLINE void put(const Grid& g, int64_t K, int64_t s, const T* vals, int64_t vstride, T* seg) {
    T* dst = seg + 1 + (s - g.k);  // column of B_{s-k}
    if (s >= g.k && s - g.k + K <= g.P) {  // interior span: all K functions exist
        for (int64_t r = 0; r < K; ++r) dst[r] = vals[r * vstride];
    } else {
        for (int64_t r = 0; r < K; ++r) {
            const int64_t m = s - g.k + r;
            if (m >= 0 && m < g.P) dst[r] = vals[r * vstride];
        }
    }
}

template <typename T, int KC>
KANLAB_CLONES void features_rows_uniform(const Grid& g, const T* x, const T* base, int64_t b0, int64_t b1,
                           T* feat, T* der, int32_t* spans) {
    UniformBlock<T, KC> st(g);
    const int64_t K = st.K, n = g.n_in, W = g.P + 1, ld = n * W + 1;
    for (int64_t c0 = b0; c0 < b1; c0 += st.rows_cap) {
        const int64_t c1 = c0 + st.rows_cap < b1 ? c0 + st.rows_cap : b1;
        const int64_t L = (c1 - c0) * n;
        const T* xq = x + c0 * n;
        const bool nan = st.locate(xq, L);
        st.evaluate(L, der != nullptr);
        std::memset(feat + c0 * ld, 0, sizeof(T) * ld * (c1 - c0));
        for (int64_t b = c0; b < c1; ++b) {
            T* row = feat + b * ld;
            const T* bb = base + b * n;
            const int64_t q0 = (b - c0) * n;
            for (int64_t i = 0; i < n; ++i) {
                row[i * W] = bb[i];
                const int64_t s = st.span[q0 + i];
                if (s >= 0 && s < g.S) put(g, K, s, st.v.data() + q0 + i, L, row + i * W);
            }
        }
        if (nan) {  // rows with a NaN input get a NaN in the dummy column
            for (int64_t b = c0; b < c1; ++b)
                for (int64_t i = 0; i < n; ++i)
                    if (x[b * n + i] != x[b * n + i]) feat[b * ld + ld - 1] = x[b * n + i];
        }
        if (der != nullptr) {
            T* dq = der + c0 * n * K;
            for (int64_t q = 0; q < L; ++q) {
                for (int64_t r = 0; r < K; ++r) dq[q * K + r] = st.dv[r * L + q];
                if (xq[q] != xq[q]) dq[q * K] = xq[q];  // NaN input: NaN gradient
            }
            std::memcpy(spans + c0 * n, st.span.data(), sizeof(int32_t) * L);
        }
    }
}

template <typename T, int KC>
KANLAB_CLONES void features_rows(const Grid& g, const T* x, const T* base, int64_t b0, int64_t b1, T* feat,
                   T* der, int32_t* spans) {
    const int64_t K = KC > 0 ? KC : g.k + 1;
    const int64_t W = g.P + 1, ld = g.n_in * W + 1, KK = K * K;
    for (int64_t b = b0; b < b1; ++b) {
        T* row = feat + b * ld;
        std::memset(row, 0, sizeof(T) * ld);
        bool nan = false;
        const T* xb = x + b * g.n_in;
        const T* bb = base + b * g.n_in;
        for (int64_t i = 0; i < g.n_in; ++i) {
            const double xv = (double)xb[i];
            row[i * W] = bb[i];
            int64_t s = -1;
            double u = 0.0, ih = 0.0;
            const double* C = g.poly;
            if (std::isnan(xv)) nan = true;
            else s = locate(g, i, xv, &u, &C, &ih, KK);
            const bool inside = s >= 0 && s < g.S;
            if (inside) {
                double v[kMaxK];
                T vt[kMaxK];
                eval_values<KC>(C, u, K, v);
                for (int64_t r = 0; r < K; ++r) vt[r] = (T)v[r];
                put(g, K, s, vt, 1, row + i * W);
            }
            if (der != nullptr) {
                T* d = der + (b * g.n_in + i) * K;
                spans[b * g.n_in + i] = (int32_t)(inside ? s : -1);
                if (inside) {
                    double dd[kMaxK];
                    eval_derivs<KC>(C, u, K, dd);
                    for (int64_t r = 0; r < K; ++r) d[r] = (T)(dd[r] * ih);
                } else {
                    for (int64_t r = 0; r < K; ++r) d[r] = 0;
                    if (std::isnan(xv)) d[0] = (T)xv;  // NaN input: NaN gradient
                }
            }
        }
        if (nan) row[ld - 1] = std::numeric_limits<T>::quiet_NaN();
    }
}

// gx[b, i] = sum_m gfeat[b, i*W + 1 + m] dB_m/dx(x[b, i]) from the derivatives and spans that
// features_rows stored; gbase[b, i] = gfeat[b, i*W] (contiguous) when requested.
template <typename T, int KC>
KANLAB_CLONES void gather_rows(const Grid& g, const T* gfeat, const T* der, const int32_t* spans, int64_t b0,
                 int64_t b1, T* gx, T* gbase) {
    const int64_t K = KC > 0 ? KC : g.k + 1;
    const int64_t n = g.n_in, W = g.P + 1, ld = n * W + 1;
    for (int64_t b = b0; b < b1; ++b) {
        const T* grow = gfeat + b * ld;
        if (gbase != nullptr)
            for (int64_t i = 0; i < n; ++i) gbase[b * n + i] = grow[i * W];
        if (gx == nullptr) continue;
        for (int64_t i = 0; i < n; ++i) {
            const int64_t s = spans[b * n + i];
            const T* d = der + (b * n + i) * K;
            T a = 0;
            if (s >= 0 && s < g.S) {
                const T* src = grow + i * W + 1 + (s - g.k);
                if (s >= g.k && s - g.k + K <= g.P) {
                    for (int64_t r = 0; r < K; ++r) a += src[r] * d[r];
                } else {
                    for (int64_t r = 0; r < K; ++r) {
                        const int64_t m = s - g.k + r;
                        if (m >= 0 && m < g.P) a += src[r] * d[r];
                    }
                }
            } else if (d[0] != d[0]) {
                a = d[0];
            }
            gx[b * n + i] = a;
        }
    }
}

// Calls fn.template operator()<KC>() with KC = k + 1 for the common orders, 0 otherwise.
template <typename F>
void dispatch_k(int64_t k, F&& fn) {
    switch (k) {
        case 1: fn(std::integral_constant<int, 2>()); break;
        case 2: fn(std::integral_constant<int, 3>()); break;
        case 3: fn(std::integral_constant<int, 4>()); break;
        case 4: fn(std::integral_constant<int, 5>()); break;
        case 5: fn(std::integral_constant<int, 6>()); break;
        default: fn(std::integral_constant<int, 0>()); break;
    }
}

// Runs fn(b0, b1, c) over `chunks` equal slices of the batch, one per OpenMP thread (the caller
// decides how many: 1 runs on the calling thread).
template <typename F>
void parallel_chunks(int64_t batch, int chunks, F&& fn) {
#ifdef _OPENMP
    if (chunks > 1) {
#pragma omp parallel for num_threads(chunks) schedule(static)
        for (int64_t c = 0; c < chunks; ++c) fn(batch * c / chunks, batch * (c + 1) / chunks, c);
        return;
    }
#endif
    (void)chunks;
    fn(0, batch, 0);
}

// fn(b0, b1) over the batch; small problems stay on the calling thread: waking a pool costs
// more than they do.
template <typename F>
void parallel_rows(int64_t batch, int64_t work_per_row, int threads, F&& fn) {
    const int chunks = threads > 1 && batch * work_per_row >= 32768 ? threads : 1;
    parallel_chunks(batch, chunks, [&](int64_t b0, int64_t b1, int64_t) { fn(b0, b1); });
}

Grid make_grid(int64_t n_in, int64_t S, int64_t P, int64_t k, int uniform, const double* t0,
               const double* inv_h, const double* knots, const double* poly) {
    return Grid{n_in, S, P, k, uniform, t0, inv_h, knots, poly};
}

}  // namespace

namespace {

// ---------------------------------------------------------------------------------------------
// The whole training objective of a KAN made of numeric layers: forward, mean squared error,
// pykan's sparsity regularizer and coefficient penalties, and the gradient of all parameters,
// in one call. Small networks spend their time in framework overhead (tens of tensor
// operations per layer and an autograd graph for every evaluation); here one evaluation is a
// few sweeps over the batch. Nothing of size batch x in x out or batch x in x (G+k) is stored:
// only each layer's input (batch x in), as autograd would keep; the backward sweep recomputes
// the spans, basis values and edge values.
//
// Math (per layer; phi the edge value, b the base function):
//   phi_bio = wb_io b(a_bi) + sum_m wc_iom B_m(a_bi),  wb = scale_base*mask, wc = scale_sp*mask*coef
//   z_bo = bias_o + sum_i phi_bio
//   var_io = batch variance (unbiased) of phi_io,  xstd_i = batch std (unbiased) of a_i
//   reg = sum over layers of  l1 * sum(A) + entropy * (E_out + E_in),  A = std(phi)/(xstd + 0.1)
//   objective = mean((z_L - y)^2) + lamb * (reg + coef penalties)
// The regularizer follows kanlab/regularize.py term by term.

struct LayerDesc {
    int64_t n, m, S, P, k, uniform, base_kind, has_bias;
    const double *t0, *inv_h, *knots, *poly;
    const void *sb, *sp, *coef, *mask, *bias;
    void *g_sb, *g_sp, *g_coef, *g_bias;
};

KANLAB_INLINE double base_value(int64_t kind, double a, double* deriv) {
    if (kind == 0) {  // silu
        const double sg = 1.0 / (1.0 + std::exp(-a));
        *deriv = sg * (1.0 + a * (1.0 - sg));
        return a * sg;
    }
    if (kind == 1) { *deriv = 1.0; return a; }
    *deriv = 0.0;
    return 0.0;
}

// CT: the compute type of the sweeps over the batch (float for float32 models, as on the
// PyTorch path, so twice the SIMD lanes); statistics, reductions and the loss are float64.
template <typename CT>
struct LayerWork {
    LayerDesc d;
    Grid g;
    std::vector<CT> W;      // (n, 1+P, m): row 0 of input i is wb_i., rows 1.. are wc_i.m
    std::vector<CT> bias;   // (m)
    std::vector<CT> beta, dbeta;  // b(a) and b'(a), column-major (n, batch)
    std::vector<double> ref, sum, sumsq, var, mean;  // per edge (n, m)
    std::vector<double> xmean, xstd;                 // per input (n)
    std::vector<double> gvar, gxstd;                 // from the regularizer
    std::vector<double> gW;                          // (n, 1+P, m)
};

// silu and its derivative over a block of float32 values, vectorizable: exp(-x) as 2^t with
// t rounded to an integer n (built in the exponent bits) and 2^(t-n), |t-n| <= 1/2, from its
// degree-7 Taylor polynomial (relative error below 1e-8, under float32 rounding).
KANLAB_INLINE void silu_block(const float* a, float* be, float* dbe, int64_t R) {
    for (int64_t r = 0; r < R; ++r) {
        const float x = a[r];
        float t = -x * 1.44269504088896341f;
        t = std::min(std::max(t, -126.0f), 126.0f);  // NaN stays NaN: the result is NaN via x
        const float fl = std::floor(t + 0.5f);
        // NaN input: n = -126 (operand order: max/min give their first argument for NaN), so the
        // conversion and the shift stay defined; the result is NaN through x
        const int32_t n = (int32_t)std::min(126.0f, std::max(-126.0f, fl));
        const float f = (t - fl) * 0.693147180559945309f;  // in [-ln2/2, ln2/2]
        float p = 1.0f / 5040.0f;
        p = p * f + 1.0f / 720.0f;
        p = p * f + 1.0f / 120.0f;
        p = p * f + 1.0f / 24.0f;
        p = p * f + 1.0f / 6.0f;
        p = p * f + 0.5f;
        p = p * f + 1.0f;
        p = p * f + 1.0f;
        const int32_t bits = (n + 127) << 23;
        float scale;
        std::memcpy(&scale, &bits, sizeof(float));
        const float e = p * scale;  // exp(-x)
        const float sg = 1.0f / (1.0f + e);
        be[r] = x * sg;
        dbe[r] = sg * (1.0f + x * (1.0f - sg));
    }
}

template <typename T>
inline double ld(const void* p, int64_t j) { return (double)static_cast<const T*>(p)[j]; }

template <typename T, typename CT>
void prepare(LayerWork<CT>& L) {
    const LayerDesc& d = L.d;
    const int64_t n = d.n, m = d.m, P = d.P, W1 = P + 1;
    L.g = make_grid(n, d.S, P, d.k, (int)d.uniform, d.t0, d.inv_h, d.knots, d.poly);
    L.W.assign(n * W1 * m, 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t o = 0; o < m; ++o) {
            const double mk = ld<T>(d.mask, i * m + o);
            L.W[(i * W1) * m + o] = (CT)(ld<T>(d.sb, i * m + o) * mk);
            const double sc = ld<T>(d.sp, i * m + o) * mk;
            for (int64_t q = 0; q < P; ++q)
                L.W[(i * W1 + 1 + q) * m + o] = (CT)(sc * ld<T>(d.coef, (i * m + o) * P + q));
        }
    L.bias.assign(m, 0.0);
    if (d.has_bias)
        for (int64_t o = 0; o < m; ++o) L.bias[o] = (CT)ld<T>(d.bias, o);
}

constexpr int64_t kRows = 256;  // rows per block: the inner loops run over a block's rows

// The dense features F (1+P, R) of input i on rows a[0..R) of a block, column-major by feature:
// F[0] = b(a) (given), F[1+m] = B_m(a); with dF, the same for d/da (dF[0] = b'(a)).
template <int KC, typename CT>
KANLAB_INLINE void block_features(const Grid& g, int64_t i, const CT* a, int64_t R, const CT* beta,
                                  const CT* dbeta, CT* F, CT* dF) {
    const int64_t P = g.P, K = KC > 0 ? KC : g.k + 1;
    std::memset(F, 0, sizeof(CT) * (P + 1) * kRows);
    std::memcpy(F, beta, sizeof(CT) * R);
    if (dF != nullptr) {
        std::memset(dF, 0, sizeof(CT) * (P + 1) * kRows);
        std::memcpy(dF, dbeta, sizeof(CT) * R);
    }
    if (g.uniform) {
        // passes over the block's rows that vectorize: span and u, the K polynomials, stores
        CT uu[kRows], vv[kMaxK * kRows], dd[kMaxK * kRows];
        int32_t sp[kRows];
        const CT t0 = (CT)g.t0[i], ih = (CT)g.inv_h[i], hi = (CT)g.S;
        for (int64_t r = 0; r < R; ++r) {
            CT sv = (a[r] - t0) * ih;
            sv = sv < (CT)-1 ? (CT)-1 : sv;  // NaN stays NaN here, becomes -1 next
            sv = sv < hi ? sv : hi;
            sv = sv >= (CT)-1 ? sv : (CT)-1;
            int32_t j = (int32_t)sv;
            j -= ((CT)j > sv);
            sp[r] = j;
            uu[r] = sv - (CT)j;
        }
        const double* C = g.poly;
        for (int64_t q = 0; q < K; ++q) {
            CT* vq = vv + q * kRows;
            const CT top = (CT)C[(K - 1) * K + q];
            for (int64_t r = 0; r < R; ++r) vq[r] = top;
            for (int64_t p = K - 2; p >= 0; --p) {
                const CT c = (CT)C[p * K + q];
                for (int64_t r = 0; r < R; ++r) vq[r] = vq[r] * uu[r] + c;
            }
            if (dF == nullptr) continue;
            CT* dq = dd + q * kRows;
            const CT dtop = (CT)((double)(K - 1) * C[(K - 1) * K + q] * g.inv_h[i]);
            for (int64_t r = 0; r < R; ++r) dq[r] = dtop;
            for (int64_t p = K - 2; p >= 1; --p) {
                const CT c = (CT)((double)p * C[p * K + q] * g.inv_h[i]);
                for (int64_t r = 0; r < R; ++r) dq[r] = dq[r] * uu[r] + c;
            }
        }
        for (int64_t r = 0; r < R; ++r) {
            const int64_t sr = sp[r];
            if (sr < 0 || sr >= g.S || a[r] != a[r]) continue;
            for (int64_t q = 0; q < K; ++q) {
                const int64_t mb = sr - g.k + q;
                if (mb < 0 || mb >= P) continue;
                F[(1 + mb) * kRows + r] = vv[q * kRows + r];
                if (dF != nullptr) dF[(1 + mb) * kRows + r] = dd[q * kRows + r];
            }
        }
        return;
    }
    double v[kMaxK] = {}, dv[kMaxK] = {};
    int32_t sp[kRows];
    const double* t = g.knots + i * (g.S + 1);
    if (g.S < 64) {  // spans by counting knots <= x, one vectorized pass per knot
        for (int64_t r = 0; r < R; ++r) sp[r] = -1;
        for (int64_t j = 0; j <= g.S; ++j) {
            const CT tj = (CT)t[j];  // knots of a CT grid: exact in CT
            for (int64_t r = 0; r < R; ++r) sp[r] += (a[r] >= tj);
        }
    } else {
        for (int64_t r = 0; r < R; ++r) {
            double u0, ih0;
            const double* C0;
            sp[r] = (int32_t)locate(g, i, (double)a[r], &u0, &C0, &ih0, K * K);
        }
    }
    // rows grouped by span (a counting sort of the block): each group shares one polynomial
    // table, so the Horner steps run over the group's rows with broadcast coefficients
    (void)v;
    (void)dv;
    const int64_t S = g.S;
    int32_t cnt_buf[258];
    std::vector<int32_t> cnt_vec;
    int32_t* cnt = cnt_buf;
    if (S + 2 > 258) { cnt_vec.assign(S + 2, 0); cnt = cnt_vec.data(); }
    else std::fill(cnt_buf, cnt_buf + S + 2, 0);
    int32_t order[kRows];
    for (int64_t r = 0; r < R; ++r) {
        const bool ok = a[r] == a[r] && sp[r] >= 0 && sp[r] < S;
        if (!ok) sp[r] = (int32_t)S;  // NaN and outside rows: the last bucket, skipped
        ++cnt[sp[r] + 1];
    }
    for (int64_t s = 1; s < S + 2; ++s) cnt[s] += cnt[s - 1];  // cnt[s] = start of bucket s
    {
        int32_t pos[258];
        std::vector<int32_t> pos_vec;
        int32_t* ps = pos;
        if (S + 2 > 258) { pos_vec.assign(cnt, cnt + S + 2); ps = pos_vec.data(); }
        else std::copy(cnt, cnt + S + 2, pos);
        for (int64_t r = 0; r < R; ++r) order[ps[sp[r]]++] = (int32_t)r;
    }
    CT uu[kRows], vq[kRows];
    for (int64_t s = 0; s < S; ++s) {
        const int64_t r0 = cnt[s], r1 = cnt[s + 1], nr = r1 - r0;
        if (nr == 0) continue;
        const double ihd = g.inv_h[i * S + s];
        const CT ih = (CT)ihd, ts = (CT)t[s];
        const double* C = g.poly + (i * S + s) * K * K;
        for (int64_t q = 0; q < nr; ++q) uu[q] = (a[order[r0 + q]] - ts) * ih;
        for (int64_t qq = 0; qq < K; ++qq) {
            const int64_t mb = s - g.k + qq;
            if (mb < 0 || mb >= P) continue;
            const CT top = (CT)C[(K - 1) * K + qq];
            for (int64_t q = 0; q < nr; ++q) vq[q] = top;
            for (int64_t p = K - 2; p >= 0; --p) {
                const CT c = (CT)C[p * K + qq];
                for (int64_t q = 0; q < nr; ++q) vq[q] = vq[q] * uu[q] + c;
            }
            CT* Fm = F + (1 + mb) * kRows;
            for (int64_t q = 0; q < nr; ++q) Fm[order[r0 + q]] = vq[q];
            if (dF == nullptr) continue;
            const CT dtop = (CT)((double)(K - 1) * C[(K - 1) * K + qq] * ihd);
            for (int64_t q = 0; q < nr; ++q) vq[q] = dtop;
            for (int64_t p = K - 2; p >= 1; --p) {
                const CT c = (CT)((double)p * C[p * K + qq] * ihd);
                for (int64_t q = 0; q < nr; ++q) vq[q] = vq[q] * uu[q] + c;
            }
            CT* dFm = dF + (1 + mb) * kRows;
            for (int64_t q = 0; q < nr; ++q) dFm[order[r0 + q]] = vq[q];
        }
    }
}

// phi (R) = sum_j W[i, j, o] F[j] for one output o.
template <typename CT>
KANLAB_INLINE void edge_block(const CT* Wi, int64_t m, int64_t o, int64_t W1, const CT* F,
                              int64_t R, CT* phi) {
    for (int64_t r = 0; r < R; ++r) phi[r] = 0;
    for (int64_t j = 0; j < W1; ++j) {
        const CT w = Wi[j * m + o];
        if (w == 0) continue;
        const CT* f = F + j * kRows;
        for (int64_t r = 0; r < R; ++r) phi[r] += w * f[r];
    }
}

// Forward of one layer over rows [b0, b1) (column-major a (n, B) -> z (m, B)); with stats,
// per-edge sums of (phi - ref) and their squares into this thread's accumulators.
template <int KC, typename CT>
KANLAB_CLONES void layer_forward(LayerWork<CT>& L, const CT* a, int64_t B, int64_t b0, int64_t b1,
                                 CT* z, double* sum, double* sumsq) {
    const int64_t n = L.d.n, m = L.d.m, W1 = L.d.P + 1;
    std::vector<CT> F(W1 * kRows), phi(kRows);
    for (int64_t o = 0; o < m; ++o)
        for (int64_t b = b0; b < b1; ++b) z[o * B + b] = L.bias[o];
    for (int64_t i = 0; i < n; ++i) {
        const CT* Wi = L.W.data() + i * W1 * m;
        for (int64_t c0 = b0; c0 < b1; c0 += kRows) {
            const int64_t R = b1 - c0 < kRows ? b1 - c0 : kRows;
            const CT* ai = a + i * B + c0;
            CT* be = L.beta.data() + i * B + c0;
            CT* dbe = L.dbeta.data() + i * B + c0;
            if (std::is_same<CT, float>::value && L.d.base_kind == 0) {
                silu_block(reinterpret_cast<const float*>(ai), reinterpret_cast<float*>(be),
                           reinterpret_cast<float*>(dbe), R);
            } else {
                for (int64_t r = 0; r < R; ++r) {
                    double db;
                    be[r] = (CT)base_value(L.d.base_kind, (double)ai[r], &db);
                    dbe[r] = (CT)db;
                }
            }
            block_features<KC, CT>(L.g, i, ai, R, be, dbe, F.data(), nullptr);
            for (int64_t o = 0; o < m; ++o) {
                edge_block(Wi, m, o, W1, F.data(), R, phi.data());
                CT* zo = z + o * B + c0;
                for (int64_t r = 0; r < R; ++r) zo[r] += phi[r];
                if (sum != nullptr) {
                    const CT rf = (CT)L.ref[i * m + o];
                    CT s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
                    for (int64_t r = 0; r < R; ++r) {
                        const CT e = phi[r] - rf;
                        s1 += e;
                        s2 += e * e;
                    }
                    sum[i * m + o] += s1;
                    sumsq[i * m + o] += s2;
                }
            }
            for (int64_t r = 0; r < R; ++r)  // NaN inputs: NaN outputs, whatever b is
                if (ai[r] != ai[r])
                    for (int64_t o = 0; o < m; ++o) z[o * B + c0 + r] = ai[r];
        }
    }
}

// Backward of one layer over rows [b0, b1): gW into this thread's accumulator and, if ga,
// the gradient of the layer's input (column-major (n, B)).
template <int KC, typename CT>
KANLAB_CLONES void layer_backward(const LayerWork<CT>& L, const CT* a, const CT* gz, int64_t B,
                                  int64_t b0, int64_t b1, bool stats, double* gW, CT* ga) {
    const int64_t n = L.d.n, m = L.d.m, W1 = L.d.P + 1;
    const double inv_b1 = B > 1 ? 1.0 / (double)(B - 1) : 0.0;
    std::vector<CT> F(W1 * kRows), dF(W1 * kRows), gphi(m * kRows), phi(kRows), gf(kRows),
        gx(kRows);
    for (int64_t i = 0; i < n; ++i) {
        const CT* Wi = L.W.data() + i * W1 * m;
        double* gWi = gW + i * W1 * m;
        for (int64_t c0 = b0; c0 < b1; c0 += kRows) {
            const int64_t R = b1 - c0 < kRows ? b1 - c0 : kRows;
            const CT* ai = a + i * B + c0;
            block_features<KC, CT>(L.g, i, ai, R, L.beta.data() + i * B + c0,
                               L.dbeta.data() + i * B + c0, F.data(),
                               ga != nullptr ? dF.data() : nullptr);
            for (int64_t o = 0; o < m; ++o) {
                CT* go = gphi.data() + o * kRows;
                const CT* gzo = gz + o * B + c0;
                if (stats && L.gvar[i * m + o] != 0.0) {
                    edge_block(Wi, m, o, W1, F.data(), R, phi.data());
                    const CT c = (CT)(L.gvar[i * m + o] * 2.0 * inv_b1), mu = (CT)L.mean[i * m + o];
                    for (int64_t r = 0; r < R; ++r) go[r] = gzo[r] + c * (phi[r] - mu);
                } else {
                    for (int64_t r = 0; r < R; ++r) go[r] = gzo[r];
                }
            }
            // gW[j, o] += F[j] . gphi[o]
            for (int64_t j = 0; j < W1; ++j) {
                const CT* f = F.data() + j * kRows;
                for (int64_t o = 0; o < m; ++o) {
                    const CT* go = gphi.data() + o * kRows;
                    CT acc = 0;
#pragma omp simd reduction(+ : acc)
                    for (int64_t r = 0; r < R; ++r) acc += f[r] * go[r];
                    gWi[j * m + o] += (double)acc;
                }
            }
            if (ga == nullptr) continue;
            // ga = sum_j dF[j] * (sum_o W[j, o] gphi[o])
            for (int64_t r = 0; r < R; ++r) gx[r] = 0;
            for (int64_t j = 0; j < W1; ++j) {
                for (int64_t r = 0; r < R; ++r) gf[r] = 0;
                for (int64_t o = 0; o < m; ++o) {
                    const CT w = Wi[j * m + o];
                    if (w == 0) continue;
                    const CT* go = gphi.data() + o * kRows;
                    for (int64_t r = 0; r < R; ++r) gf[r] += w * go[r];
                }
                const CT* df = dF.data() + j * kRows;
                for (int64_t r = 0; r < R; ++r) gx[r] += gf[r] * df[r];
            }
            CT* gai = ga + i * B + c0;
            const CT cs = (CT)((stats && L.xstd[i] > 0.0) ? L.gxstd[i] * inv_b1 / L.xstd[i] : 0.0);
            const CT mu = (CT)(stats ? L.xmean[i] : 0.0);
            for (int64_t r = 0; r < R; ++r)
                gai[r] = ai[r] != ai[r] ? ai[r] : gx[r] + cs * (ai[r] - mu);
        }
    }
}


// pykan's sparsity term of one layer (kanlab/regularize.py), and its gradient wrt var and xstd.
template <typename CT>
double sparsity_layer(LayerWork<CT>& L, double l1, double ent, bool normalized, double tiny,
                      double scale) {
    const int64_t n = L.d.n, m = L.d.m;
    const double eps = 1e-4, ln2 = std::log(2.0);
    std::vector<double> sd(n * m), A(n * m), cout_(m, 1.0), cin_(n, 1.0);
    for (int64_t i = 0; i < n; ++i) {
        const double d = L.xstd[i] + 0.1;
        for (int64_t o = 0; o < m; ++o) {
            const double v = L.var[i * m + o];
            sd[i * m + o] = v > tiny ? std::sqrt(v) : 0.0;
            A[i * m + o] = normalized ? sd[i * m + o] / d : sd[i * m + o];
            cout_[o] += A[i * m + o];
            cin_[i] += A[i * m + o];
        }
    }
    double total = 0.0, h_out = 0.0, h_in = 0.0;
    std::vector<double> dp(n * m), dq(n * m), sdp(m, 0.0), sdq(n, 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t o = 0; o < m; ++o) {
            const double a = A[i * m + o], p = a / cout_[o], q = a / cin_[i];
            total += a;
            h_out += p * std::log2(p + eps);
            h_in += q * std::log2(q + eps);
            dp[i * m + o] = std::log2(p + eps) + p / ((p + eps) * ln2);
            dq[i * m + o] = std::log2(q + eps) + q / ((q + eps) * ln2);
            sdp[o] += dp[i * m + o] * p;
            sdq[i] += dq[i * m + o] * q;
        }
    const double value = l1 * total + ent * (-h_out / (double)m - h_in / (double)n);
    L.gvar.assign(n * m, 0.0);
    L.gxstd.assign(n, 0.0);
    for (int64_t i = 0; i < n; ++i) {
        const double d = L.xstd[i] + 0.1;
        double gx = 0.0;
        for (int64_t o = 0; o < m; ++o) {
            const double d_out = -(dp[i * m + o] - sdp[o]) / (cout_[o] * (double)m);
            const double d_in = -(dq[i * m + o] - sdq[i]) / (cin_[i] * (double)n);
            const double ga = scale * (l1 + ent * (d_out + d_in));
            double gs = ga;
            if (normalized) {
                gs = ga / d;
                gx -= ga * sd[i * m + o] / (d * d);
            }
            if (sd[i * m + o] > 0.0) L.gvar[i * m + o] = gs * 0.5 / sd[i * m + o];
        }
        L.gxstd[i] = normalized ? gx : 0.0;
    }
    return value;
}

template <typename T, typename CT = T>
int kan_objective(int64_t n_layers, const int64_t* meta, const void* const* ptrs, const T* x,
                  const T* y, int64_t batch, const double* hyper, double* out, T* pred,
                  int want_grad, int threads) {
    const double lamb = hyper[0], l1 = hyper[1], ent = hyper[2], lcoef = hyper[3],
                 lcdiff = hyper[4];
    const bool normalized = hyper[5] != 0.0;
    const bool stats = want_grad >= 0 && lamb > 0.0 && (l1 != 0.0 || ent != 0.0);
    const double tiny = (double)std::numeric_limits<T>::epsilon() *
                        (double)std::numeric_limits<T>::epsilon();
    const int64_t B = batch;
    if (threads < 1) threads = 1;
    std::vector<LayerWork<CT>> Ls(n_layers);
    for (int64_t l = 0; l < n_layers; ++l) {
        const int64_t* mt = meta + 8 * l;
        const void* const* pp = ptrs + 13 * l;
        LayerDesc& d = Ls[l].d;
        d = LayerDesc{mt[0], mt[1], mt[2], mt[3], mt[4], mt[5], mt[6], mt[7],
                      (const double*)pp[0], (const double*)pp[1], (const double*)pp[2],
                      (const double*)pp[3], pp[4], pp[5], pp[6], pp[7], pp[8],
                      const_cast<void*>(pp[9]), const_cast<void*>(pp[10]),
                      const_cast<void*>(pp[11]), const_cast<void*>(pp[12])};
        if (d.k < 1 || d.k >= kMaxK || (l > 0 && d.n != Ls[l - 1].d.m)) return 1;
        prepare<T, CT>(Ls[l]);
        Ls[l].beta.resize(d.n * B);
        Ls[l].dbeta.resize(d.n * B);
    }
    // activations, column-major: acts[l] is layer l's input (n_l, B); acts[L] the output
    std::vector<std::vector<CT>> acts(n_layers + 1);
    const int64_t n0 = Ls[0].d.n;
    acts[0].resize(n0 * B);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < n0; ++i) acts[0][i * B + b] = (CT)x[b * n0 + i];
    for (int64_t l = 0; l < n_layers; ++l) {
        LayerWork<CT>& L = Ls[l];
        const int64_t n = L.d.n, m = L.d.m, W1 = L.d.P + 1;
        const CT* a = acts[l].data();
        acts[l + 1].assign(m * B, (CT)0);
        CT* z = acts[l + 1].data();
        if (stats) {
            // shift for the variance sums: the edge values of row 0 (avoids cancellation)
            L.ref.assign(n * m, 0.0);
            dispatch_k(L.d.k, [&](auto kc) {
                std::vector<CT> F(W1 * kRows);
                for (int64_t i = 0; i < n; ++i) {
                    double dbd;
                    const CT be = (CT)base_value(L.d.base_kind, (double)a[i * B], &dbd);
                    const CT dbe = (CT)dbd;
                    block_features<decltype(kc)::value, CT>(L.g, i, a + i * B, 1, &be, &dbe,
                                                            F.data(), nullptr);
                    for (int64_t o = 0; o < m; ++o) {
                        CT phi;
                        edge_block(L.W.data() + i * W1 * m, m, o, W1, F.data(), 1, &phi);
                        L.ref[i * m + o] = phi == phi ? phi : 0.0;
                    }
                }
            });
        }
        const int64_t nt = threads > 1 && B >= 256 * threads ? threads : 1;  // 1000 rows: 1.5x on 2
        std::vector<double> sums(stats ? 2 * nt * n * m : 0, 0.0);
        parallel_chunks(B, (int)nt, [&](int64_t b0, int64_t b1, int64_t c) {
            double* su = stats ? sums.data() + 2 * c * n * m : nullptr;
            dispatch_k(L.d.k, [&](auto kc) {
                layer_forward<decltype(kc)::value, CT>(L, a, B, b0, b1, z, su,
                                                   su ? su + n * m : nullptr);
            });
        });
        if (stats) {
            L.sum.assign(n * m, 0.0);
            L.sumsq.assign(n * m, 0.0);
            for (int64_t c = 0; c < nt; ++c)
                for (int64_t q = 0; q < n * m; ++q) {
                    L.sum[q] += sums[2 * c * n * m + q];
                    L.sumsq[q] += sums[(2 * c + 1) * n * m + q];
                }
            L.var.assign(n * m, 0.0);
            L.mean.assign(n * m, 0.0);
            for (int64_t q = 0; q < n * m; ++q) {
                const double mu = L.sum[q] / (double)B;
                L.mean[q] = L.ref[q] + mu;
                const double v = B > 1 ? (L.sumsq[q] - L.sum[q] * mu) / (double)(B - 1) : 0.0;
                L.var[q] = v > 0.0 ? v : 0.0;
            }
            L.xmean.assign(n, 0.0);
            L.xstd.assign(n, 0.0);
            for (int64_t i = 0; i < n; ++i) {
                const CT* ai = a + i * B;
                double mu = 0.0;
                for (int64_t b = 0; b < B; ++b) mu += ai[b];
                mu /= (double)B;
                double ss = 0.0;
                for (int64_t b = 0; b < B; ++b) ss += (ai[b] - mu) * (ai[b] - mu);
                L.xmean[i] = mu;
                L.xstd[i] = B > 1 ? std::sqrt(ss / (double)(B - 1)) : 0.0;
            }
        }
    }
    const int64_t m_out = Ls[n_layers - 1].d.m;
    const CT* zL = acts[n_layers].data();  // (m_out, B)
    if (pred != nullptr)
        for (int64_t b = 0; b < B; ++b)
            for (int64_t o = 0; o < m_out; ++o) pred[b * m_out + o] = (T)zL[o * B + b];
    double mse = 0.0;
    if (y != nullptr) {
        for (int64_t b = 0; b < B; ++b)
            for (int64_t o = 0; o < m_out; ++o) {
                const double e = (double)zL[o * B + b] - (double)y[b * m_out + o];
                mse += e * e;
            }
        mse /= (double)(B * m_out);
    }
    double reg = 0.0;
    if (stats)
        for (int64_t l = 0; l < n_layers; ++l)
            reg += sparsity_layer(Ls[l], l1, ent, normalized, tiny, lamb);
    if (lamb > 0.0 && (lcoef != 0.0 || lcdiff != 0.0)) {
        for (int64_t l = 0; l < n_layers; ++l) {
            const LayerDesc& d = Ls[l].d;
            const int64_t n = d.n, m = d.m, P = d.P;
            for (int64_t i = 0; i < n; ++i)
                for (int64_t o = 0; o < m; ++o)
                    for (int64_t q = 0; q < P; ++q) {
                        const double c = ld<T>(d.coef, (i * m + o) * P + q);
                        reg += lcoef * std::fabs(c) / (double)m;
                        if (q + 1 < P)
                            reg += lcdiff * std::fabs(ld<T>(d.coef, (i * m + o) * P + q + 1) - c) /
                                   (double)m;
                    }
        }
    }
    out[0] = mse + lamb * reg;
    out[1] = mse;
    out[2] = reg;
    if (want_grad <= 0) return 0;
    if (y == nullptr) return 2;
    // backward; gz column-major (m, B)
    std::vector<CT> gz(m_out * B);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t o = 0; o < m_out; ++o)
            gz[o * B + b] = (CT)(2.0 * ((double)zL[o * B + b] - (double)y[b * m_out + o]) /
                                 (double)(B * m_out));
    for (int64_t l = n_layers - 1; l >= 0; --l) {
        LayerWork<CT>& L = Ls[l];
        const int64_t n = L.d.n, m = L.d.m, P = L.d.P, W1 = P + 1;
        std::vector<CT> ga(l > 0 ? n * B : 0);
        const int64_t nt = threads > 1 && B >= 256 * threads ? threads : 1;
        std::vector<double> acc(nt * n * W1 * m, 0.0);
        const CT* a = acts[l].data();
        parallel_chunks(B, (int)nt, [&](int64_t b0, int64_t b1, int64_t c) {
            dispatch_k(L.d.k, [&](auto kc) {
                layer_backward<decltype(kc)::value, CT>(L, a, gz.data(), B, b0, b1, stats,
                                                    acc.data() + c * n * W1 * m,
                                                    l > 0 ? ga.data() : nullptr);
            });
        });
        L.gW.assign(n * W1 * m, 0.0);
        for (int64_t c = 0; c < nt; ++c)
            for (int64_t q = 0; q < n * W1 * m; ++q) L.gW[q] += acc[c * n * W1 * m + q];
        // chain to the parameters
        const LayerDesc& d = L.d;
        for (int64_t i = 0; i < n; ++i)
            for (int64_t o = 0; o < m; ++o) {
                const double mk = ld<T>(d.mask, i * m + o);
                if (d.g_sb) static_cast<T*>(d.g_sb)[i * m + o] = (T)(L.gW[(i * W1) * m + o] * mk);
                double gsp = 0.0;
                const double spm = ld<T>(d.sp, i * m + o) * mk;
                for (int64_t q = 0; q < P; ++q) {
                    const double gw = L.gW[(i * W1 + 1 + q) * m + o];
                    const double c = ld<T>(d.coef, (i * m + o) * P + q);
                    gsp += gw * c;
                    if (d.g_coef) {
                        double gc = gw * spm;
                        if (lamb > 0.0 && lcoef != 0.0)
                            gc += lamb * lcoef * (double)((c > 0) - (c < 0)) / (double)m;
                        if (lamb > 0.0 && lcdiff != 0.0) {
                            if (q + 1 < P) {
                                const double df = ld<T>(d.coef, (i * m + o) * P + q + 1) - c;
                                gc -= lamb * lcdiff * (double)((df > 0) - (df < 0)) / (double)m;
                            }
                            if (q > 0) {
                                const double df = c - ld<T>(d.coef, (i * m + o) * P + q - 1);
                                gc += lamb * lcdiff * (double)((df > 0) - (df < 0)) / (double)m;
                            }
                        }
                        static_cast<T*>(d.g_coef)[(i * m + o) * P + q] = (T)gc;
                    }
                }
                if (d.g_sp) static_cast<T*>(d.g_sp)[i * m + o] = (T)(gsp * mk);
            }
        if (d.has_bias && d.g_bias) {
            for (int64_t o = 0; o < m; ++o) {
                double gb = 0.0;
                for (int64_t b = 0; b < B; ++b) gb += (double)gz[o * B + b];
                static_cast<T*>(d.g_bias)[o] = (T)gb;
            }
        }
        if (l > 0) gz.swap(ga);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// One L-BFGS step (kanlab/optim.py, LBFGS.step, line for line) whose objective is the native KAN
// objective above: no Python between evaluations. Parameters and gradients are the optimizer's
// flat buffers (the descriptor's pointers are views into them). History in float64.

struct ObjectiveCall {
    int64_t n_layers;
    const int64_t* meta;
    const void* const* ptrs;
    const void* x;
    const void* y;
    int64_t batch;
    const double* hyper;
    double* out;
    int threads;
};

inline double cubic_min(double t1, double f1, double g1, double t2, double f2, double g2,
                        double lo, double hi) {
    const double d1 = t1 != t2 ? g1 + g2 - 3.0 * (f1 - f2) / (t1 - t2)
                               : std::numeric_limits<double>::quiet_NaN();
    const double disc = d1 * d1 - g1 * g2;
    if (std::isfinite(disc) && disc >= 0.0) {
        const double d2 = std::sqrt(disc);
        double t;
        if (t1 <= t2) t = t2 - (t2 - t1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2));
        else t = t1 - (t1 - t2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2));
        if (std::isfinite(t)) return std::min(std::max(t, lo), hi);
    }
    return 0.5 * (lo + hi);
}

template <typename T>
struct LbfgsRun {
    const ObjectiveCall& oc;
    int64_t n;
    T *flat, *grad;
    const T* scale;  // diagonal preconditioner (null: none); the run is on flat / scale
    int64_t* func_evals;

    double evaluate() {  // objective at flat; gradient into grad
        for (int64_t q = 0; q < n; ++q) grad[q] = 0;
        const int rc = kan_objective<T>(oc.n_layers, oc.meta, oc.ptrs, (const T*)oc.x,
                                        (const T*)oc.y, oc.batch, oc.hyper, oc.out, nullptr, 1,
                                        oc.threads);
        ++*func_evals;
        return rc == 0 ? oc.out[0] : std::numeric_limits<double>::quiet_NaN();
    }
    double dot(const T* a, const T* b) const {
        double s = 0.0;
        for (int64_t q = 0; q < n; ++q) s += (double)a[q] * (double)b[q];
        return s;
    }
    double absmax(const T* a) const {
        double m = 0.0;
        for (int64_t q = 0; q < n; ++q) m = std::max(m, std::fabs((double)a[q]));
        return m;
    }
    // the gradient in the run's coordinates (flat / scale): scale * grad
    void load_grad(T* g) const {
        for (int64_t q = 0; q < n; ++q) g[q] = scale ? grad[q] * scale[q] : grad[q];
    }
    // flat = x0 + t d in the run's coordinates
    void move(const T* x0, const T* d, double t) {
        for (int64_t q = 0; q < n; ++q)
            flat[q] = (T)((double)x0[q] + t * (double)d[q] * (scale ? (double)scale[q] : 1.0));
    }
    // flat = x0 + t d; evaluate; g = gradient
    double phi(const T* x0, const T* d, double t, std::vector<T>& g, double* gtd) {
        move(x0, d, t);
        const double f = evaluate();
        load_grad(g.data());
        *gtd = dot(g.data(), d);
        return f;
    }
    // strong Wolfe line search (optim.py _strong_wolfe): returns f, sets g, t, evaluations
    double strong_wolfe(const T* x0, const T* d, double& t, double f0, const std::vector<T>& g0,
                        double gtd0, std::vector<T>& g_out, int64_t& nev) {
        const double c1 = 1e-4, c2 = 0.9, tol = 1e-9;
        const int64_t max_ls = 25;
        const double d_norm = absmax(d);
        std::vector<T> g(n), g_prev(g0), g_lo(n);
        double gtd;
        double f = phi(x0, d, t, g, &gtd);
        nev = 1;
        double t_prev = 0.0, f_prev = f0, gtd_prev = gtd0;
        bool bracketed = false;
        double t_lo = 0, f_lo = 0, gtd_lo = 0, t_hi = 0, f_hi = 0, gtd_hi = 0;
        while (nev <= max_ls) {
            if (!std::isfinite(f) || f > f0 + c1 * t * gtd0 || (nev > 2 && f >= f_prev)) {
                t_lo = t_prev; f_lo = f_prev; g_lo = g_prev; gtd_lo = gtd_prev;
                t_hi = t; f_hi = f; gtd_hi = gtd;
                bracketed = true;
                break;
            }
            if (std::fabs(gtd) <= -c2 * gtd0) { g_out = g; return f; }
            if (gtd >= 0) {
                t_lo = t; f_lo = f; g_lo = g; gtd_lo = gtd;
                t_hi = t_prev; f_hi = f_prev; gtd_hi = gtd_prev;
                bracketed = true;
                break;
            }
            const double lo = t + 0.01 * (t - t_prev), hi = t * 10.0;
            const double t_next = cubic_min(t_prev, f_prev, gtd_prev, t, f, gtd, lo, hi);
            t_prev = t; f_prev = f; g_prev = g; gtd_prev = gtd;
            t = t_next;
            f = phi(x0, d, t, g, &gtd);
            ++nev;
        }
        if (!bracketed) { g_out = g; return f; }
        bool insufficient = false;
        while (nev <= max_ls) {
            if (std::fabs(t_hi - t_lo) * d_norm < tol) break;
            const double a = std::min(t_lo, t_hi), b = std::max(t_lo, t_hi);
            if (std::isfinite(f_hi) && std::isfinite(gtd_hi))
                t = cubic_min(t_lo, f_lo, gtd_lo, t_hi, f_hi, gtd_hi, a, b);
            else
                t = 0.5 * (a + b);
            const double eps = 0.1 * (b - a);
            if (std::min(b - t, t - a) < eps) {
                if (insufficient || t >= b || t <= a) {
                    t = std::fabs(t - b) < std::fabs(t - a) ? b - eps : a + eps;
                    insufficient = false;
                } else {
                    insufficient = true;
                }
            } else {
                insufficient = false;
            }
            f = phi(x0, d, t, g, &gtd);
            ++nev;
            if (!std::isfinite(f) || f > f0 + c1 * t * gtd0 || f >= f_lo) {
                t_hi = t; f_hi = f; gtd_hi = gtd;
            } else {
                if (std::fabs(gtd) <= -c2 * gtd0) { g_out = g; return f; }
                if (gtd * (t_hi - t_lo) >= 0) { t_hi = t_lo; f_hi = f_lo; gtd_hi = gtd_lo; }
                t_lo = t; f_lo = f; g_lo = g; gtd_lo = gtd;
            }
        }
        if (t_lo == 0.0) { t = 0.0; g_out = g0; return f0; }
        t = t_lo;
        g_out = g_lo;
        return f_lo;
    }
};

// istate: n_iter, history count, history start (ring), history size H, max_iter, max_eval,
// func_evals. dstate: t, lr, tolerance_grad, tolerance_change, tolerance_ys; first loss (out).
// S, Y: (H, n) float64 rings; d, prev_grad: (n) in T; scale: (n) preconditioner or null.
// Returns evaluations, or -1.
template <typename T>
int64_t lbfgs_step(const ObjectiveCall& oc, int64_t n, T* flat, T* grad, const T* scale, T* d,
                   T* prev_grad, double* S, double* Y, int64_t* is, double* ds) {
    int64_t& n_iter = is[0];
    int64_t& count = is[1];
    int64_t& start = is[2];
    const int64_t H = is[3], max_iter = is[4], max_eval = is[5];
    double& t = ds[0];
    const double lr = ds[1], tol_grad = ds[2], tol_change = ds[3], tol_ys = ds[4];
    LbfgsRun<T> run{oc, n, flat, grad, scale, &is[6]};
    int64_t evals = 0;
    double loss = run.evaluate();
    ++evals;
    ds[5] = loss;
    std::vector<T> g(n), x0(n);
    run.load_grad(g.data());
    if (!std::isfinite(loss) || run.absmax(g.data()) <= tol_grad) return evals;
    std::vector<double> q(n), alpha(H), rho(H), snew(n), ynew(n);
    for (int64_t it = 0; it < max_iter; ++it) {
        ++n_iter;
        if (n_iter == 1) {
            for (int64_t k = 0; k < n; ++k) d[k] = -g[k];
        } else {
            // curvature pair from the last step
            double ys = 0.0;
            for (int64_t k = 0; k < n; ++k) {
                ynew[k] = (double)g[k] - (double)prev_grad[k];
                snew[k] = (double)d[k] * t;
                ys += ynew[k] * snew[k];
            }
            if (ys > tol_ys) {  // keep the pair, dropping the oldest when full
                const int64_t slot = count < H ? (start + count) % H : start;
                std::copy(snew.begin(), snew.end(), S + slot * n);
                std::copy(ynew.begin(), ynew.end(), Y + slot * n);
                if (count < H) ++count;
                else start = (start + 1) % H;
            }
            if (count == 0) {
                for (int64_t k = 0; k < n; ++k) d[k] = -g[k];
            } else {  // two-loop recursion
                for (int64_t k = 0; k < n; ++k) q[k] = (double)g[k];
                for (int64_t j = count - 1; j >= 0; --j) {
                    const double* s = S + ((start + j) % H) * n;
                    const double* y = Y + ((start + j) % H) * n;
                    double yy = 0.0, sq = 0.0;
                    for (int64_t k = 0; k < n; ++k) { yy += y[k] * s[k]; sq += s[k] * q[k]; }
                    rho[j] = 1.0 / yy;
                    alpha[j] = rho[j] * sq;
                    for (int64_t k = 0; k < n; ++k) q[k] -= alpha[j] * y[k];
                }
                const double* sl = S + ((start + count - 1) % H) * n;
                const double* yl = Y + ((start + count - 1) % H) * n;
                double sy = 0.0, yy = 0.0;
                for (int64_t k = 0; k < n; ++k) { sy += yl[k] * sl[k]; yy += yl[k] * yl[k]; }
                const double gamma = sy / yy;
                for (int64_t k = 0; k < n; ++k) q[k] *= gamma;
                for (int64_t j = 0; j < count; ++j) {
                    const double* s = S + ((start + j) % H) * n;
                    const double* y = Y + ((start + j) % H) * n;
                    double yr = 0.0;
                    for (int64_t k = 0; k < n; ++k) yr += y[k] * q[k];
                    const double beta = rho[j] * yr;
                    for (int64_t k = 0; k < n; ++k) q[k] += (alpha[j] - beta) * s[k];
                }
                for (int64_t k = 0; k < n; ++k) d[k] = (T)(-q[k]);
            }
        }
        std::copy(g.begin(), g.end(), prev_grad);
        const double prev_loss = loss;
        if (n_iter == 1) {
            double sa = 0.0;
            for (int64_t k = 0; k < n; ++k) sa += std::fabs((double)g[k]);
            t = std::min(1.0, 1.0 / sa) * lr;
        } else {
            t = lr;
        }
        const double gtd = run.dot(g.data(), d);
        if (gtd > -tol_change) break;
        std::copy(flat, flat + n, x0.begin());
        int64_t nev = 0;
        std::vector<T> g_new(n);
        loss = run.strong_wolfe(x0.data(), d, t, loss, g, gtd, g_new, nev);
        run.move(x0.data(), d, t);
        g.swap(g_new);
        evals += nev;
        if (!std::isfinite(loss)) break;
        if (it == max_iter - 1 || evals >= max_eval) break;
        if (run.absmax(g.data()) <= tol_grad) break;
        if (run.absmax(d) * std::fabs(t) <= tol_change) break;
        if (std::fabs(loss - prev_loss) < tol_change) break;
    }
    return evals;
}

}  // namespace

extern "C" {

int kanlab_native_abi(void) { return 6; }

int kanlab_max_k(void) { return kMaxK - 1; }

#define KANLAB_DEFINE(SUFFIX, T)                                                                 \
    void kanlab_features_##SUFFIX(const T* x, const T* base, int64_t batch, int64_t n_in,       \
                                  int64_t S, int64_t P, int64_t k, int uniform,                  \
                                  const double* t0, const double* inv_h, const double* knots,    \
                                  const double* poly, T* feat, T* der, int32_t* spans,           \
                                  int threads) {                                                 \
        const Grid g = make_grid(n_in, S, P, k, uniform, t0, inv_h, knots, poly);                \
        dispatch_k(k, [&](auto kc) {                                                             \
            parallel_rows(batch, n_in * (P + k + 2), threads, [&](int64_t b0, int64_t b1) {      \
                if (uniform)                                                                     \
                    features_rows_uniform<T, decltype(kc)::value>(g, x, base, b0, b1, feat, der, \
                                                                  spans);                        \
                else                                                                             \
                    features_rows<T, decltype(kc)::value>(g, x, base, b0, b1, feat, der, spans); \
            });                                                                                  \
        });                                                                                      \
    }                                                                                            \
    void kanlab_gather_##SUFFIX(const T* gfeat, const T* der, const int32_t* spans,             \
                                int64_t batch, int64_t n_in, int64_t S, int64_t P, int64_t k,    \
                                T* gx, T* gbase, int threads) {                                  \
        const Grid g = make_grid(n_in, S, P, k, 1, nullptr, nullptr, nullptr, nullptr);          \
        dispatch_k(k, [&](auto kc) {                                                             \
            parallel_rows(batch, n_in * (k + 2), threads, [&](int64_t b0, int64_t b1) {          \
                gather_rows<T, decltype(kc)::value>(g, gfeat, der, spans, b0, b1, gx, gbase);    \
            });                                                                                  \
        });                                                                                      \
    }

KANLAB_DEFINE(f32, float)
KANLAB_DEFINE(f64, double)

// L-BFGS search direction d = -H g by the two-loop recursion (Nocedal & Wright, alg. 7.4) over
// the `count` curvature pairs S[j], Y[j] (oldest first), H0 = (s.y)/(y.y) of the newest pair.
void kanlab_lbfgs_direction(int64_t n, int64_t count, const double* const* S,
                            const double* const* Y, const double* g, double* d) {
    std::vector<double> alpha(count), rho(count);
    for (int64_t q = 0; q < n; ++q) d[q] = g[q];
    for (int64_t j = count - 1; j >= 0; --j) {
        const double *s = S[j], *y = Y[j];
        double ys = 0.0, sq = 0.0;
        for (int64_t q = 0; q < n; ++q) {
            ys += y[q] * s[q];
            sq += s[q] * d[q];
        }
        rho[j] = 1.0 / ys;
        alpha[j] = rho[j] * sq;
        for (int64_t q = 0; q < n; ++q) d[q] -= alpha[j] * y[q];
    }
    if (count > 0) {
        const double *s = S[count - 1], *y = Y[count - 1];
        double ys = 0.0, yy = 0.0;
        for (int64_t q = 0; q < n; ++q) {
            ys += y[q] * s[q];
            yy += y[q] * y[q];
        }
        const double gamma = ys / yy;
        for (int64_t q = 0; q < n; ++q) d[q] *= gamma;
    }
    for (int64_t j = 0; j < count; ++j) {
        const double *s = S[j], *y = Y[j];
        double yr = 0.0;
        for (int64_t q = 0; q < n; ++q) yr += y[q] * d[q];
        const double beta = rho[j] * yr;
        for (int64_t q = 0; q < n; ++q) d[q] += (alpha[j] - beta) * s[q];
    }
    for (int64_t q = 0; q < n; ++q) d[q] = -d[q];
}

// meta: 8 int64 per layer (in, out, S, P, k, uniform, base kind 0 silu / 1 identity / 2 zero,
// has bias); ptrs: 13 per layer (t0, inv_h, knots, poly; scale_base, scale_sp, coef, mask, bias;
// their gradients, each may be null); hyper: lamb, lamb_l1, lamb_entropy, lamb_coef,
// lamb_coefdiff, normalized. out: objective, mse, regularizer (without lamb). want_grad: 1
// gradients, 0 values only, -1 outputs only (no regularizer statistics). Returns 0 on success.
// The whole-step L-BFGS (see lbfgs_step) takes the objective's arguments plus the optimizer's
// buffers: flat parameters and gradients (n, T), the preconditioner (n, T, or null), direction
// and previous gradient (n, T), the float64 history rings S, Y (H, n), and the integer and
// float state documented at lbfgs_step.
#define KANLAB_DEFINE_FIT(SUFFIX, T)                                                             \
    int kanlab_kan_objective_##SUFFIX(int64_t n_layers, const int64_t* meta,                    \
                                      const void* const* ptrs, const T* x, const T* y,          \
                                      int64_t batch, const double* hyper, double* out, T* pred, \
                                      int want_grad, int threads) {                             \
        return kan_objective<T>(n_layers, meta, ptrs, x, y, batch, hyper, out, pred,           \
                                want_grad, threads);                                            \
    }                                                                                           \
    int64_t kanlab_lbfgs_step_##SUFFIX(int64_t n_layers, const int64_t* meta,                   \
                                       const void* const* ptrs, const void* x, const void* y,   \
                                       int64_t batch, const double* hyper, double* out,         \
                                       int threads, int64_t n, T* flat, T* grad,                \
                                       const T* scale, T* d, T* prev_grad, double* S,           \
                                       double* Y, int64_t* is, double* ds) {                    \
        const ObjectiveCall oc{n_layers, meta, ptrs, x, y, batch, hyper, out, threads};        \
        return lbfgs_step<T>(oc, n, flat, grad, scale, d, prev_grad, S, Y, is, ds);             \
    }

KANLAB_DEFINE_FIT(f32, float)
KANLAB_DEFINE_FIT(f64, double)

#undef KANLAB_DEFINE_FIT

#undef KANLAB_DEFINE

// Importable as a (function-less) Python module too, so setuptools can build it as an extension.
static struct PyModuleDef kanlab_native_module = {
    PyModuleDef_HEAD_INIT, "_native",
    "kanlab's native CPU kernels; loaded with ctypes by kanlab.native", -1, nullptr,
    nullptr, nullptr, nullptr, nullptr};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&kanlab_native_module); }

}  // extern "C"
