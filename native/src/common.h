// Boundary helpers shared by every JS-facing function: tensor handles, argument readers, the exception Guard, and
// the `Def` registration helper. Every entry point has the same shape: Def(name, body) where body reads its
// arguments through `Args` (cheap guards that throw TorchTypeError/ERR_INVALID_ARG) and returns through `Args::ret`.
#pragma once

#include <napi.h>
#include <ATen/ATen.h>
#include <torch/version.h>

#include <c10/util/Optional.h>
#include <c10/util/SmallVector.h>
#include <string>
#include <vector>

#define DINOV3_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace dinov3 {

// One native tensor handle: a slot of the per-environment handle table (instance_data.h). The JS value is a BigInt
// carrying the slot's id (a tagged integer, never a pointer), so creating, reading and disposing a handle touches no
// JS object, weak reference or finalizer. dispose() frees the tensor at once and keeps what it was (dtype, sizes, device,
// origin) in the slot for use-after-dispose messages until the slot is reused.
struct TensorRef {
  at::Tensor t;
  const char* origin = "";  // op that created it (static string)
  int64_t bytes = 0;        // bytes accounted in the live counters
  uint32_t slot = 0;        // index in the handle table
  uint32_t gen = 0;         // bumped at each reuse of the slot; part of the handle id
  bool cuda = false;
  bool disposed = true;
  bool reused = false;      // a stale handle whose slot now holds another tensor (the description is gone)
  // What the tensor was, recorded at dispose; formatted only when an error message needs it.
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);
  bool wasDefined = false;
  c10::SmallVector<int64_t, 5> sizes;

  std::string Described() const;  // "float32 [2, 3], created by add": what a disposed handle was
};

enum class ErrKind { Torch, Range, Type, Disposed };

// Builds one of the TS error classes handed over at init (falls back to plain Error before init).
Napi::Error MakeError(Napi::Env env, ErrKind kind, const std::string& message, const char* code);

std::string DtypeName(at::ScalarType t);
c10::optional<at::ScalarType> ParseDtype(const std::string& s);
std::string FormatInts(c10::IntArrayRef v);  // "[2, 3]"
std::string Describe(const at::Tensor& t);  // "float32 [2, 3]" (+ " on cuda:0" off cpu)
std::string Describe(at::ScalarType dtype, c10::IntArrayRef sizes, c10::Device device);
std::string DescribeValue(const Napi::Value& v);  // what a JS value is, for "received ..." messages

// Wrap a tensor into a new JS handle; `origin` must be a static string (the op name).
Napi::Value WrapTensor(Napi::Env env, at::Tensor t, const char* origin);
// The TensorRef behind a handle, or nullptr if `v` is not a tensor handle. A disposed handle gives a record with
// disposed = true (its own slot, or a per-thread record when the slot has been reused).
TensorRef* UnwrapRef(Napi::Env env, const Napi::Value& v);
// Frees the tensor now (idempotent); the slot keeps its description until reused.
void DisposeRef(Napi::Env env, TensorRef* ref);
// DisposedError "<op>: "<arg>" is a disposed Tensor (<what it was>)" (code ERR_DISPOSED).
Napi::Error DisposedError(Napi::Env env, const char* op, const std::string& arg, const TensorRef* r);

