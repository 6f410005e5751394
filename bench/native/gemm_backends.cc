// CPU SGEMM back ends reachable from the addon, on the ViT-S/16 linear shapes (batch 8 at 224: M = 8·201 tokens) and a
// 1024³ square: oneDNN's dnnl_sgemm (what the fused CPU linear calls; AVX-512 kernels on this CPU), the same with
// each thread multiplying its own block of rows in a single-threaded call (the addon's Gemm does this for k >= 4n and
// n <= 512), OpenBLAS's sgemm_ (Debian 0.3.21: Haswell AVX2 kernels; what at::linear/addmm calls), and oneDNN's
// matmul primitive (brgemm avx512_core) with plain and with prepacked ("any" layout) weights. libdnnl.so.2 (2.6) ships
// without headers, so the few C API entry points are declared here (opaque descriptor buffers). Best of rounds that
// alternate the back ends. First it measures the cores' float32 FMA peak: each thread runs 12 independent chains of
// 256- and of 512-bit FMAs on registers (no memory traffic), the ceiling that no GEMM can pass.
//   g++ -O2 -fopenmp bench/native/gemm_backends.cc -o /tmp/gemm_backends /usr/lib/x86_64-linux-gnu/libdnnl.so.2 \
//       /usr/lib/x86_64-linux-gnu/libopenblas.so.0 && /tmp/gemm_backends 2 [sweep]
// Run on a quiet machine: the figures of a loaded one mostly measure the neighbours.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <vector>
#include <cstring>
#include <algorithm>
#include <omp.h>
extern "C" {
int dnnl_sgemm(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*, const float*, const int*, const float*, float*, const int*);
typedef void* H;
int dnnl_engine_create(H* e, int kind, size_t idx);
int dnnl_stream_create(H* s, H e, unsigned flags);
int dnnl_memory_desc_init_by_strides(void* md, int nd, const int64_t* dims, int dt, const int64_t* strides);
int dnnl_memory_desc_init_by_tag(void* md, int nd, const int64_t* dims, int dt, int tag);
int dnnl_matmul_desc_init(void* d, const void* src, const void* w, const void* b, const void* dst);
int dnnl_primitive_desc_create(H* pd, const void* desc, H attr, H engine, H hint);
const void* dnnl_primitive_desc_query_md(H pd, int what, int idx);
int dnnl_primitive_create(H* p, H pd);
int dnnl_memory_create(H* m, const void* md, H engine, void* handle);
int dnnl_memory_set_data_handle(H m, void* handle);
typedef struct { int arg; H memory; } dnnl_exec_arg_t;
int dnnl_primitive_execute(H p, H stream, int nargs, const dnnl_exec_arg_t* args);
int dnnl_stream_wait(H s);
int dnnl_reorder_primitive_desc_create(H* pd, const void* src_md, H src_e, const void* dst_md, H dst_e, H attr);
int dnnl_primitive_attr_create(H* a);
int dnnl_primitive_attr_set_fpmath_mode(H a, int mode);
const char* dnnl_primitive_desc_query_str(H pd, int what, int idx);
int dnnl_primitive_desc_query(H pd, int what, int idx, void* result);
}
extern "C" size_t dnnl_memory_desc_get_size(const void*);
static size_t s_size(const void* m) { return dnnl_memory_desc_get_size(m); }
#define CK(x) do { int s_ = (x); if (s_) { printf("fail %s: %d\n", #x, s_); exit(1);} } while (0)
struct alignas(64) MD { char b[4096]; };
struct alignas(64) DESC { char b[32768]; };
static H eng, strm;
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
struct Mm { H prim; H src, w, b, dst; std::vector<float> wpacked; };
// y[M,N] = x[M,K] W[N,K]^T + b ; weights either plain (strides {1,K}) or "any" (prepacked by reorder)
Mm make(int64_t M, int64_t N, int64_t K, float* x, float* W, float* bias, float* y, bool any, int fpmath) {
  MD src, wmd, bmd, dst;
  int64_t sd[2] = {M, K}, ss[2] = {K, 1};
  int64_t wd[2] = {K, N}, ws[2] = {1, K};
  int64_t bd[2] = {1, N}, bs[2] = {N, 1};
  int64_t dd[2] = {M, N}, ds[2] = {N, 1};
  CK(dnnl_memory_desc_init_by_strides(&src, 2, sd, 3, ss));
  if (any) CK(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, 3, 1)); else CK(dnnl_memory_desc_init_by_strides(&wmd, 2, wd, 3, ws));
  CK(dnnl_memory_desc_init_by_strides(&bmd, 2, bd, 3, bs));
  CK(dnnl_memory_desc_init_by_strides(&dst, 2, dd, 3, ds));
  DESC d; CK(dnnl_matmul_desc_init(&d, &src, &wmd, &bmd, &dst));
  H attr = nullptr;
  if (fpmath) { CK(dnnl_primitive_attr_create(&attr)); CK(dnnl_primitive_attr_set_fpmath_mode(attr, fpmath)); }
  H pd; CK(dnnl_primitive_desc_create(&pd, &d, attr, eng, nullptr));
  const char* impl = nullptr; dnnl_primitive_desc_query(pd, 8, 0, &impl);
  Mm m;
  CK(dnnl_primitive_create(&m.prim, pd));
  CK(dnnl_memory_create(&m.src, &src, eng, x));
  CK(dnnl_memory_create(&m.b, &bmd, eng, bias));
  CK(dnnl_memory_create(&m.dst, &dst, eng, y));
  if (any) {
    const void* wq = dnnl_primitive_desc_query_md(pd, 131, 0);
    MD plainw; CK(dnnl_memory_desc_init_by_strides(&plainw, 2, wd, 3, ws));
    H rpd; CK(dnnl_reorder_primitive_desc_create(&rpd, &plainw, eng, wq, eng, nullptr));
    H rp; CK(dnnl_primitive_create(&rp, rpd));
    m.wpacked.resize(s_size(wq) / 4 + 16);
    H srcw; CK(dnnl_memory_create(&srcw, &plainw, eng, W));
    CK(dnnl_memory_create(&m.w, wq, eng, m.wpacked.data()));
    dnnl_exec_arg_t args[2] = {{1, srcw}, {17, m.w}};
    CK(dnnl_primitive_execute(rp, strm, 2, args)); dnnl_stream_wait(strm);
  } else
  CK(dnnl_memory_create(&m.w, &wmd, eng, W));
  printf("   impl=%s\n", impl ? impl : "?");
  return m;
}
typedef float V8 __attribute__((vector_size(32)));
typedef float V16 __attribute__((vector_size(64)));
// 12 independent FMA chains (enough to cover the FMA latency on two pipes), `iters` rounds; returns FLOP/s.
template <typename V>
static inline double FmaChains(long iters) {
  V b, c, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;  // named, so that they live in registers
  for (unsigned j = 0; j < sizeof(V) / 4; ++j) {
    b[j] = 1.0000001f, c[j] = 1e-7f;
    a0[j] = 0, a1[j] = 1, a2[j] = 2, a3[j] = 3, a4[j] = 4, a5[j] = 5, a6[j] = 6, a7[j] = 7, a8[j] = 8, a9[j] = 9, a10[j] = 10, a11[j] = 11;
  }
  double t0 = now();
  for (long r = 0; r < iters; ++r) {
#define F(x) x = x * b + c;
    F(a0) F(a1) F(a2) F(a3) F(a4) F(a5) F(a6) F(a7) F(a8) F(a9) F(a10) F(a11)
#undef F
  }
  double t = now() - t0;
  V s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
  if (s[0] == 1.2345f) printf(" ");
  return double(iters) * 12 * (sizeof(V) / 4) * 2 / t;
}
__attribute__((target("avx2,fma"), flatten)) static double Fma256(long iters) { return FmaChains<V8>(iters); }
__attribute__((target("avx512f"), flatten)) static double Fma512(long iters) { return FmaChains<V16>(iters); }
static void FmaPeak(int threads) {
  const bool has512 = __builtin_cpu_supports("avx512f");
  for (int w = 0; w < (has512 ? 2 : 1); ++w) {
    double best = 0;
    for (int r = 0; r < 3; ++r) {
      double sum = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sum)
      sum += w == 0 ? Fma256(100000000L) : Fma512(50000000L);
      best = std::max(best, sum);
    }
    printf("fma peak, %d-bit, %d threads: %.1f GFLOP/s\n", w == 0 ? 256 : 512, threads, best / 1e9);
  }
}
// y[M,N] = x[M,K]·W[N,K]^T with each thread multiplying its own block of rows (blocks of 16) in a single-threaded call.
static void RowSplitSgemm(int threads, int64_t M, int64_t N, int64_t K, const float* x, const float* W, float* y) {
#pragma omp parallel num_threads(threads)
  {
    const int64_t blocks = (M + 15) / 16, nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t per = (blocks + nt - 1) / nt, r0 = std::min(M, t * per * 16), r1 = std::min(M, (t + 1) * per * 16);
    if (r1 > r0) dnnl_sgemm('N', 'T', r1 - r0, N, K, 1.f, x + r0 * K, K, W, K, 0.f, y + r0 * N, N);
  }
}
// `sweep`: dnnl_sgemm C = A·Bᵀ in one call against the row split, over M × N × K (where Gemm's rule comes from).
static void Sweep(int threads) {
  const int64_t Ms[] = {402, 1608, 6432}, Ns[] = {96, 192, 384, 768, 1024, 1536}, Ks[] = {384, 768, 1536, 3072};
  for (int64_t M : Ms) for (int64_t N : Ns) for (int64_t K : Ks) {
    std::vector<float> x(M * K, 0.5f), W(N * K, 0.25f), y(M * N);
    const int reps = std::max<int64_t>(1, int64_t(2e8) / (M * N * K));
    double best[2] = {1e9, 1e9};
    for (int r = 0; r < 7; ++r)
      for (int w = 0; w < 2; ++w) {
        double t0 = now();
        for (int q = 0; q < reps; ++q) {
          if (w == 0) dnnl_sgemm('N', 'T', M, N, K, 1.f, x.data(), K, W.data(), K, 0.f, y.data(), N);
          else RowSplitSgemm(threads, M, N, K, x.data(), W.data(), y.data());
        }
        best[w] = std::min(best[w], (now() - t0) / reps);
      }
    const double one = 2.0 * M * N * K / best[0] / 1e9, split = 2.0 * M * N * K / best[1] / 1e9;
    printf("M %5ld N %5ld K %5ld  one call %6.1f  row split %6.1f GFLOP/s  %s\n", long(M), long(N), long(K), one, split,
           split > one * 1.05 ? "split +5%" : one > split * 1.05 ? "one call +5%" : "");
  }
}
int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  omp_set_num_threads(threads);
  CK(dnnl_engine_create(&eng, 1, 0));
  CK(dnnl_stream_create(&strm, eng, 1));
  FmaPeak(threads);
  if (argc > 2 && std::strcmp(argv[2], "sweep") == 0) return Sweep(threads), 0;
  struct S { const char* n; int64_t M, N, K; } shapes[] = {{"qkv", 1608, 1152, 384}, {"proj", 1608, 384, 384}, {"fc1", 1608, 1536, 384}, {"fc2", 1608, 384, 1536}, {"sq1024", 1024, 1024, 1024}};
  for (auto& s : shapes) {
    std::vector<float> x(s.M * s.K), W(s.N * s.K), b(s.N), y(s.M * s.N);
    for (auto& v : x) v = (rand() % 1000) / 1000.f; for (auto& v : W) v = (rand() % 1000) / 1000.f - .5f;
    double fl = 2.0 * s.M * s.N * s.K;
    printf("%s M=%ld N=%ld K=%ld\n", s.n, s.M, s.N, s.K);
    Mm plain = make(s.M, s.N, s.K, x.data(), W.data(), b.data(), y.data(), false, 0);
    Mm bf = make(s.M, s.N, s.K, x.data(), W.data(), b.data(), y.data(), true, 0);
    auto runs = [&](int which) {
      if (which == 0) dnnl_sgemm('N', 'T', s.M, s.N, s.K, 1.f, x.data(), s.K, W.data(), s.K, 0.f, y.data(), s.N);
      else if (which == 4) RowSplitSgemm(threads, s.M, s.N, s.K, x.data(), W.data(), y.data());
      else if (which == 1) { char tb = 'T', ta = 'N'; int M = s.N, N = s.M, K = s.K; float a = 1, bb = 0; sgemm_(&tb, &ta, &M, &N, &K, &a, W.data(), &K, x.data(), &K, &bb, y.data(), &M); }
      else { Mm& m = which == 2 ? plain : bf; dnnl_exec_arg_t args[4] = {{1, m.src}, {33, m.w}, {41, m.b}, {17, m.dst}}; CK(dnnl_primitive_execute(m.prim, strm, 4, args)); dnnl_stream_wait(strm); }
    };
    const char* names[] = {"dnnl_sgemm", "openblas", "dnnl_matmul", "dnnl_matmul_packed", "dnnl_sgemm_rowsplit"};
    double best[5] = {1e9, 1e9, 1e9, 1e9, 1e9};
    for (int w = 0; w < 5; ++w) runs(w);
    for (int round = 0; round < 15; ++round)
      for (int w = 0; w < 5; ++w) { double t0 = now(); for (int i = 0; i < 5; ++i) runs(w); best[w] = std::min(best[w], (now() - t0) / 5); }
    for (int w = 0; w < 5; ++w) printf("  %-20s %7.3f ms %6.1f GFLOP/s\n", names[w], best[w] * 1e3, fl / best[w] / 1e9);
  }
}
