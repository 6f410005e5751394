// The kernel choice of the ViT layers' three hot operations (src/ops/kernels.ts) and the fused CPU kernels it picks
// from. One entry each, used by src/layers as the official Python uses F.linear, F.scaled_dot_product_attention and
// `x + ls(y)`; the entry picks fused CPU, flash CUDA or the plain ATen composition (see "kernel choice" below):
//   linear(x, weight, bias?, activation?) → act(x·weightᵀ + bias)
//   attention(qkv [B, N, 3D], numHeads, sin?, cos? [P, d], scale?) → [B, N, D]
//   residualAdd(x, y, gamma?) → x + gamma ⊙ y
// The fused CPU kernels record no autograd history: they run only with grad mode off, on float32 CPU tensors.
//   AttentionQkv: multi-head self-attention straight from the fused qkv projection: per (image, head) the q/k rows
//     are read from `qkv` (prefetched: they are 3D floats apart) into small buffers with RoPE applied to the last P
//     tokens (x·cos + rot(x)·sin, rot = [−x₂, x₁], rounded as the composition) and q scaled, S = q·kᵀ, softmax over
//     rows, and S·v (v read in place) is written into the head's columns of the [B, N, D] output. No [B, h, N, d]
//     copies, no [B, h, N, N] temporaries (S stays in cache), one parallel loop over B·h (ParallelFor).
//   Linear: one SGEMM into a bias-filled output; with GELU, the exact (erf) GELU applied in place.
//   ResidualAdd: x + gamma ⊙ y in one pass (addcmul).
//
// SGEMM: oneDNN's dnnl_sgemm when the process has it (Debian's libtorch links libdnnl; ~5% faster than OpenBLAS on
// these shapes), else the Fortran BLAS sgemm_ (OpenBLAS), else at::mm. DINOV3_GEMM=blas|aten forces the latter two
// (A/B comparisons). fc2-like shapes run as one SGEMM call per thread on its block of rows (see Gemm). OpenMP: see
// ParallelFor.
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "common.h"

// The Fortran BLAS of the process (OpenBLAS with Debian's libtorch). Weak: absent when libtorch bundles its BLAS
// with hidden symbols; GemmRowMajor then uses at::mm.
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc) __attribute__((weak));

// oneDNN's row-major SGEMM (libdnnl.so.2, a dependency of Debian's libtorch). Weak: PyTorch's libtorch links oneDNN
// statically with hidden symbols; the BLAS above or ATen is used then.
extern "C" int dnnl_sgemm(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc)
    __attribute__((weak));

// libgomp's entry points (the OpenMP runtime of Debian's and PyTorch's libtorch; Intel's libiomp5 exports them
// too). Weak: without them ParallelFor runs serially.
extern "C" void GOMP_parallel(void (*fn)(void*), void* data, unsigned numThreads, unsigned flags) __attribute__((weak));
extern "C" int omp_get_thread_num(void) __attribute__((weak));
extern "C" int omp_get_num_threads(void) __attribute__((weak));
extern "C" int omp_in_parallel(void) __attribute__((weak));

namespace dinov3 {

namespace {

// at::parallel_for is a header template whose `#pragma omp parallel` is compiled into the caller, and the addon is
// built without -fopenmp, so in this file it would run serially. ParallelFor splits [0, n) into one contiguous chunk
// per thread of the OpenMP team that ATen uses (at::get_num_threads() threads), through GOMP_parallel, the call
// `#pragma omp parallel` compiles to. Inside the region OpenBLAS and ATen ops run single-threaded. `fn(begin, end)`
// must not throw across the runtime: the first exception is caught and rethrown on the calling thread.
template <typename F>
void ParallelFor(int64_t n, const F& fn) {
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), n);
  if (threads <= 1 || !GOMP_parallel || !omp_get_thread_num || !omp_get_num_threads ||
      (omp_in_parallel && omp_in_parallel())) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  struct Job {
    const F* fn;
    int64_t n;
    std::atomic_flag failed = ATOMIC_FLAG_INIT;
    std::exception_ptr error;
  } job{&fn, n};
  GOMP_parallel(
      [](void* p) {
        Job& j = *static_cast<Job*>(p);
        const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
        const int64_t chunk = (j.n + nt - 1) / nt, begin = tid * chunk, end = std::min(j.n, begin + chunk);
        if (begin >= end) return;
        try {
          (*j.fn)(begin, end);
        } catch (...) {
          if (!j.failed.test_and_set()) j.error = std::current_exception();
        }
      },
      &job, static_cast<unsigned>(threads), 0);
  if (job.error) std::rethrow_exception(job.error);
}

// 0: oneDNN, 1: BLAS, 2: ATen (DINOV3_GEMM, read once).
const int kGemmBackend = [] {
  const char* v = std::getenv("DINOV3_GEMM");
  return v && std::string(v) == "blas" ? 1 : v && std::string(v) == "aten" ? 2 : 0;
}();

