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

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

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
inline int64_t locate(const Grid& g, int64_t i, double x, double* u, const double** C,
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
inline void eval_values(const double* C, double u, int64_t Kr, double* v) {
    const int64_t K = KC > 0 ? KC : Kr;
    for (int64_t r = 0; r < K; ++r) v[r] = C[(K - 1) * K + r];
    for (int64_t p = K - 2; p >= 0; --p)
        for (int64_t r = 0; r < K; ++r) v[r] = v[r] * u + C[p * K + r];
}

// d/du of the same polynomials.
template <int KC>
inline void eval_derivs(const double* C, double u, int64_t Kr, double* d) {
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
    bool locate(const T* xq, int64_t L) {
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
    void evaluate(int64_t L, bool deriv) {
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
inline void put(const Grid& g, int64_t K, int64_t s, const T* vals, int64_t vstride, T* seg) {
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
void features_rows_uniform(const Grid& g, const T* x, const T* base, int64_t b0, int64_t b1,
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
void features_rows(const Grid& g, const T* x, const T* base, int64_t b0, int64_t b1, T* feat,
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
void gather_rows(const Grid& g, const T* gfeat, const T* der, const int32_t* spans, int64_t b0,
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

template <typename F>
void parallel_rows(int64_t batch, int64_t work_per_row, int threads, F&& fn) {
#ifdef _OPENMP
    // small problems stay on the calling thread: waking a pool costs more than they do
    if (threads > 1 && batch * work_per_row >= 32768) {
        const int64_t chunks = threads;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t c = 0; c < chunks; ++c) {
            const int64_t b0 = batch * c / chunks, b1 = batch * (c + 1) / chunks;
            fn(b0, b1);
        }
        return;
    }
#else
    (void)work_per_row;
    (void)threads;
#endif
    fn(0, batch);
}

Grid make_grid(int64_t n_in, int64_t S, int64_t P, int64_t k, int uniform, const double* t0,
               const double* inv_h, const double* knots, const double* poly) {
    return Grid{n_in, S, P, k, uniform, t0, inv_h, knots, poly};
}

}  // namespace

extern "C" {

int kanlab_native_abi(void) { return 2; }

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

#undef KANLAB_DEFINE

// Importable as a (function-less) Python module too, so setuptools can build it as an extension.
static struct PyModuleDef kanlab_native_module = {
    PyModuleDef_HEAD_INIT, "_native",
    "kanlab's native CPU kernels; loaded with ctypes by kanlab.native", -1, nullptr,
    nullptr, nullptr, nullptr, nullptr};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&kanlab_native_module); }

}  // extern "C"
