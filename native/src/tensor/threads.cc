// Threading diagnostics: how many threads each parallel runtime of this libtorch will use, and the OpenMP wait
// policy in force. With Debian's libtorch, ATen's intra-op threads, OpenBLAS (openmp variant) and oneDNN all share
// libgomp's thread team: OpenBLAS follows omp_get_max_threads() (set by setNumThreads) and runs single-threaded
// inside ATen's parallel regions, so there is no nested oversubscription. libgomp reads its wait policy
// (OMP_WAIT_POLICY / GOMP_SPINCOUNT) once, when the libraries load; src/native/binding.ts sets the default before
// loading the addon.
#include <ATen/Parallel.h>

#include <cstdlib>

#include "common.h"

// OpenBLAS entry points, weak: absent with other BLAS libraries (MKL in PyTorch's libtorch).
extern "C" int openblas_get_num_threads(void) __attribute__((weak));
extern "C" int openblas_get_parallel(void) __attribute__((weak));
extern "C" char* openblas_get_config(void) __attribute__((weak));

namespace dinov3 {

void InitThreads(Napi::Env env, Napi::Object e) {
  // threadingInfo(): { intraOp, interOp, blas, blasThreads, ompWaitPolicy, gompSpincount, parallelInfo }
  Def(env, e, "threadingInfo", [](Args& a) -> Napi::Value {
    Napi::Env env = a.env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("intraOp", Napi::Number::New(env, at::get_num_threads()));
    o.Set("interOp", Napi::Number::New(env, at::get_num_interop_threads()));
    if (openblas_get_num_threads && openblas_get_parallel) {
      int p = openblas_get_parallel();  // 0 sequential, 1 pthreads, 2 OpenMP
      std::string cfg = openblas_get_config ? openblas_get_config() : "";
      o.Set("blas", Napi::String::New(env, std::string("OpenBLAS (") + (p == 2 ? "openmp" : p == 1 ? "pthreads" : "sequential") +
                                                ") " + cfg));
      // The openmp variant uses omp_get_max_threads() at each call (its own counter is only updated lazily).
      o.Set("blasThreads", Napi::Number::New(env, p == 2 ? at::get_num_threads() : openblas_get_num_threads()));
    } else {
      o.Set("blas", Napi::String::New(env, "not OpenBLAS"));
      o.Set("blasThreads", env.Null());
    }
    const char* wp = std::getenv("OMP_WAIT_POLICY");
    const char* sc = std::getenv("GOMP_SPINCOUNT");
    o.Set("ompWaitPolicy", wp ? Napi::Value(Napi::String::New(env, wp)) : env.Null());
    o.Set("gompSpincount", sc ? Napi::Value(Napi::String::New(env, sc)) : env.Null());
    o.Set("parallelInfo", Napi::String::New(env, at::get_parallel_info()));
    return o;
  });
}

}  // namespace dinov3