// Row-major C[m, n] = alpha · op(A) · op(B) + beta · C, with op(A) = A [m, k] or Aᵀ (A stored [k, m]) and op(B) =
// B [k, n] or Bᵀ (B stored [n, k]), in one call of the first back end that takes it. Inside a parallel region
// (omp_in_parallel) oneDNN and OpenBLAS run single-threaded.
void GemmCall(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
              const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  // oneDNN checks its arguments before it writes, so a refused call leaves C as it was for the next back end.
  if (dnnl_sgemm && kGemmBackend == 0 &&
      dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 0)
    return;
  if (sgemm_ && kGemmBackend <= 1) {
    // Row-major C = op(A)·op(B)  ⇔  column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
    const char tb = transB ? 'T' : 'N', ta = transA ? 'T' : 'N';
    const int M = static_cast<int>(n), N = static_cast<int>(m), K = static_cast<int>(k);
    const int LDB = static_cast<int>(ldb), LDA = static_cast<int>(lda), LDC = static_cast<int>(ldc);
    sgemm_(&tb, &ta, &M, &N, &K, &alpha, b, &LDB, a, &LDA, &beta, c, &LDC);
    return;
  }
  auto opts = at::TensorOptions().dtype(at::kFloat);
  at::Tensor A = transA ? at::from_blob(const_cast<float*>(a), {k, m}, {lda, 1}, opts).t()
                        : at::from_blob(const_cast<float*>(a), {m, k}, {lda, 1}, opts);
  at::Tensor B = transB ? at::from_blob(const_cast<float*>(b), {n, k}, {ldb, 1}, opts).t()
                        : at::from_blob(const_cast<float*>(b), {k, n}, {ldb, 1}, opts);
  at::Tensor C = at::from_blob(c, {m, n}, {ldc, 1}, opts);
  if (beta == 0.f)
    C.copy_(at::mm(A, B).mul_(alpha));
  else
    C.mul_(beta).add_(at::mm(A, B), alpha);
}

// GemmCall, with one exception. For C = A·Bᵀ with k >= 4n and n <= 512 (the MLP's second projection of ViT-S and
// smaller: n = D, k = 4D) oneDNN threads a single call poorly: on 2 Zen 4 cores it reaches 182 GFLOP/s at ViT-S/16
// batch 8 (1608×384×1536) where each thread multiplying its own block of rows in a single-threaded call reaches 213.
// There Gemm splits the rows. The sweep in bench/native/gemm_backends.cc (bench/results/kernels-cpu-2core-quiet.json,
// 400 to 6,400 rows) found the split 4-41% faster for k >= 4n with n = 192 or 384 and neutral (±2%) for n = 96. For
// k = 2n it ranged from -5% to +8%; elsewhere from -9% to +20%.
void Gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  constexpr int64_t kRowBlock = 16, kMinRowsPerThread = 64;
  const int64_t threads = at::get_num_threads();
  const bool split = dnnl_sgemm && kGemmBackend == 0 && !transA && transB && k >= 4 * n && n <= 512 && threads > 1 &&
                     m >= kMinRowsPerThread * threads && !(omp_in_parallel && omp_in_parallel());
  if (!split) return GemmCall(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  ParallelFor((m + kRowBlock - 1) / kRowBlock, [&](int64_t first, int64_t last) {
    const int64_t r0 = first * kRowBlock, r1 = std::min(m, last * kRowBlock);
    GemmCall(false, true, r1 - r0, n, k, alpha, a + r0 * lda, lda, b, ldb, beta, c + r0 * ldc, ldc);
  });
}

