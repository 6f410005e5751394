// Boundary helpers: errors, dtype names, tensor handles, argument readers, the Guard.
#include "common.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "instance_data.h"

namespace dinov3 {

namespace {

struct DtypeEntry {
  const char* name;
  at::ScalarType type;
};
const DtypeEntry kDtypes[] = {
    {"float32", at::kFloat}, {"float64", at::kDouble}, {"bfloat16", at::kBFloat16}, {"float16", at::kHalf},
    {"int64", at::kLong},    {"int32", at::kInt},      {"int16", at::kShort},       {"int8", at::kChar},
    {"uint8", at::kByte},    {"bool", at::kBool},
};

}  // namespace

std::string DtypeName(at::ScalarType t) {
  for (const auto& e : kDtypes)
    if (e.type == t) return e.name;
  return c10::toString(t);
}

c10::optional<at::ScalarType> ParseDtype(const std::string& s) {
  for (const auto& e : kDtypes)
    if (s == e.name) return e.type;
  return c10::nullopt;
}

std::string FormatInts(c10::IntArrayRef v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  return s + "]";
}

std::string Describe(at::ScalarType dtype, c10::IntArrayRef sizes, c10::Device device) {
  std::string s = DtypeName(dtype) + " " + FormatInts(sizes);
  if (!device.is_cpu()) s += " on " + device.str();
  return s;
}

std::string Describe(const at::Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  return Describe(t.scalar_type(), t.sizes(), t.device());
}

std::string DescribeValue(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return std::string("boolean ") + (v.As<Napi::Boolean>().Value() ? "true" : "false");
  if (v.IsNumber()) {
    std::ostringstream os;
    os << "number " << v.As<Napi::Number>().DoubleValue();
    return os.str();
  }
  if (v.IsString()) return "string \"" + v.As<Napi::String>().Utf8Value() + "\"";
  if (v.IsArray()) return "array of length " + std::to_string(v.As<Napi::Array>().Length());
  if (v.IsBigInt()) {
    TensorRef* r = UnwrapRef(v.Env(), v);
    if (r) return r->disposed ? "disposed Tensor (" + r->Described() + ")" : "Tensor " + Describe(r->t);
    return "bigint";
  }
  if (v.IsFunction()) return "function";
  if (v.IsTypedArray()) return "typed array";
  return "object";
}

Napi::Error MakeError(Napi::Env env, ErrKind kind, const std::string& message, const char* code) {
  AddonData& d = Data(env);
  if (!d.errorsSet) {
    Napi::Error e = Napi::Error::New(env, message);
    e.Set("code", Napi::String::New(env, code));
    return e;
  }
  Napi::FunctionReference* ctor = &d.torchError;
  if (kind == ErrKind::Range) ctor = &d.rangeError;
  if (kind == ErrKind::Type) ctor = &d.typeError;
  if (kind == ErrKind::Disposed) ctor = &d.disposedError;
  Napi::Object obj = kind == ErrKind::Disposed
                         ? ctor->New({Napi::String::New(env, message)})
                         : ctor->New({Napi::String::New(env, message), Napi::String::New(env, code)});
  return Napi::Error(env, obj);
}

// ---- tensor handles -------------------------------------------------------------------------------------------

static void Account(AddonData& d, TensorRef* r, int sign) {
  d.liveTensors += sign;
  if (r->cuda) {
    d.cudaBytes += sign * r->bytes;
    return;
  }
  d.cpuBytes += sign * r->bytes;
  d.pendingExternal += sign * r->bytes;
}

// V8 learns about native CPU memory (so that GC runs sooner when tensors are left to the GC backstop) in 1 MiB steps
// rather than on every op.
static void ReportExternal(Napi::Env env, AddonData& d) {
  if (d.pendingExternal >= (1 << 20) || d.pendingExternal <= -(1 << 20)) {
    Napi::MemoryManagement::AdjustExternalMemory(env, d.pendingExternal);
    d.pendingExternal = 0;
  }
}

HandleTable::HandleTable() {
  static std::atomic<uint32_t> environments{0};
  tag_ = 0xD00 | (environments.fetch_add(1) & 0xFF);
}

TensorRef* HandleTable::Acquire() {
  if (free_.size() > kReuseDelay || (size_ == (1u << kSlotBits) && !free_.empty())) {
    TensorRef& r = At(free_.front());
    free_.pop_front();
    r.gen = (r.gen + 1) & ((1u << kGenBits) - 1);
    return &r;
  }
  if (size_ == (1u << kSlotBits)) return nullptr;
  if ((size_ >> kChunkBits) == chunks_.size()) chunks_.emplace_back(new TensorRef[1u << kChunkBits]);
  TensorRef& r = At(size_);
  r.slot = size_++;
  return &r;
}

TensorRef* HandleTable::Find(uint64_t id, bool* stale) {
  if ((id >> (kSlotBits + kGenBits)) != tag_) return nullptr;
  uint32_t slot = static_cast<uint32_t>(id & ((1u << kSlotBits) - 1));
  if (slot >= size_) return nullptr;
  TensorRef& r = At(slot);
  *stale = r.gen != static_cast<uint32_t>((id >> kSlotBits) & ((1u << kGenBits) - 1));
  return &r;
}

std::string TensorRef::Described() const {
  if (reused) return "disposed earlier; its record has since been reused";
  return (wasDefined ? Describe(dtype, sizes, device) : std::string("undefined tensor")) + ", created by " + origin;
}

Napi::Error DisposedError(Napi::Env env, const char* op, const std::string& arg, const TensorRef* r) {
  return MakeError(env, ErrKind::Disposed, std::string(op) + ": \"" + arg + "\" is a disposed Tensor (" + r->Described() + ")",
                   "ERR_DISPOSED");
}

Napi::Value WrapTensor(Napi::Env env, at::Tensor t, const char* origin) {
  AddonData& d = Data(env);
  TensorRef* r = d.handles.Acquire();
  if (!r)
    throw MakeError(env, ErrKind::Torch,
                    std::string(origin) + ": too many live tensors (16,777,216); dispose tensors you no longer need",
                    "ERR_NATIVE");
  napi_value v = nullptr;
  if (napi_create_bigint_uint64(env, d.handles.Id(*r), &v) != napi_ok) {
    d.handles.Release(r->slot);
    throw MakeError(env, ErrKind::Torch, std::string(origin) + ": could not create a tensor handle", "ERR_NATIVE");
  }
  r->t = std::move(t);
  r->origin = origin;
  r->disposed = false;
  r->cuda = r->t.defined() && r->t.is_cuda();
  r->bytes = r->t.defined() && !r->t.is_meta() ? static_cast<int64_t>(r->t.numel()) * static_cast<int64_t>(r->t.element_size()) : 0;
  Account(d, r, +1);
  d.created += 1;
  ReportExternal(env, d);
  return Napi::Value(env, v);
}

namespace {
// What a stale handle (its slot reused since) reports (one per thread; only read right after UnwrapRef).
thread_local TensorRef tReused = [] {
  TensorRef r;
  r.reused = true;
  return r;
}();
}  // namespace

TensorRef* UnwrapRef(Napi::Env env, const Napi::Value& v) {
  uint64_t id = 0;
  bool lossless = false;
  if (napi_get_value_bigint_uint64(env, v, &id, &lossless) != napi_ok || !lossless) return nullptr;
  bool stale = false;
  TensorRef* r = Data(env).handles.Find(id, &stale);
  if (!r) return nullptr;
  return stale ? &tReused : r;
}

void DisposeRef(Napi::Env env, TensorRef* r) {
  if (r->disposed) return;
  AddonData& d = Data(env);
  Account(d, r, -1);
  r->disposed = true;
  r->wasDefined = r->t.defined();
  if (r->wasDefined) {
    r->dtype = r->t.scalar_type();
    r->device = r->t.device();
    r->sizes.assign(r->t.sizes().begin(), r->t.sizes().end());
  }
  r->t.reset();
  d.handles.Release(r->slot);
  ReportExternal(env, d);
}

// ---- Args -----------------------------------------------------------------------------------------------------

void Args::typeError(size_t i, const char* name, const char* expected) const {
  std::string received = i < info_.Length() ? DescribeValue(info_[i]) : "undefined";
  throw MakeError(env_, ErrKind::Type,
                  std::string(op_) + ": expected \"" + name + "\" to be " + expected + ", received " + received,
                  "ERR_INVALID_ARG");
}

void Args::valueError(const std::string& message) const {
  throw MakeError(env_, ErrKind::Range, std::string(op_) + ": " + message, "ERR_INVALID_ARG");
}

TensorRef* Args::ref(size_t i, const char* name) const {
  TensorRef* r = i < info_.Length() ? UnwrapRef(env_, info_[i]) : nullptr;
  if (!r) typeError(i, name, "a Tensor");
  if (r->disposed) throw DisposedError(env_, op_, name, r);
  return r;
}

const at::Tensor& Args::t(size_t i, const char* name) const { return ref(i, name)->t; }

c10::optional<at::Tensor> Args::optT(size_t i, const char* name) const {
  if (!has(i)) return c10::nullopt;
  return t(i, name);
}

std::vector<at::Tensor> Args::tensors(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsArray()) typeError(i, name, "an array of Tensors");
  Napi::Array a = info_[i].As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value v = a.Get(k);
    TensorRef* r = UnwrapRef(env_, v);
    std::string item = std::string(name) + "[" + std::to_string(k) + "]";
    if (!r)
      throw MakeError(env_, ErrKind::Type,
                      std::string(op_) + ": expected \"" + item + "\" to be a Tensor, received " + DescribeValue(v),
                      "ERR_INVALID_ARG");
    if (r->disposed) throw DisposedError(env_, op_, item, r);
    out.push_back(r->t);
  }
  return out;
}

