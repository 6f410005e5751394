// One native call per optimizer step over all parameters (RECIPE §6.1): AdamW with per-group lr / weight decay
// (decoupled decay, then the bias-corrected Adam step, in PyTorch's foreach order), per-module gradient clipping
// (§4 step 7), and the foreach updates used by the EMA teacher (§4 step 10).
#include <algorithm>
#include <cmath>

#include "common.h"

namespace dinov3 {

namespace {

// The parameters of one group that have a gradient, with their state (PyTorch skips the others entirely: no moment
// update, no step increment). `steps` points into the caller's Float64Array of per-parameter step counts.
struct Group {
  std::vector<at::Tensor> params, grads, expAvg, expAvgSq;
  std::vector<double*> steps;
};

Group ReadGroup(const Args& a, Napi::Float64Array& stepsArr) {
  auto ps = a.tensors(0, "params");
  auto ms = a.tensors(1, "expAvg");
  auto vs = a.tensors(2, "expAvgSq");
  if (ms.size() != ps.size() || vs.size() != ps.size())
    a.valueError("optimizer state does not match the parameters: " + std::to_string(ps.size()) + " params, " +
                 std::to_string(ms.size()) + " expAvg, " + std::to_string(vs.size()) + " expAvgSq");
  if (!a.has(8) || !a.raw(8).IsTypedArray() ||
      a.raw(8).As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    a.typeError(8, "steps", "a Float64Array");
  stepsArr = a.raw(8).As<Napi::Float64Array>();
  if (stepsArr.ElementLength() != ps.size())
    a.valueError("\"steps\" has " + std::to_string(stepsArr.ElementLength()) + " entries for " +
                 std::to_string(ps.size()) + " params");
  Group g;
  for (size_t i = 0; i < ps.size(); ++i) {
    const at::Tensor& grad = ps[i].grad();
    if (!grad.defined()) continue;
    if (!ms[i].sizes().equals(ps[i].sizes()) || !vs[i].sizes().equals(ps[i].sizes()))
      a.valueError("optimizer state of parameter " + std::to_string(i) + " (" + Describe(ms[i]) + ", " +
                   Describe(vs[i]) + ") does not match the parameter " + Describe(ps[i]));
    if (!grad.sizes().equals(ps[i].sizes()))
      a.valueError("the gradient of parameter " + std::to_string(i) + " (" + Describe(grad) +
                   ") does not match the parameter " + Describe(ps[i]));
    g.params.push_back(ps[i]);
    g.grads.push_back(grad);
    g.expAvg.push_back(ms[i]);
    g.expAvgSq.push_back(vs[i]);
    g.steps.push_back(stepsArr.Data() + i);
  }
  return g;
}

// A chain of foreach ops over CPU tensors streams every tensor through memory once per op: for an optimizer step,
// several passes over all the parameters, each from DRAM. InSlices hands `body` the lists a slice at a time (about
// kSliceElems elements: whole tensors, and tensors longer than that as contiguous 1-D pieces), so the whole chain runs
// on a slice while it is in cache (AdamW's eight ops over ViT-S/16's 34M parameters, 2 threads: 55-65 → 42-46 ms).
// Every element goes through the same ops with the same scalars, so the results are the same bits; `owner[j]` is the
// index (in the full lists) of the tensor that piece j belongs to, for per-tensor scalars. Other devices: one call.
constexpr int64_t kSliceElems = int64_t{1} << 18;  // 1 MiB of float32 per list
using Lists = std::vector<std::vector<at::Tensor>>;
template <typename Body>
void InSlices(const Lists& lists, Body&& body) {
  const size_t n = lists[0].size();
  std::vector<size_t> owner;
  if (n == 0 || !lists[0][0].is_cpu()) {
    for (size_t i = 0; i < n; ++i) owner.push_back(i);
    Lists all = lists;
    body(all, owner);
    return;
  }
  Lists slice(lists.size());
  int64_t filled = 0;
  auto flush = [&] {
    if (owner.empty()) return;
    body(slice, owner);
    for (auto& l : slice) l.clear();
    owner.clear();
    filled = 0;
  };
  for (size_t i = 0; i < n; ++i) {
    const int64_t numel = lists[0][i].numel();
    bool splittable = numel > kSliceElems;
    for (const auto& l : lists) splittable = splittable && l[i].is_contiguous();
    if (!splittable) {
      for (size_t k = 0; k < lists.size(); ++k) slice[k].push_back(lists[k][i]);
      owner.push_back(i);
      if ((filled += numel) >= kSliceElems) flush();
      continue;
    }
    for (int64_t off = 0; off < numel; off += kSliceElems) {
      const int64_t len = std::min(kSliceElems, numel - off);
      for (size_t k = 0; k < lists.size(); ++k) slice[k].push_back(lists[k][i].view({-1}).narrow(0, off, len));
      owner.push_back(i);
      if ((filled += len) >= kSliceElems) flush();
    }
  }
  flush();
}

#if DINOV3_TORCH_AT_LEAST(2, 1) && defined(DINOV3_WITH_CUDA)
// The fused CUDA kernel needs every tensor on one CUDA device and one floating dtype (fp32 state ⇒ fp32 params).
bool CanFuse(const Group& g) {
  const at::Device dev = g.params[0].device();
  if (!dev.is_cuda()) return false;
  for (size_t i = 0; i < g.params.size(); ++i)
    for (const at::Tensor* t : {&g.params[i], &g.grads[i], &g.expAvg[i], &g.expAvgSq[i]})
      if (t->device() != dev || t->scalar_type() != at::kFloat || t->layout() != at::kStrided) return false;
  return true;
}
#endif

}  // namespace

void InitOptim(Napi::Env env, Napi::Object e) {
  // adamwStep(params, expAvg, expAvgSq, lr, weightDecay, beta1, beta2, eps, steps, fused?): one parameter group.
  // `steps` (Float64Array, one entry per parameter) is incremented in place for the parameters that have a
  // gradient; the bias corrections use each parameter's own count, as PyTorch's per-parameter state["step"].
  Def(env, e, "adamwStep", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    Napi::Float64Array stepsArr;
    Group g = ReadGroup(a, stepsArr);
    double lr = a.f64(3, "lr"), wd = a.f64(4, "weightDecay"), b1 = a.f64(5, "beta1"), b2 = a.f64(6, "beta2"),
           eps = a.f64(7, "eps");
    bool fused = a.optB(9, "fused", false);
    if (g.params.empty()) return a.undef();
    for (double* s : g.steps) *s += 1;
#if DINOV3_TORCH_AT_LEAST(2, 1) && defined(DINOV3_WITH_CUDA)
    if (fused && CanFuse(g)) {
      // torch.optim.AdamW(fused=True): state_steps are float32 device tensors holding the incremented counts. They
      // are filled on the device (a copy from the host would make the host wait for the stream): one fill when every
      // parameter has the same count, as usual, else one per parameter.
      const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat).device(g.params[0].device());
      std::vector<at::Tensor> stateSteps;
      bool same = std::all_of(g.steps.begin(), g.steps.end(), [&](double* s) { return *s == *g.steps[0]; });
      if (same) {
        stateSteps = at::full({static_cast<int64_t>(g.steps.size())}, *g.steps[0], f32).unbind(0);
      } else {
        for (double* s : g.steps) stateSteps.push_back(at::full({}, *s, f32));
      }
      at::_fused_adamw_(g.params, g.grads, g.expAvg, g.expAvgSq, {}, stateSteps, lr, b1, b2, wd, eps,
                        /*amsgrad=*/false, /*maximize=*/false, c10::nullopt, c10::nullopt);
      return a.undef();
    }
#else
    (void)fused;
#endif
    // torch.optim.AdamW(foreach=True), _multi_tensor_adamw with capturable=False, its op chain run slice by slice.
    std::vector<double> stepSizeOf, bc2SqrtOf;
    for (double* s : g.steps) {
      double bc1 = 1.0 - std::pow(b1, *s);
      double bc2 = 1.0 - std::pow(b2, *s);
      stepSizeOf.push_back((lr / bc1) * -1);
      bc2SqrtOf.push_back(std::sqrt(bc2));
    }
    InSlices({g.params, g.grads, g.expAvg, g.expAvgSq}, [&](Lists& l, const std::vector<size_t>& owner) {
      std::vector<at::Tensor>&p = l[0], &gr = l[1], &m = l[2], &v = l[3];
      if (wd != 0) at::_foreach_mul_(p, 1.0 - lr * wd);
#if DINOV3_TORCH_AT_LEAST(2, 0)
      at::_foreach_lerp_(m, gr, 1.0 - b1);
#else
      at::_foreach_mul_(m, b1);
      at::_foreach_add_(m, gr, 1.0 - b1);
#endif
      at::_foreach_mul_(v, b2);
      at::_foreach_addcmul_(v, gr, gr, 1.0 - b2);
      std::vector<at::Scalar> stepSize, bc2Sqrt;
      for (size_t i : owner) {
        stepSize.emplace_back(stepSizeOf[i]);
        bc2Sqrt.emplace_back(bc2SqrtOf[i]);
      }
      std::vector<at::Tensor> denom = at::_foreach_sqrt(v);
      at::_foreach_div_(denom, bc2Sqrt);
      at::_foreach_add_(denom, eps);
      at::_foreach_addcdiv_(p, m, denom, stepSize);
    });
    return a.undef();
  });
  // clipGradNorm(params, maxNorm) → total L2 norm (0-d float32 tensor); every gradient is multiplied by
  // min(1, maxNorm / (norm + 1e-6)), as torch.nn.utils.clip_grad_norm_ (no host sync: the coefficient stays a tensor).
  Def(env, e, "clipGradNorm", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    std::vector<at::Tensor> grads;
    for (const at::Tensor& p : a.tensors(0, "params"))
      if (p.grad().defined()) grads.push_back(p.grad());
    double maxNorm = a.f64(1, "maxNorm");
    if (grads.empty()) return a.ret(at::zeros({}, at::kFloat));
    std::vector<at::Tensor> norms = at::_foreach_norm(grads, 2);
    at::Tensor total = at::norm(at::stack(norms), 2);
    // Python's `max_norm / t` is t.reciprocal() * max_norm (Tensor.__rdiv__).
    at::Tensor coef = ((total + 1e-6).reciprocal() * maxNorm).clamp_max(1.0);
#if DINOV3_TORCH_AT_LEAST(2, 1)
    at::_foreach_mul_(grads, coef);
#else
    for (at::Tensor& g : grads) g.mul_(coef);
#endif
    return a.ret(total);
  });
  // emaUpdate(teacher, student, momentum): teacher ← m·teacher + (1 − m)·student (foreach mul then add, as the
  // official SSLMetaArch.update_ema).
  Def(env, e, "emaUpdate", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    auto ts = a.tensors(0, "teacher");
    auto ss = a.tensors(1, "student");
    if (ts.size() != ss.size())
      a.valueError("teacher has " + std::to_string(ts.size()) + " tensors but student has " + std::to_string(ss.size()));
    for (size_t i = 0; i < ts.size(); ++i)
      if (!ts[i].sizes().equals(ss[i].sizes()))
        a.valueError("teacher[" + std::to_string(i) + "] (" + Describe(ts[i]) + ") and student[" + std::to_string(i) +
                     "] (" + Describe(ss[i]) + ") differ in shape");
    double m = a.f64(2, "momentum");
    if (ts.empty()) return a.undef();
    // Two ops: in slices (InSlices) they measured slower than in one pass each.
    at::_foreach_mul_(ts, m);
    at::_foreach_add_(ts, ss, 1.0 - m);
    return a.undef();
  });
}

}  // namespace dinov3