void GemmRowMajor(bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  Gemm(false, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// ---- softmax rows: max, exp(x − max) and the sum, scale by 1/sum ----
// exp by range reduction x = n·ln2 + r, |r| ≤ ln2/2, and Cephes' degree-6 polynomial (≈ 1 ulp); 0 below −87.
constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f, kP3 = 4.1665795894e-2f,
                kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
constexpr float kRound = 12582912.f;  // 1.5·2²³: adding it rounds to an integer

inline float ExpScalar(float x) {
  if (x < -87.f) return 0.f;
  float t = x * kLog2e + kRound;
  float n = t - kRound;
  float r = x - n * kLn2Hi - n * kLn2Lo;
  float p = ((((kP0 * r + kP1) * r + kP2) * r + kP3) * r + kP4) * r + kP5;
  p = p * r * r + r + 1.f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float s;
  std::memcpy(&s, &bits, 4);
  return p * s;
}

void SoftmaxRowScalar(float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  float sum = 0.f;
  for (int64_t i = 0; i < n; ++i) sum += (x[i] = ExpScalar(x[i] - m));
  float inv = 1.f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DINOV3_FUSED_AVX2 1
typedef float V8f __attribute__((vector_size(32)));
typedef int32_t V8i __attribute__((vector_size(32)));

// What this CPU runs, read once: the AVX2 kernels below are picked from it.
const bool kAvx2 = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));
const bool kAvx2Fma = kAvx2 && __builtin_cpu_supports("fma");

// e^v in 8 lanes, the same polynomial as ExpScalar; 0 below −87 (where 2ⁿ leaves float range).
__attribute__((target("avx2,fma"), always_inline)) inline V8f ExpAvx2(V8f v) {
  V8f t = v * kLog2e + kRound;
  V8f nf = t - kRound;
  V8f r = v - nf * kLn2Hi - nf * kLn2Lo;
  V8f p = ((((kP0 * r + kP1) * r + kP2) * r + kP3) * r + kP4) * r + kP5;
  p = p * r * r + r + 1.f;
  V8i bits = (__builtin_convertvector(nf, V8i) + 127) << 23;
  V8f pow2;
  std::memcpy(&pow2, &bits, 32);
  V8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
  return v < -87.f ? zero : p * pow2;
}

__attribute__((target("avx2,fma"))) void SoftmaxRowAvx2(float* x, int64_t n) {
  const int64_t nv = n / 8 * 8;
  float m = -std::numeric_limits<float>::infinity();
  if (nv > 0) {
    V8f vm;
    std::memcpy(&vm, x, 32);
    for (int64_t i = 8; i < nv; i += 8) {
      V8f v;
      std::memcpy(&v, x + i, 32);
      vm = vm > v ? vm : v;
    }
    for (int j = 0; j < 8; ++j) m = vm[j] > m ? vm[j] : m;
  }
  for (int64_t i = nv; i < n; ++i) m = x[i] > m ? x[i] : m;
  V8f vsum = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < nv; i += 8) {
    V8f v;
    std::memcpy(&v, x + i, 32);
    V8f e = ExpAvx2(v - m);
    std::memcpy(x + i, &e, 32);
    vsum += e;
  }
  float sum = 0.f;
  for (int j = 0; j < 8; ++j) sum += vsum[j];
  for (int64_t i = nv; i < n; ++i) sum += (x[i] = ExpScalar(x[i] - m));
  const float inv = 1.f / sum;
  for (int64_t i = 0; i < nv; i += 8) {
    V8f v;
    std::memcpy(&v, x + i, 32);
    v *= inv;
    std::memcpy(x + i, &v, 32);
  }
  for (int64_t i = nv; i < n; ++i) x[i] *= inv;
}
#endif

#ifdef DINOV3_FUSED_AVX2
// 1 + erf(x/√2) in 8 lanes, for the exact (erf) GELU and its derivative: 1 + erf(z) = 2 − q for z ≥ 0 and q for z < 0,
// where q = erfc(|z|) = t·P(t)·e^(−z²), t = 1/(1 + p|z|) (Abramowitz–Stegun 7.1.26, |error| ≤ 1.5e-7: the formula of
// ATen's own AVX2 erf; taking erfc directly keeps the negative tail accurate). e^(−z²) = e^(−x²/2) (the softmax exp)
// is handed back in `e`.
__attribute__((target("avx2,fma"), always_inline)) inline V8f OnePlusErfAvx2(V8f v, V8f& e) {
  V8f z = v * 0.70710678118654752f;
  V8f az = z < 0.f ? -z : z;
  V8f t = 1.f / (1.f + 0.3275911f * az);
  V8f poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
  e = ExpAvx2(-az * az);
  V8f q = poly * e;
  return z < 0.f ? q : 2.f - q;
}

// Exact (erf) GELU in place, 8 lanes: gelu(x) = x/2 · (1 + erf(x/√2)).
__attribute__((target("avx2,fma"))) void GeluAvx2(float* x, int64_t n) {
  const int64_t nv = n / 8 * 8;
  for (int64_t i = 0; i < nv; i += 8) {
    V8f v, e;
    std::memcpy(&v, x + i, 32);
    V8f out = 0.5f * v * OnePlusErfAvx2(v, e);
    std::memcpy(x + i, &out, 32);
  }
  for (int64_t i = nv; i < n; ++i) x[i] = 0.5f * x[i] * std::erfc(-x[i] * 0.70710678118654752f);
}

// The exact GELU's backward, 8 lanes: g · (Φ(x) + x·φ(x)) with Φ(x) = (1 + erf(x/√2))/2 and φ(x) = e^(−x²/2)/√(2π)
// (ATen's GeluBackward formula for approximate="none").
__attribute__((target("avx2,fma"))) void GeluBackwardAvx2(const float* g, const float* x, float* out, int64_t n) {
  constexpr float kBeta = 0.39894228040143267794f;  // 1/√(2π)
  const int64_t nv = n / 8 * 8;
  for (int64_t i = 0; i < nv; i += 8) {
    V8f v, gv, e;
    std::memcpy(&v, x + i, 32);
    std::memcpy(&gv, g + i, 32);
    V8f onePlusErf = OnePlusErfAvx2(v, e);
    V8f r = gv * (0.5f * onePlusErf + v * (kBeta * e));
    std::memcpy(out + i, &r, 32);
  }
  for (int64_t i = nv; i < n; ++i) {
    const float v = x[i];
    out[i] = g[i] * (0.5f * std::erfc(-v * 0.70710678118654752f) + v * kBeta * std::exp(-0.5f * v * v));
  }
}
#endif

