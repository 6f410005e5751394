// Tensor handle lifecycle and metadata: init, dispose, memory counters, shape/dtype/device, conversion, host data
// (sync zero-copy views and async copies), threads, generators.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <cstring>
#include <mutex>
#include <sstream>

#include "common.h"
#include "instance_data.h"

namespace dinov3 {

namespace {

const napi_type_tag kGeneratorTag = {0x2f4a91c07be35d18ULL, 0x51e6c3a8d0947b2fULL};

Napi::Value ShapeArray(Napi::Env env, at::IntArrayRef sizes) {
  Napi::Array a = Napi::Array::New(env, sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, sizes[i]));
  return a;
}

// Copies a tensor to host memory off the JS thread and resolves with a Buffer of its bytes.
class ToHostWorker : public Napi::AsyncWorker {
 public:
  ToHostWorker(Napi::Env env, at::Tensor t)
      : Napi::AsyncWorker(env, "dinov3.data"), deferred_(Napi::Promise::Deferred::New(env)), t_(std::move(t)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      host_ = t_.to(at::kCPU).contiguous();
    } catch (const c10::Error& e) {
      SetError(e.what_without_backtrace());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    size_t n = host_.numel() * host_.element_size();
    auto* keep = new at::Tensor(host_);
    Napi::Value buf = n == 0 ? Napi::Buffer<uint8_t>::New(env, 0).As<Napi::Value>()
                             : Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(keep->data_ptr()), n,
                                                          [](Napi::Env, uint8_t*, at::Tensor* k) { delete k; }, keep)
                                   .As<Napi::Value>();
    if (n == 0) delete keep;
    deferred_.Resolve(buf);
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(MakeError(Env(), ErrKind::Torch, std::string("data: ") + e.Message(), "ERR_TORCH").Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  at::Tensor t_;
  at::Tensor host_;
};

}  // namespace

// Generator handles are type-tagged Externals too; nullptr when absent.
c10::optional<at::Generator> GeneratorArg(const Args& a, size_t i) {
  if (!a.has(i)) return c10::nullopt;
  Napi::Value v = a.raw(i);
  bool ok = false;
  if (!v.IsExternal() || napi_check_object_type_tag(a.env(), v, &kGeneratorTag, &ok) != napi_ok || !ok)
    a.typeError(i, "generator", "a Generator");
  return *v.As<Napi::External<at::Generator>>().Data();
}

void InitTensorCore(Napi::Env env, Napi::Object e) {
  // init(errorClasses): the TS error constructors used for every native error.
  Def(env, e, "init", [](Args& a) -> Napi::Value {
    Napi::Value v = a.raw(0);
    if (!v.IsObject()) a.typeError(0, "errors", "an object of error classes");
    Napi::Object o = v.As<Napi::Object>();
    AddonData& d = Data(a.env());
    auto take = [&](const char* key, Napi::FunctionReference& ref) {
      Napi::Value f = o.Get(key);
      if (!f.IsFunction()) a.typeError(0, key, "an error class");
      ref = Napi::Persistent(f.As<Napi::Function>());
    };
    take("TorchError", d.torchError);
    take("TorchRangeError", d.rangeError);
    take("TorchTypeError", d.typeError);
    take("DisposedError", d.disposedError);
    d.errorsSet = true;
    Napi::Object info = Napi::Object::New(a.env());
    info.Set("torchVersion", Napi::String::New(a.env(), TORCH_VERSION));
#ifdef DINOV3_WITH_CUDA
    info.Set("cudaCompiled", true);
#else
    info.Set("cudaCompiled", false);
#endif
    return info;
  });

  Def(env, e, "isTensor", [](Args& a) -> Napi::Value {
    return Napi::Boolean::New(a.env(), a.size() > 0 && UnwrapRef(a.env(), a.raw(0)) != nullptr);
  });
  Def(env, e, "isDisposed", [](Args& a) -> Napi::Value {
    TensorRef* r = a.size() > 0 ? UnwrapRef(a.env(), a.raw(0)) : nullptr;
    if (!r) a.typeError(0, "tensor", "a Tensor");
    return Napi::Boolean::New(a.env(), r->disposed);
  });
  // dispose is idempotent: a second dispose is a no-op.
  Def(env, e, "dispose", [](Args& a) -> Napi::Value {
    TensorRef* r = a.size() > 0 ? UnwrapRef(a.env(), a.raw(0)) : nullptr;
    if (!r) a.typeError(0, "tensor", "a Tensor");
    DisposeRef(a.env(), r);
    return a.undef();
  });
  Def(env, e, "describeDisposed", [](Args& a) -> Napi::Value {
    TensorRef* r = a.size() > 0 ? UnwrapRef(a.env(), a.raw(0)) : nullptr;
    if (!r) a.typeError(0, "tensor", "a Tensor");
    return Napi::String::New(a.env(), r->Described());
  });
  Def(env, e, "memory", [](Args& a) -> Napi::Value {
    AddonData& d = Data(a.env());
    Napi::Object o = Napi::Object::New(a.env());
    o.Set("liveTensors", Napi::Number::New(a.env(), static_cast<double>(d.liveTensors)));
    o.Set("cpuBytes", Napi::Number::New(a.env(), static_cast<double>(d.cpuBytes)));
    o.Set("cudaBytes", Napi::Number::New(a.env(), static_cast<double>(d.cudaBytes)));
    o.Set("created", Napi::Number::New(a.env(), static_cast<double>(d.created)));
    return o;
  });
  // hostSyncs(): host synchronisation points passed so far (CountHostSync in common.h), on every device.
  Def(env, e, "hostSyncs", [](Args& a) -> Napi::Value { return a.retNumber(static_cast<double>(HostSyncCount())); });

  // ---- metadata ----
  Def(env, e, "shape", [](Args& a) -> Napi::Value { return ShapeArray(a.env(), a.t(0, "tensor").sizes()); });
  Def(env, e, "strides", [](Args& a) -> Napi::Value { return ShapeArray(a.env(), a.t(0, "tensor").strides()); });
  Def(env, e, "dtype", [](Args& a) -> Napi::Value {
    return Napi::String::New(a.env(), DtypeName(a.t(0, "tensor").scalar_type()));
  });
  Def(env, e, "device", [](Args& a) -> Napi::Value {
    return Napi::String::New(a.env(), a.t(0, "tensor").device().str());
  });
  Def(env, e, "isContiguous", [](Args& a) -> Napi::Value {
    return Napi::Boolean::New(a.env(), a.t(0, "tensor").is_contiguous());
  });

  // ---- conversion ----
  // to(t, dtype?, device?, nonBlocking, copy)
  Def(env, e, "to", [](Args& a) -> Napi::Value {
    const at::Tensor& t = a.t(0, "tensor");
    auto dtype = a.optDtype(1, "dtype").value_or(t.scalar_type());
    at::Device dev = a.has(2) ? a.device(2, "device") : t.device();
    bool nonBlocking = a.optB(3, "nonBlocking", false);
    // A blocking copy between the host and CUDA waits for the stream, either way (libtorch's copy_ synchronises it).
    if (!nonBlocking && (t.is_cuda() != dev.is_cuda())) CountHostSync();
    return a.ret(t.to(dev, dtype, nonBlocking, a.optB(4, "copy", false)));
  });
  Def(env, e, "contiguous", [](Args& a) -> Napi::Value { return a.ret(a.t(0, "tensor").contiguous()); });
  Def(env, e, "clone", [](Args& a) -> Napi::Value { return a.ret(a.t(0, "tensor").clone()); });
  Def(env, e, "pinMemory", [](Args& a) -> Napi::Value { return a.ret(a.t(0, "tensor").pin_memory()); });
  Def(env, e, "copy_", [](Args& a) -> Napi::Value {
    const at::Tensor& src = a.t(1, "src");
    bool nonBlocking = a.optB(2, "nonBlocking", false);
    if (!nonBlocking && src.is_cuda() != a.t(0, "tensor").is_cuda()) CountHostSync();
    a.t(0, "tensor").copy_(src, nonBlocking);
    return a.undef();
  });

  // fromBuffer(typedArray|Buffer, dtype, shape): copies the bytes into a new CPU tensor.
  Def(env, e, "fromBuffer", [](Args& a) -> Napi::Value {
    if (!a.has(0) || !a.raw(0).IsTypedArray()) a.typeError(0, "data", "a TypedArray or Buffer");
    Napi::TypedArray ta = a.raw(0).As<Napi::TypedArray>();
    at::ScalarType dt = a.dtype(1, "dtype");
    std::vector<int64_t> shape = a.ints(2, "shape");
    int64_t numel = 1;
    for (int64_t s : shape) {
      if (s < 0) a.valueError("shape must not have negative sizes");
      numel *= s;
    }
    size_t need = static_cast<size_t>(numel) * c10::elementSize(dt);
    if (ta.ByteLength() != need)
      a.valueError("data has " + std::to_string(ta.ByteLength()) + " bytes but " + DtypeName(dt) + " [" +
                   std::to_string(numel) + " elements] needs " + std::to_string(need));
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dt));
    const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    if (need) std::memcpy(t.data_ptr(), src, need);
    return a.ret(t);
  });
  // toArrayBuffer(t): a zero-copy ArrayBuffer over a contiguous CPU tensor's memory (copied first otherwise).
  // The ArrayBuffer keeps the storage alive, independently of the handle's dispose.
  Def(env, e, "toArrayBuffer", [](Args& a) -> Napi::Value {
    const at::Tensor& t = a.t(0, "tensor");
    CountHostSync();
    at::Tensor host = t.to(at::kCPU).contiguous();
    size_t n = host.numel() * host.element_size();
    if (n == 0) return Napi::ArrayBuffer::New(a.env(), 0);
    auto* keep = new at::Tensor(host);
    return Napi::ArrayBuffer::New(a.env(), keep->data_ptr(), n, [](Napi::Env, void*, at::Tensor* k) { delete k; },
                                  keep);
  });
  Def(env, e, "dataAsync", [](Args& a) -> Napi::Value {
    const at::Tensor& t = a.t(0, "tensor");
    CountHostSync();
    auto* w = new ToHostWorker(a.env(), t);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
  Def(env, e, "item", [](Args& a) -> Napi::Value {
    const at::Tensor& t = a.t(0, "tensor");
    if (t.numel() != 1)
      a.valueError("expected a tensor with one element, received " + Describe(t));
    CountHostSync();
    at::Scalar s = t.item();
    if (s.isBoolean()) return Napi::Boolean::New(a.env(), s.toBool());
    return Napi::Number::New(a.env(), s.toDouble());
  });
  Def(env, e, "toString", [](Args& a) -> Napi::Value {
    const at::Tensor& t = a.t(0, "tensor");
    std::ostringstream os;
    CountHostSync();
    os << t;
    return Napi::String::New(a.env(), os.str());
  });

  // ---- threads and random state ----
  Def(env, e, "setNumThreads", [](Args& a) -> Napi::Value {
    int64_t n = a.i64(0, "threads");
    if (n < 1) a.valueError("threads must be >= 1, received " + std::to_string(n));
    at::set_num_threads(static_cast<int>(n));
    return a.undef();
  });
  Def(env, e, "getNumThreads", [](Args& a) -> Napi::Value { return a.retNumber(at::get_num_threads()); });
  Def(env, e, "manualSeed", [](Args& a) -> Napi::Value {
    at::manual_seed(static_cast<uint64_t>(a.i64(0, "seed")));
    return a.undef();
  });
  Def(env, e, "newGenerator", [](Args& a) -> Napi::Value {
    auto* g = new at::Generator(at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(a.i64(0, "seed"))));
    auto ext = Napi::External<at::Generator>::New(a.env(), g, [](Napi::Env, at::Generator* g) { delete g; });
    napi_type_tag_object(a.env(), ext, &kGeneratorTag);
    return ext;
  });
  // getRngState(generator?) / setRngState(state, generator?): the default CPU generator when none is given.
  Def(env, e, "getRngState", [](Args& a) -> Napi::Value {
    auto g = GeneratorArg(a, 0);
    at::Generator gen = g ? *g : at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    return a.ret(gen.get_state());
  });
  Def(env, e, "setRngState", [](Args& a) -> Napi::Value {
    const at::Tensor& s = a.t(0, "state");
    auto g = GeneratorArg(a, 1);
    at::Generator gen = g ? *g : at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(s);
    return a.undef();
  });
}

}  // namespace dinov3