int64_t Args::i64(size_t i, const char* name) const {
  if (i >= info_.Length()) typeError(i, name, "an integer");
  Napi::Value v = info_[i];
  if (v.IsBigInt()) {
    bool lossless = true;
    int64_t r = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) typeError(i, name, "an integer within the int64 range");
    return r;
  }
  if (!v.IsNumber()) typeError(i, name, "an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9007199254740991.0) typeError(i, name, "an integer");
  return static_cast<int64_t>(d);
}

c10::optional<int64_t> Args::optI64(size_t i, const char* name) const {
  if (!has(i)) return c10::nullopt;
  return i64(i, name);
}

double Args::f64(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsNumber()) typeError(i, name, "a number");
  return info_[i].As<Napi::Number>().DoubleValue();
}

c10::optional<double> Args::optF64(size_t i, const char* name) const {
  if (!has(i)) return c10::nullopt;
  return f64(i, name);
}

bool Args::b(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsBoolean()) typeError(i, name, "a boolean");
  return info_[i].As<Napi::Boolean>().Value();
}

bool Args::optB(size_t i, const char* name, bool dflt) const { return has(i) ? b(i, name) : dflt; }

std::vector<int64_t> Args::ints(size_t i, const char* name) const {
  if (i < info_.Length() && info_[i].IsNumber()) return {i64(i, name)};
  if (i >= info_.Length() || !info_[i].IsArray()) typeError(i, name, "an array of integers");
  Napi::Array a = info_[i].As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value v = a.Get(k);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
    if (!std::isfinite(d) || std::floor(d) != d) typeError(i, name, "an array of integers");
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

c10::optional<std::vector<int64_t>> Args::optInts(size_t i, const char* name) const {
  if (!has(i)) return c10::nullopt;
  return ints(i, name);
}

std::vector<double> Args::doubles(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsArray()) typeError(i, name, "an array of numbers");
  Napi::Array a = info_[i].As<Napi::Array>();
  std::vector<double> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value v = a.Get(k);
    if (!v.IsNumber()) typeError(i, name, "an array of numbers");
    out[k] = v.As<Napi::Number>().DoubleValue();
  }
  return out;
}