// GELU in place on a contiguous float32 CPU tensor, split over the OpenMP team; other tensors: at::gelu_.
void GeluInplace(at::Tensor& y) {
#ifdef DINOV3_FUSED_AVX2
  if (kAvx2Fma && y.is_cpu() && y.scalar_type() == at::kFloat && y.is_contiguous()) {
    float* d = y.data_ptr<float>();
    const int64_t n = y.numel(), chunk = 4096;
    ParallelFor((n + chunk - 1) / chunk, [&](int64_t b, int64_t e) { GeluAvx2(d + b * chunk, std::min(n, e * chunk) - b * chunk); });
    return;
  }
#endif
  at::gelu_(y);
}

using SoftmaxRowFn = void (*)(float*, int64_t);
SoftmaxRowFn PickSoftmaxRow() {
#ifdef DINOV3_FUSED_AVX2
  if (kAvx2Fma) return SoftmaxRowAvx2;
#endif
  return SoftmaxRowScalar;
}
const SoftmaxRowFn kSoftmaxRow = PickSoftmaxRow();

// q/k rows of one head → contiguous [N, d] buffers, RoPE on the last P rows (tables [P, d]), q scaled by `scale`.
// Same operations and rounding as the composition (no FMA): (x·cos + (−x₂)·sin)·scale, scale = 1 for k.
__attribute__((always_inline)) inline void GatherRopeImpl(const float* __restrict src, int64_t rowStride, int64_t n,
                                                          int64_t d, int64_t prefix, const float* __restrict sin,
                                                          const float* __restrict cos, float scale,
                                                          float* __restrict dst) {
  const int64_t half = d / 2;
  constexpr int64_t kAhead = 6;  // rows are rowStride apart (other pages): prefetch a few rows ahead
  for (int64_t i = 0; i < n; ++i) {
    const float* __restrict x = src + i * rowStride;
    float* __restrict y = dst + i * d;
    if (i + kAhead < n)
      for (int64_t j = 0; j < d; j += 16) __builtin_prefetch(x + kAhead * rowStride + j);
    if (!sin || i < prefix) {
      for (int64_t j = 0; j < d; ++j) y[j] = x[j] * scale;
      continue;
    }
    const float* __restrict s = sin + (i - prefix) * d;
    const float* __restrict c = cos + (i - prefix) * d;
    for (int64_t j = 0; j < half; ++j) y[j] = (x[j] * c[j] + -x[j + half] * s[j]) * scale;
    for (int64_t j = 0; j < half; ++j) y[half + j] = (x[half + j] * c[half + j] + x[j] * s[half + j]) * scale;
  }
}

void GatherRopeDefault(const float* src, int64_t rowStride, int64_t n, int64_t d, int64_t prefix, const float* sin,
                       const float* cos, float scale, float* dst) {
  GatherRopeImpl(src, rowStride, n, d, prefix, sin, cos, scale, dst);
}

using GatherRopeFn = void (*)(const float*, int64_t, int64_t, int64_t, int64_t, const float*, const float*, float,
                              float*);
#ifdef DINOV3_FUSED_AVX2
// 8-wide; "avx2" without "fma", so products and sums are rounded as in the composition.
__attribute__((target("avx2"))) void GatherRopeAvx2(const float* src, int64_t rowStride, int64_t n, int64_t d,
                                                    int64_t prefix, const float* sin, const float* cos, float scale,
                                                    float* dst) {
  GatherRopeImpl(src, rowStride, n, d, prefix, sin, cos, scale, dst);
}
#endif

GatherRopeFn PickGatherRope() {
#ifdef DINOV3_FUSED_AVX2
  if (kAvx2) return GatherRopeAvx2;
#endif
  return GatherRopeDefault;
}
const GatherRopeFn GatherRope = PickGatherRope();

// Scratch of one thread for AttendHead: q, k [N, d] and the scores [N, N].
struct HeadScratch {
  std::vector<float> q, k, s;
  HeadScratch(int64_t n, int64_t d) : q(n * d), k(n * d), s(n * n) {}
};

// One head of one image: `rows` points at the head's q columns in a [N, 3D] qkv block (k at +D, v at +2D, rows
// rowStride apart); out[i, 0:d] (rows ldo apart) = softmax(scale·q·kᵀ)·v with RoPE on the last N − prefix rows.
void AttendHead(const float* rows, int64_t rowStride, int64_t D, int64_t n, int64_t d, int64_t prefix,
                const float* sin, const float* cos, float scale, HeadScratch& w, float* out, int64_t ldo) {
  GatherRope(rows, rowStride, n, d, prefix, sin, cos, scale, w.q.data());
  GatherRope(rows + D, rowStride, n, d, prefix, sin, cos, 1.f, w.k.data());
  GemmRowMajor(true, n, n, d, 1.f, w.q.data(), d, w.k.data(), d, 0.f, w.s.data(), n);  // S = q·kᵀ
  for (int64_t i = 0; i < n; ++i) kSoftmaxRow(w.s.data() + i * n, n);
  GemmRowMajor(false, n, d, n, 1.f, w.s.data(), n, rows + 2 * D, rowStride, 0.f, out, ldo);
}

