// Fused inference kernels for the ViT blocks (src/layers). They record no autograd history: the layers call them only
// with grad mode off, and fall back to the op-by-op composition otherwise.
//
//   attentionQkv(qkv [B, N, 3D], numHeads, sin?, cos? [P, d], scale) → [B, N, D]
//     Multi-head self-attention straight from the fused qkv projection: per (image, head) the q/k/v rows are read
//     in place from `qkv`, RoPE is applied to the last P tokens of q and k (x·cos + rot(x)·sin, rot = [−x₂, x₁]),
//     S = scale·q·kᵀ, softmax over rows, and S·v is written into the head's columns of the [B, N, D] output. No
//     [B, h, N, d] copies, no [B, h, N, N] temporaries (S stays in cache), one parallel loop over B·h.
//   linearGelu(x, weight, bias?) → gelu(linear(x)) with the exact (erf) GELU applied in place.
//   residualScale(x, y, gamma?) → x + gamma ⊙ y (LayerScale + residual in one pass).
#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"

// The Fortran BLAS of the process (OpenBLAS with Debian's libtorch). Weak: absent when libtorch bundles its BLAS
// with hidden symbols; the kernels then use at::mm_out on views.
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc) __attribute__((weak));

namespace dinov3 {

namespace {

// Row-major C[m, n] = alpha · A[m, k] · op(B) + beta · C, with op(B) = B [k, n] or Bᵀ (B stored [n, k]).
void GemmRowMajor(bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (sgemm_) {
    // Row-major C = A·op(B)  ⇔  column-major Cᵀ = op(B)ᵀ·Aᵀ.
    const char tb = transB ? 'T' : 'N', ta = 'N';
    const int M = static_cast<int>(n), N = static_cast<int>(m), K = static_cast<int>(k);
    const int LDB = static_cast<int>(ldb), LDA = static_cast<int>(lda), LDC = static_cast<int>(ldc);
    sgemm_(&tb, &ta, &M, &N, &K, &alpha, b, &LDB, a, &LDA, &beta, c, &LDC);
    return;
  }
  auto opts = at::TensorOptions().dtype(at::kFloat);
  at::Tensor A = at::from_blob(const_cast<float*>(a), {m, k}, {lda, 1}, opts);
  at::Tensor B = transB ? at::from_blob(const_cast<float*>(b), {n, k}, {ldb, 1}, opts).t()
                        : at::from_blob(const_cast<float*>(b), {k, n}, {ldb, 1}, opts);
  at::Tensor C = at::from_blob(c, {m, n}, {ldc, 1}, opts);
  if (beta == 0.f)
    C.copy_(at::mm(A, B).mul_(alpha));
  else
    C.mul_(beta).add_(at::mm(A, B), alpha);
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
    v = v - m;
    V8f t = v * kLog2e + kRound;
    V8f nf = t - kRound;
    V8f r = v - nf * kLn2Hi - nf * kLn2Lo;
    V8f p = ((((kP0 * r + kP1) * r + kP2) * r + kP3) * r + kP4) * r + kP5;
    p = p * r * r + r + 1.f;
    V8i bits = (__builtin_convertvector(nf, V8i) + 127) << 23;
    V8f pow2;
    std::memcpy(&pow2, &bits, 32);
    V8f e = p * pow2;
    V8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
    e = v < -87.f ? zero : e;
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

using SoftmaxRowFn = void (*)(float*, int64_t);
SoftmaxRowFn PickSoftmaxRow() {
#ifdef DINOV3_FUSED_AVX2
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SoftmaxRowAvx2;
#endif
  return SoftmaxRowScalar;
}
const SoftmaxRowFn kSoftmaxRow = PickSoftmaxRow();

// q/k rows of one head → contiguous [N, d] buffers, RoPE on the last P rows (tables [P, d]), q scaled by `scale`.
void GatherRope(const float* src, int64_t rowStride, int64_t n, int64_t d, int64_t prefix, const float* sin,
                const float* cos, float scale, float* dst) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < n; ++i) {
    const float* x = src + i * rowStride;
    float* y = dst + i * d;
    if (!sin || i < prefix) {
      for (int64_t j = 0; j < d; ++j) y[j] = x[j] * scale;
      continue;
    }
    const float* s = sin + (i - prefix) * d;
    const float* c = cos + (i - prefix) * d;
    for (int64_t j = 0; j < half; ++j) y[j] = (x[j] * c[j] + -x[j + half] * s[j]) * scale;
    for (int64_t j = half; j < d; ++j) y[j] = (x[j] * c[j] + x[j - half] * s[j]) * scale;
  }
}

at::Tensor AttentionQkv(const Args& a, const at::Tensor& qkvIn, int64_t heads, const c10::optional<at::Tensor>& sinIn,
                        const c10::optional<at::Tensor>& cosIn, double scaleD) {
  if (qkvIn.dim() != 3 || qkvIn.size(2) % (3 * heads) != 0)
    a.valueError("expected \"qkv\" [B, N, 3·D] with D a multiple of numHeads (" + std::to_string(heads) +
                 "), received " + Describe(qkvIn));
  if (!qkvIn.is_cpu() || qkvIn.scalar_type() != at::kFloat)
    a.valueError("expected a float32 CPU \"qkv\", received " + Describe(qkvIn));
  const int64_t B = qkvIn.size(0), N = qkvIn.size(1), D = qkvIn.size(2) / 3, d = D / heads;
  if (sinIn.has_value() != cosIn.has_value()) a.valueError("sin and cos must be given together");
  at::Tensor sinT, cosT;
  int64_t P = 0;
  if (sinIn) {
    sinT = sinIn->contiguous();
    cosT = cosIn->contiguous();
    if (sinT.dim() != 2 || sinT.sizes() != cosT.sizes() || sinT.size(1) != d || sinT.size(0) > N ||
        sinT.scalar_type() != at::kFloat || cosT.scalar_type() != at::kFloat || d % 2 != 0)
      a.valueError("expected float32 RoPE tables [P, " + std::to_string(d) + "] with P <= " + std::to_string(N) +
                   ", received sin " + Describe(sinT) + " and cos " + Describe(cosT));
    P = sinT.size(0);
  }
  const at::Tensor qkv = qkvIn.contiguous();
  at::Tensor out = at::empty({B, N, D}, qkv.options());
  const float* base = qkv.data_ptr<float>();
  float* obase = out.data_ptr<float>();
  const float* sin = P ? sinT.data_ptr<float>() : nullptr;
  const float* cos = P ? cosT.data_ptr<float>() : nullptr;
  const int64_t prefix = N - P, rowStride = 3 * D;
  const float scale = static_cast<float>(scaleD);
  at::parallel_for(0, B * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> q(N * d), k(N * d), s(N * N);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / heads, h = t % heads;
      const float* rows = base + b * N * rowStride + h * d;
      GatherRope(rows, rowStride, N, d, prefix, sin, cos, scale, q.data());
      GatherRope(rows + D, rowStride, N, d, prefix, sin, cos, 1.f, k.data());
      GemmRowMajor(true, N, N, d, 1.f, q.data(), d, k.data(), d, 0.f, s.data(), N);  // S = q·kᵀ
      for (int64_t i = 0; i < N; ++i) kSoftmaxRow(s.data() + i * N, N);
      GemmRowMajor(false, N, d, N, 1.f, s.data(), N, rows + 2 * D, rowStride, 0.f, obase + b * N * D + h * d, D);
    }
  });
  return out;
}

}  // namespace