at::Scalar Args::scalar(size_t i, const char* name) const {
  if (i < info_.Length()) {
    Napi::Value v = info_[i];
    if (v.IsBoolean()) return at::Scalar(v.As<Napi::Boolean>().Value());
    if (v.IsNumber()) {
      double d = v.As<Napi::Number>().DoubleValue();
      // Integral values stay integral so integer tensors keep their dtype.
      if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9007199254740992.0)
        return at::Scalar(static_cast<int64_t>(d));
      return at::Scalar(d);
    }
  }
  typeError(i, name, "a number");
}

std::string Args::str(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsString()) typeError(i, name, "a string");
  return info_[i].As<Napi::String>().Utf8Value();
}

at::ScalarType Args::dtype(size_t i, const char* name) const {
  if (i < info_.Length() && info_[i].IsString()) {
    auto d = ParseDtype(info_[i].As<Napi::String>().Utf8Value());
    if (d) return *d;
  }
  typeError(i, name, "a dtype (float32|float64|bfloat16|float16|int64|int32|int16|int8|uint8|bool)");
}

c10::optional<at::ScalarType> Args::optDtype(size_t i, const char* name) const {
  if (!has(i)) return c10::nullopt;
  return dtype(i, name);
}

at::Device Args::device(size_t i, const char* name) const {
  if (i < info_.Length() && info_[i].IsString()) {
    std::string s = info_[i].As<Napi::String>().Utf8Value();
    if (s == "cpu") return at::Device(at::kCPU);
    if (s == "meta") return at::Device(at::kMeta);  // shapes only, no memory (parameter counting)
    if (s == "cuda" || s.rfind("cuda:", 0) == 0) {
      c10::optional<at::Device> d;
      try {
        d = at::Device(s);
      } catch (const std::exception&) {
      }
      if (d) {
        if (!at::hasCUDA())
          throw MakeError(env_, ErrKind::Torch,
                          std::string(op_) + ": \"" + name + "\" is " + s +
                              " but CUDA is not available (this addon uses libtorch " TORCH_VERSION
#ifdef DINOV3_WITH_CUDA
                              " with CUDA, and no CUDA device was found)",
#else
                              " built without CUDA; rebuild against a CUDA libtorch: see README)",
#endif
                          "ERR_INVALID_ARG");
        return *d;
      }
    }
  }
  typeError(i, name, "a device (\"cpu\", \"cuda\", \"cuda:N\" or \"meta\")");
}