// Optional float32 RoPE tables [P, d] (P <= n): contiguous copies, or undefined tensors without tables.
std::pair<at::Tensor, at::Tensor> RopeTablesArg(const Args& a, const c10::optional<at::Tensor>& sinIn,
                                                const c10::optional<at::Tensor>& cosIn, int64_t n, int64_t d) {
  if (sinIn.has_value() != cosIn.has_value()) a.valueError("sin and cos must be given together");
  if (!sinIn) return {};
  at::Tensor sinT = sinIn->contiguous(), cosT = cosIn->contiguous();
  if (sinT.dim() != 2 || sinT.sizes() != cosT.sizes() || sinT.size(1) != d || sinT.size(0) > n || !sinT.is_cpu() ||
      !cosT.is_cpu() || sinT.scalar_type() != at::kFloat || cosT.scalar_type() != at::kFloat || d % 2 != 0)
    a.valueError("expected float32 RoPE tables [P, " + std::to_string(d) + "] with P <= " + std::to_string(n) +
                 ", received sin " + Describe(sinT) + " and cos " + Describe(cosT));
  return {sinT, cosT};
}

at::Tensor AttentionQkv(const Args& a, const at::Tensor& qkvIn, int64_t heads, const c10::optional<at::Tensor>& sinIn,
                        const c10::optional<at::Tensor>& cosIn, double scaleD) {
  if (qkvIn.dim() != 3 || qkvIn.size(2) % (3 * heads) != 0)
    a.valueError("expected \"qkv\" [B, N, 3·D] with D a multiple of numHeads (" + std::to_string(heads) +
                 "), received " + Describe(qkvIn));
  if (!qkvIn.is_cpu() || qkvIn.scalar_type() != at::kFloat)
    a.valueError("expected a float32 CPU \"qkv\", received " + Describe(qkvIn));
  const int64_t B = qkvIn.size(0), N = qkvIn.size(1), D = qkvIn.size(2) / 3, d = D / heads;
  auto [sinT, cosT] = RopeTablesArg(a, sinIn, cosIn, N, d);
  const int64_t P = sinT.defined() ? sinT.size(0) : 0;
  const at::Tensor qkv = qkvIn.contiguous();
  at::Tensor out = at::empty({B, N, D}, qkv.options());
  const float* base = qkv.data_ptr<float>();
  float* obase = out.data_ptr<float>();
  const float* sin = P ? sinT.data_ptr<float>() : nullptr;
  const float* cos = P ? cosT.data_ptr<float>() : nullptr;
  const int64_t prefix = N - P, rowStride = 3 * D;
  const float scale = static_cast<float>(scaleD);
  ParallelFor(B * heads, [&](int64_t begin, int64_t end) {
    HeadScratch w(N, d);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / heads, h = t % heads;
      AttendHead(base + b * N * rowStride + h * d, rowStride, D, N, d, prefix, sin, cos, scale, w,
                 obase + b * N * D + h * d, D);
    }
  });
  return out;
}

// y = x·wᵀ + b for float32 CPU tensors through GemmRowMajor (bias pre-filled, beta = 1); at::linear otherwise.
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b) {
  const bool f32 = x.is_cpu() && x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && w.is_cpu() &&
                   (!b || (b->scalar_type() == at::kFloat && b->dim() == 1 && b->is_cpu()));
  if (!f32 || kGemmBackend == 2 || x.numel() == 0) return at::linear(x, w, b);
  const at::Tensor xc = x.contiguous(), wc = w.contiguous();
  const int64_t K = x.size(-1), N = w.size(0), M = x.numel() / K;
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = N;
  // clone, not contiguous(): for M = 1 the expanded bias is contiguous already and SGEMM would write into it.
  at::Tensor y = b ? b->expand({M, N}).clone(at::MemoryFormat::Contiguous) : at::empty({M, N}, x.options());
  GemmRowMajor(true, M, N, K, 1.f, xc.data_ptr<float>(), K, wc.data_ptr<float>(), K, b ? 1.f : 0.f,
               y.data_ptr<float>(), N);
  return y.view(sizes);
}