void InitFused(Napi::Env env, Napi::Object e) {
  // attentionQkv(qkv [B, N, 3D] float32 CPU, numHeads, sin?, cos? [P, d] float32, scale) → [B, N, D]
  Def(env, e, "attentionQkv", [](Args& a) {
    int64_t heads = a.i64(1, "numHeads");
    if (heads < 1) a.valueError("numHeads must be >= 1, received " + std::to_string(heads));
    return a.ret(AttentionQkv(a, a.t(0, "qkv"), heads, a.optT(2, "sin"), a.optT(3, "cos"), a.f64(4, "scale")));
  });
  // linearGelu(x, weight [out, in], bias?) = gelu(x·weightᵀ + bias), exact GELU, in place on the linear's output.
  Def(env, e, "linearGelu", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& w = a.t(1, "weight");
    if (w.dim() != 2 || x.dim() == 0 || x.size(-1) != w.size(1))
      a.valueError("input " + Describe(x) + " does not match weight " + Describe(w));
    at::Tensor y = at::linear(x, w, a.optT(2, "bias"));
    return a.ret(at::gelu_(y));
  });
  // residualScale(x, y, gamma?) = x + gamma ⊙ y (gamma broadcast over the last dim), or x + y without gamma.
  Def(env, e, "residualScale", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& y = a.t(1, "other");
    auto g = a.optT(2, "gamma");
    return a.ret(g ? at::addcmul(x, y, *g) : at::add(x, y));
  });
}

}  // namespace dinov3