Napi::Value Args::ret(const std::vector<at::Tensor>& ts) const {
  Napi::Array a = Napi::Array::New(env_, ts.size());
  for (size_t k = 0; k < ts.size(); ++k) a.Set(static_cast<uint32_t>(k), WrapTensor(env_, ts[k], op_));
  return a;
}

Napi::Value Args::ret(const std::tuple<at::Tensor, at::Tensor>& ts) const {
  return ret(std::vector<at::Tensor>{std::get<0>(ts), std::get<1>(ts)});
}

// ---- Guard ----------------------------------------------------------------------------------------------------

// ---- libtorch warnings ----
// c10's default handler prints TORCH_WARN messages to stderr (libtorch 2.x warns, for instance, on std() of a single
// element), where a Node program can neither see nor silence them. On the JS thread the addon collects them instead,
// and RunGuarded hands each to process.emitWarning when the call returns (type "TorchWarning", code
// DINOV3_TORCH_WARNING, the op's name in front): printed once by Node's default listener, silenced by --no-warnings,
// observable through process.on('warning'). c10's handler is per thread, so are the handler and its queue here;
// warnings raised on other threads (OpenMP workers, async work) still reach stderr.
namespace {

constexpr size_t kMaxQueuedWarnings = 16;  // per call; more are counted, not kept

class CollectingWarningHandler : public c10::WarningHandler {
 public:
#if DINOV3_TORCH_AT_LEAST(2, 0)
  void process(const c10::Warning& w) override { Push(w.msg()); }
#else
  void process(const c10::SourceLocation&, const std::string& msg, const bool) override { Push(msg); }
#endif
  bool pending = false;
  std::vector<std::string> queue;
  size_t dropped = 0;

 private:
  void Push(const std::string& msg) {
    pending = true;
    if (queue.size() < kMaxQueuedWarnings)
      queue.push_back(msg);
    else
      ++dropped;
  }
};

// Never freed: c10 points at it until the thread ends and might warn while the thread's other objects are destroyed.
CollectingWarningHandler& ThreadWarnings() {
  thread_local CollectingWarningHandler* handler = new CollectingWarningHandler();
  return *handler;
}

void FlushTorchWarnings(Napi::Env env, const char* op) {
  CollectingWarningHandler& w = ThreadWarnings();
  if (!w.pending) return;
  std::vector<std::string> batch;
  batch.swap(w.queue);
  const size_t dropped = w.dropped;
  w.pending = false;
  w.dropped = 0;
  if (dropped) batch.push_back(std::to_string(dropped) + " more warnings");
  try {
    Napi::Object process = env.Global().Get("process").As<Napi::Object>();
    Napi::Value emit = process.Get("emitWarning");
    if (!emit.IsFunction()) return;
    Napi::Object options = Napi::Object::New(env);
    options.Set("type", "TorchWarning");
    options.Set("code", "DINOV3_TORCH_WARNING");
    for (const std::string& msg : batch)
      emit.As<Napi::Function>().Call(process, {Napi::String::New(env, std::string(op) + ": " + msg), options});
  } catch (const Napi::Error&) {
    // An emitWarning that throws (one a program replaced, say) loses the rest of this batch, not the call's result.
  }
}

}  // namespace