// The SGEMM linear with autograd (float32 CPU): forward as Linear; backward dx = g·W, dW = gᵀ·x and db = Σ g through
// the same SGEMM. Under create_graph the backward runs as ATen ops so that it is itself differentiable.
struct LinearFunction : public torch::autograd::Function<LinearFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const c10::optional<at::Tensor>& b) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["bias"] = b.has_value();
    return Linear(x, w, b);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const bool hasBias = ctx->saved_data["bias"].toBool();
    const int64_t N = w.size(0), K = w.size(1), M = x.numel() / K;
    at::Tensor g = grads[0].reshape({M, N});
    at::Tensor gx, gw, gb;
    if (at::GradMode::is_enabled() || g.scalar_type() != at::kFloat) {
      if (ctx->needs_input_grad(0)) gx = at::mm(g, w).view(x.sizes());
      if (ctx->needs_input_grad(1)) gw = at::mm(g.t(), x.reshape({M, K}));
    } else {
      g = g.contiguous();
      if (ctx->needs_input_grad(0)) {
        const at::Tensor wc = w.contiguous();
        gx = at::empty({M, K}, g.options());
        if (M > 0) Gemm(false, false, M, K, N, 1.f, g.data_ptr<float>(), N, wc.data_ptr<float>(), K, 0.f, gx.data_ptr<float>(), K);
        gx = gx.view(x.sizes());
      }
      if (ctx->needs_input_grad(1)) {
        const at::Tensor xc = x.reshape({M, K}).contiguous();
        gw = M > 0 ? at::empty({N, K}, g.options()) : at::zeros({N, K}, g.options());
        if (M > 0) Gemm(true, false, N, K, M, 1.f, g.data_ptr<float>(), N, xc.data_ptr<float>(), K, 0.f, gw.data_ptr<float>(), K);
      }
    }
    if (hasBias && ctx->needs_input_grad(2)) gb = g.sum(0);
    return {gx, gw, gb};
  }
};

// nn.GELU() (exact erf form) with autograd, for the fused CPU linear's training path: the forward and the backward run
// the AVX2 kernels above over the OpenMP team (libtorch 1.13's own CPU GELU calls the scalar erff per element). Under
// create_graph, other dtypes or without AVX2 the backward is ATen's gelu_backward (differentiable).
struct GeluFunction : public torch::autograd::Function<GeluFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& y) {
    ctx->save_for_backward({y});
    at::Tensor out = y.clone(at::MemoryFormat::Contiguous);
    GeluInplace(out);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor y = ctx->get_saved_variables()[0];
    const at::Tensor& g = grads[0];
#ifdef DINOV3_FUSED_AVX2
    if (kAvx2Fma && !at::GradMode::is_enabled() && g.scalar_type() == at::kFloat && y.scalar_type() == at::kFloat &&
        g.is_cpu() && y.is_cpu() && y.is_contiguous() && g.sizes() == y.sizes()) {
      const at::Tensor gc = g.contiguous();
      at::Tensor out = at::empty_like(y, at::MemoryFormat::Contiguous);
      const float* gp = gc.data_ptr<float>();
      const float* yp = y.data_ptr<float>();
      float* op = out.data_ptr<float>();
      const int64_t n = y.numel(), chunk = 4096;
      ParallelFor((n + chunk - 1) / chunk, [&](int64_t b, int64_t e) {
        GeluBackwardAvx2(gp + b * chunk, yp + b * chunk, op + b * chunk, std::min(n, e * chunk) - b * chunk);
      });
      return {out};
    }
#endif
    return {at::gelu_backward(g, y)};
  }
};

// ---- kernel choice ----
// The layers call one entry per operation (linear(+GELU), attention from qkv, residual add with LayerScale) and the
// choice of kernel is made here, from the tensors, the grad mode and the policy switch:
//   fused-cpu   float32 CPU tensors: linear through the SGEMM (LinearFunction when autograd records, so training
//               gets oneDNN's AVX-512 SGEMM too); attention and residualAdd with grad mode off only (no history)
//   flash-cuda  attention on CUDA with libtorch >= 2.1: at::scaled_dot_product_attention, which picks the flash or
//               memory-efficient kernel for 16-bit inputs (the math kernel otherwise)
//   fused-cuda  residualAdd on CUDA: one addcmul (autograd-capable)
//   plain       the op-by-op ATen composition (autograd, other dtypes and devices): the reference
// setFusedKernels(false) (or DINOV3_FUSED=0 at load) forces the plain composition everywhere (tests, A/B benches).
std::atomic<bool> gFusedKernels{[] {
  const char* v = std::getenv("DINOV3_FUSED");
  return !(v && std::string(v) == "0");
}()};

enum class Kernel { kFusedCpu, kFlashCuda, kFusedCuda, kPlain };

const char* KernelName(Kernel k) {
  switch (k) {
    case Kernel::kFusedCpu:
      return "fused-cpu";
    case Kernel::kFlashCuda:
      return "flash-cuda";
    case Kernel::kFusedCuda:
      return "fused-cuda";
    default:
      return "plain";
  }
}

// Under CPU autocast the ATen ops cast to the autocast dtype: the float32 kernels must not run then.
bool CpuAutocast() {
#if DINOV3_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(at::kCPU);
#else
  return at::autocast::is_cpu_enabled();
#endif
}

bool FusedCpu(const at::Tensor& x) {
  return gFusedKernels.load(std::memory_order_relaxed) && !at::GradMode::is_enabled() && x.is_cpu() &&
         x.scalar_type() == at::kFloat && !x.is_meta() && !CpuAutocast();
}

// Linear: float32 CPU input and weight, with or without autograd (LinearFunction records it).
Kernel LinearKernel(const at::Tensor& x, const at::Tensor& w) {
  return gFusedKernels.load(std::memory_order_relaxed) && x.is_cpu() && x.scalar_type() == at::kFloat && !x.is_meta() &&
                 w.is_cpu() && w.scalar_type() == at::kFloat && !CpuAutocast()
             ? Kernel::kFusedCpu
             : Kernel::kPlain;
}