// Positional argument reader for one call. `name` arguments are the user-facing parameter names.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* op) : info_(info), env_(info.Env()), op_(op) {}

  Napi::Env env() const { return env_; }
  const char* op() const { return op_; }
  size_t size() const { return info_.Length(); }
  bool has(size_t i) const { return i < info_.Length() && !info_[i].IsUndefined() && !info_[i].IsNull(); }
  Napi::Value raw(size_t i) const { return info_[i]; }

  const at::Tensor& t(size_t i, const char* name) const;
  c10::optional<at::Tensor> optT(size_t i, const char* name) const;
  std::vector<at::Tensor> tensors(size_t i, const char* name) const;
  TensorRef* ref(size_t i, const char* name) const;  // the handle itself (for dispose/in-place bookkeeping)

  int64_t i64(size_t i, const char* name) const;
  c10::optional<int64_t> optI64(size_t i, const char* name) const;
  double f64(size_t i, const char* name) const;
  c10::optional<double> optF64(size_t i, const char* name) const;
  bool b(size_t i, const char* name) const;
  bool optB(size_t i, const char* name, bool dflt) const;
  std::vector<int64_t> ints(size_t i, const char* name) const;
  c10::optional<std::vector<int64_t>> optInts(size_t i, const char* name) const;
  std::vector<double> doubles(size_t i, const char* name) const;
  at::Scalar scalar(size_t i, const char* name) const;
  std::string str(size_t i, const char* name) const;
  at::ScalarType dtype(size_t i, const char* name) const;
  c10::optional<at::ScalarType> optDtype(size_t i, const char* name) const;
  at::Device device(size_t i, const char* name) const;

  Napi::Value ret(at::Tensor t) const { return WrapTensor(env_, std::move(t), op_); }
  Napi::Value ret(const std::vector<at::Tensor>& ts) const;
  Napi::Value ret(const std::tuple<at::Tensor, at::Tensor>& ts) const;
  Napi::Value retNumber(double v) const { return Napi::Number::New(env_, v); }
  Napi::Value undef() const { return env_.Undefined(); }

  // Throw TorchTypeError "<op>: expected "<name>" to be <expected>, received <what>".
  [[noreturn]] void typeError(size_t i, const char* name, const char* expected) const;
  [[noreturn]] void valueError(const std::string& message) const;  // TorchRangeError "<op>: <message>"

 private:
  const Napi::CallbackInfo& info_;
  Napi::Env env_;
  const char* op_;
};

// Translate every C++ exception into a JS error of our classes. No exception may cross into N-API unhandled.
Napi::Value RunGuarded(const Napi::CallbackInfo& info, const char* op, Napi::Value (*body)(Args&));

// A Generator handle argument (a seeded CPU generator), or nullopt when absent.
c10::optional<at::Generator> GeneratorArg(const Args& a, size_t i);

// Host synchronisation points: every read of tensor values on the host (item, toArrayBuffer, data, toString), every
// op whose output size depends on tensor values (masked_select, nonzero, boolean indexing), blocking copies between
// host and CUDA, and explicit synchronize calls. On CUDA each one waits for the device; reads and value-dependent
// sizes are counted on every device, so that a CPU test can bound what a loop would wait for.
void CountHostSync();
uint64_t HostSyncCount();

// Register `body` as exports[name].
void Def(Napi::Env env, Napi::Object exports, const char* name, Napi::Value (*body)(Args&));

// Per-op-family initialisers (one per file in ops/, autograd/, optim/, io/).
void InitWarnings(Napi::Env env, Napi::Object exports);  // common.cc: libtorch warnings → process.emitWarning
void InitTensorCore(Napi::Env env, Napi::Object exports);
void InitCreation(Napi::Env env, Napi::Object exports);
void InitPointwise(Napi::Env env, Napi::Object exports);
void InitReduce(Napi::Env env, Napi::Object exports);
void InitShape(Napi::Env env, Napi::Object exports);
void InitIndex(Napi::Env env, Napi::Object exports);
void InitLinalg(Napi::Env env, Napi::Object exports);
void InitDecomp(Napi::Env, Napi::Object);
void InitNN(Napi::Env env, Napi::Object exports);
void InitAutograd(Napi::Env env, Napi::Object exports);
void InitAutocast(Napi::Env env, Napi::Object exports);
void InitOptim(Napi::Env env, Napi::Object exports);
void InitDevice(Napi::Env env, Napi::Object exports);
void InitFused(Napi::Env env, Napi::Object exports);
void InitBench(Napi::Env env, Napi::Object exports);
void InitThreads(Napi::Env env, Napi::Object exports);
void InitDistributed(Napi::Env env, Napi::Object exports);

}  // namespace dinov3