namespace {
std::atomic<uint64_t> g_host_syncs{0};
}  // namespace

void CountHostSync() { g_host_syncs.fetch_add(1, std::memory_order_relaxed); }
uint64_t HostSyncCount() { return g_host_syncs.load(std::memory_order_relaxed); }

void InitWarnings(Napi::Env env, Napi::Object e) {
#if DINOV3_TORCH_AT_LEAST(2, 0)
  c10::WarningUtils::set_warning_handler(&ThreadWarnings());
#else
  c10::Warning::set_warning_handler(&ThreadWarnings());
#endif
  // torchWarn(message): raises a libtorch warning (TORCH_WARN) on this thread, as an op would; for tests.
  Def(env, e, "torchWarn", [](Args& a) -> Napi::Value {
    TORCH_WARN(a.str(0, "message"));
    return a.env().Undefined();
  });
}

Napi::Value RunGuarded(const Napi::CallbackInfo& info, const char* op, Napi::Value (*body)(Args&)) {
  Napi::Env env = info.Env();
  auto fail = [&](ErrKind kind, const std::string& what, const char* code) -> Napi::Value {
    FlushTorchWarnings(env, op);
    MakeError(env, kind, std::string(op) + ": " + what, code).ThrowAsJavaScriptException();
    return env.Undefined();
  };
  try {
    Args args(info, op);
    Napi::Value result = body(args);
    FlushTorchWarnings(env, op);
    return result;
  } catch (const Napi::Error& e) {
    FlushTorchWarnings(env, op);
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  } catch (const c10::OutOfMemoryError& e) {
    return fail(ErrKind::Torch, e.what_without_backtrace(), "ERR_TORCH_OOM");
  } catch (const c10::IndexError& e) {
    return fail(ErrKind::Range, e.what_without_backtrace(), "ERR_TORCH_INDEX");
  } catch (const c10::TypeError& e) {
    return fail(ErrKind::Type, e.what_without_backtrace(), "ERR_TORCH_TYPE");
  } catch (const c10::ValueError& e) {
    return fail(ErrKind::Torch, e.what_without_backtrace(), "ERR_TORCH_VALUE");
  } catch (const c10::NotImplementedError& e) {
    return fail(ErrKind::Torch, e.what_without_backtrace(), "ERR_TORCH_NOT_IMPLEMENTED");
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    // The CPU allocator reports failures as a plain enforce error; they are out-of-memory errors all the same.
    if (msg.find("can't allocate memory") != std::string::npos || msg.find("out of memory") != std::string::npos)
      return fail(ErrKind::Torch, msg, "ERR_TORCH_OOM");
    return fail(ErrKind::Torch, msg, "ERR_TORCH");
  } catch (const std::exception& e) {
    return fail(ErrKind::Torch, e.what(), "ERR_NATIVE");
  } catch (...) {
    return fail(ErrKind::Torch, "unknown native exception", "ERR_NATIVE");
  }
}

void Def(Napi::Env env, Napi::Object exports, const char* name, Napi::Value (*body)(Args&)) {
  AddonData& d = Data(env);
  d.entries.push_back(std::make_unique<Entry>(Entry{name, body}));
  Entry* entry = d.entries.back().get();
  exports.Set(name, Napi::Function::New(
                        env,
                        [](const Napi::CallbackInfo& info) -> Napi::Value {
                          auto* e = static_cast<Entry*>(info.Data());
                          return RunGuarded(info, e->name, e->body);
                        },
                        name, entry));
}

}  // namespace dinov3