// RoPE tables (sin, cos) of the attention: float32 CPU tables are read by the fused kernel.
Kernel AttentionKernel(const at::Tensor& qkv, const at::Tensor& sin, const at::Tensor& cos) {
  if (FusedCpu(qkv) && (!sin.defined() || (sin.is_cpu() && cos.is_cpu() && sin.scalar_type() == at::kFloat &&
                                            cos.scalar_type() == at::kFloat)))
    return Kernel::kFusedCpu;
#if DINOV3_TORCH_AT_LEAST(2, 1)
  if (qkv.is_cuda()) return Kernel::kFlashCuda;
#endif
  return Kernel::kPlain;
}

// On CUDA, x + γ ⊙ y is one addcmul launch (with or without autograd: AddcmulBackward gives the same gradients as
// the mul + add pair, rounded possibly differently).
Kernel ResidualKernel(const at::Tensor& x) {
  if (FusedCpu(x)) return Kernel::kFusedCpu;
  if (x.is_cuda() && gFusedKernels.load(std::memory_order_relaxed)) return Kernel::kFusedCuda;
  return Kernel::kPlain;
}

// The shape rule of linear: weight [out, in] with `in` the input's last dim.
void CheckLinearArgs(const Args& a, const at::Tensor& x, const at::Tensor& w) {
  if (w.dim() != 2) a.valueError("expected \"weight\" to be 2-D [out, in], received " + Describe(w));
  if (x.dim() == 0 || x.size(-1) != w.size(1))
    a.valueError("input " + Describe(x) + " does not match weight " + Describe(w) + ": last dim must be " +
                 std::to_string(w.size(1)));
}

// linear(x, w, b) followed by the activation ("none" or "gelu", the exact erf form of nn.GELU).
at::Tensor LinearAct(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b, bool gelu) {
  const bool biasF32 = !b || (b->is_cpu() && b->scalar_type() == at::kFloat && b->dim() == 1);
  if (LinearKernel(x, w) == Kernel::kFusedCpu && biasF32) {
    const bool records = at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (b && b->requires_grad()));
    if (records) {
      at::Tensor y = LinearFunction::apply(x, w, b);
      return gelu ? GeluFunction::apply(y) : y;
    }
    at::Tensor y = Linear(x, w, b);
    if (gelu) GeluInplace(y);
    return y;
  }
  at::Tensor y = at::linear(x, w, b);
  if (!gelu) return y;
  // Without autograd the activation may overwrite the linear's own output.
  return at::GradMode::is_enabled() ? at::gelu(y) : at::gelu_(y);
}

// dinov3/layers/attention.py::rope_apply on the last P tokens of t [B, h, N, d] (SelfAttention.apply_rope): in the
// tables' dtype, x·cos + rotate_half(x)·sin with rotate_half(x) = [−x₂, x₁], the prefix tokens untouched, cast back.
at::Tensor RopePlain(const at::Tensor& t, const at::Tensor& sin, const at::Tensor& cos) {
  const int64_t n = t.size(2), p = sin.size(-2), prefix = n - p;
  at::Tensor tr = t.to(sin.scalar_type());
  at::Tensor x = tr.narrow(2, prefix, p);
  std::vector<at::Tensor> halves = x.chunk(2, -1);
  at::Tensor rotated = at::cat({halves[1].neg(), halves[0]}, -1);
  at::Tensor applied = x.mul(cos).add(rotated.mul(sin));
  return at::cat({tr.narrow(2, 0, prefix), applied}, 2).to(t.scalar_type());
}

// dinov3/layers/attention.py::SelfAttention.compute_attention as ATen ops: qkv [B, N, 3D] → q, k, v [B, h, N, d],
// RoPE on q and k, softmax(q·kᵀ·scale)·v, heads merged → [B, N, D]. With libtorch >= 2.1 through
// at::scaled_dot_product_attention (flash / memory-efficient kernels on CUDA: the flash-cuda choice), else written out.
at::Tensor AttentionPlain(const at::Tensor& qkv, int64_t heads, const at::Tensor& sin, const at::Tensor& cos,
                          c10::optional<double> scale) {
  const int64_t B = qkv.size(0), N = qkv.size(1), D = qkv.size(2) / 3, d = D / heads;
  std::vector<at::Tensor> parts = qkv.reshape({B, N, 3, heads, d}).unbind(2);
  at::Tensor q = parts[0].transpose(1, 2), k = parts[1].transpose(1, 2), v = parts[2].transpose(1, 2);
  if (sin.defined()) {
    q = RopePlain(q, sin, cos);
    k = RopePlain(k, sin, cos);
  }
  at::Tensor x;
#if DINOV3_TORCH_AT_LEAST(2, 1)
  // On the meta device (shapes only) libtorch 2.13's SDPA reaches an op without a meta kernel (where.self_out).
  if (!qkv.is_meta()) x = at::scaled_dot_product_attention(q, k, v, {}, 0.0, false, scale);
#endif
  if (!x.defined()) {
    x = at::matmul(q, k.transpose(-2, -1)).mul_(scale ? *scale : 1.0 / std::sqrt(double(d)));
    x = at::matmul(at::softmax(x, -1), v);
  }
  return x.transpose(1, 2).reshape({B, N, D});
}

// x + γ ⊙ y (dinov3/layers/block.py: x + ls(y), LayerScale ls(y) = y·γ), or x + y without γ.
at::Tensor ResidualAdd(const at::Tensor& x, const at::Tensor& y, const c10::optional<at::Tensor>& gamma) {
  if (!gamma) return at::add(x, y);
  if (ResidualKernel(x) != Kernel::kPlain) return at::addcmul(x, y, *gamma);  // one pass, no y·γ temporary
  return at::add(x, at::mul(y, *gamma));
}

}  // namespace

void InitFused(Napi::Env env, Napi::Object e) {
  // linear(x, weight [out, in], bias? [out], activation?: "none" | "gelu") → act(x·weightᵀ + bias).
  Def(env, e, "linear", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& w = a.t(1, "weight");
    CheckLinearArgs(a, x, w);
    const std::string act = a.has(3) ? a.str(3, "activation") : "none";
    if (act != "none" && act != "gelu") a.valueError("activation must be \"none\" or \"gelu\", received \"" + act + "\"");
    return a.ret(LinearAct(x, w, a.optT(2, "bias"), act == "gelu"));
  });
  // attention(qkv [B, N, 3D], numHeads, sin?, cos? [P, d], scale?) → [B, N, D]: multi-head self-attention from the
  // fused qkv projection with RoPE on the last P tokens (scale default 1/√d).
  Def(env, e, "attention", [](Args& a) {
    const at::Tensor& qkv = a.t(0, "qkv");
    const int64_t heads = a.i64(1, "numHeads");
    if (heads < 1) a.valueError("numHeads must be >= 1, received " + std::to_string(heads));
    if (qkv.dim() != 3 || qkv.size(2) % (3 * heads) != 0)
      a.valueError("expected \"qkv\" [B, N, 3·D] with D a multiple of numHeads (" + std::to_string(heads) +
                   "), received " + Describe(qkv));
    const int64_t N = qkv.size(1), d = qkv.size(2) / 3 / heads;
    auto sinIn = a.optT(2, "sin"), cosIn = a.optT(3, "cos");
    if (sinIn.has_value() != cosIn.has_value()) a.valueError("sin and cos must be given together");
    at::Tensor sin, cos;
    if (sinIn) {
      sin = *sinIn;
      cos = *cosIn;
      if (sin.dim() != 2 || sin.sizes() != cos.sizes() || sin.size(1) != d || d % 2 != 0)
        a.valueError("expected RoPE tables [P, " + std::to_string(d) + "], received sin " + Describe(sin) +
                     " and cos " + Describe(cos));
      if (sin.size(0) > N)
        a.valueError("RoPE tables cover " + std::to_string(sin.size(0)) + " tokens but the sequence has only " +
                     std::to_string(N));
    }
    auto scale = a.optF64(4, "scale");
    switch (AttentionKernel(qkv, sin, cos)) {
      case Kernel::kFusedCpu:
        return a.ret(AttentionQkv(a, qkv, heads, sinIn, cosIn, scale ? *scale : 1.0 / std::sqrt(double(d))));
      default:  // flash-cuda and plain: the same ATen composition (SDPA picks the CUDA kernel)
        return a.ret(AttentionPlain(qkv, heads, sin, cos, scale));
    }
  });
  // residualAdd(x, y, gamma?) = x + gamma ⊙ y (gamma broadcast over the last dim), or x + y without gamma.
  Def(env, e, "residualAdd", [](Args& a) {
    return a.ret(ResidualAdd(a.t(0, "input"), a.t(1, "other"), a.optT(2, "gamma")));
  });
  // setFusedKernels(on) → the previous setting: off forces the plain composition in linear/attention/residualAdd.
  Def(env, e, "setFusedKernels", [](Args& a) {
    const bool prev = gFusedKernels.exchange(a.b(0, "on"));
    return Napi::Value(Napi::Boolean::New(a.env(), prev));
  });
  // kernelChoice(op, x, w?) → "fused-cpu" | "flash-cuda" | "plain": what linear/attention/residualAdd would run on x
  // now (attention without RoPE tables, or with float32 CPU ones).
  Def(env, e, "kernelChoice", [](Args& a) {
    const std::string op = a.str(0, "op");
    const at::Tensor& x = a.t(1, "input");
    Kernel k;
    if (op == "linear")
      k = LinearKernel(x, a.has(2) ? a.t(2, "weight") : x);
    else if (op == "attention")
      k = AttentionKernel(x, at::Tensor(), at::Tensor());
    else if (op == "residualAdd")
      k = ResidualKernel(x);
    else
      a.valueError("op must be \"linear\", \"attention\" or \"residualAdd\", received \"" + op + "\"");
    return Napi::Value(Napi::String::New(a.env(), KernelName(k)));
  });
}

}  // namespace dinov3
