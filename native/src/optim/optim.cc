// One native call per optimizer step over all parameters (RECIPE §6.1): AdamW with per-group lr / weight decay
// (decoupled decay, then the bias-corrected Adam step, in PyTorch's foreach order), per-module gradient clipping,
// and the foreach updates used by the EMA teacher (§4 step 10).
#include "common.h"

namespace dinov3 {

namespace {

// Keeps only the parameters that have a gradient, with their state, as PyTorch does.
struct Group {
  std::vector<at::Tensor> params, grads, expAvg, expAvgSq;
};

Group ReadGroup(const Args& a, size_t pi, size_t mi, size_t vi) {
  auto ps = a.tensors(pi, "params");
  auto ms = a.tensors(mi, "expAvg");
  auto vs = a.tensors(vi, "expAvgSq");
  if (ms.size() != ps.size() || vs.size() != ps.size())
    a.valueError("optimizer state does not match the parameters: " + std::to_string(ps.size()) + " params, " +
                 std::to_string(ms.size()) + " expAvg, " + std::to_string(vs.size()) + " expAvgSq");
  Group g;
  for (size_t i = 0; i < ps.size(); ++i) {
    const at::Tensor& grad = ps[i].grad();
    if (!grad.defined()) continue;
    if (!ms[i].sizes().equals(ps[i].sizes()) || !vs[i].sizes().equals(ps[i].sizes()))
      a.valueError("optimizer state of parameter " + std::to_string(i) + " (" + Describe(ms[i]) +
                   ") does not match the parameter " + Describe(ps[i]));
    g.params.push_back(ps[i]);
    g.grads.push_back(grad);
    g.expAvg.push_back(ms[i]);
    g.expAvgSq.push_back(vs[i]);
  }
  return g;
}

}  // namespace

void InitOptim(Napi::Env env, Napi::Object e) {
  // adamwStep(params, expAvg, expAvgSq, lr, weightDecay, beta1, beta2, eps, step): one group.
  Def(env, e, "adamwStep", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    Group g = ReadGroup(a, 0, 1, 2);
    double lr = a.f64(3, "lr"), wd = a.f64(4, "weightDecay"), b1 = a.f64(5, "beta1"), b2 = a.f64(6, "beta2"),
           eps = a.f64(7, "eps");
    int64_t step = a.i64(8, "step");
    if (step < 1) a.valueError("step must be >= 1, received " + std::to_string(step));
    if (g.params.empty()) return a.undef();
    if (wd != 0) at::_foreach_mul_(g.params, 1.0 - lr * wd);
    at::_foreach_mul_(g.expAvg, b1);
    at::_foreach_add_(g.expAvg, g.grads, 1.0 - b1);
    at::_foreach_mul_(g.expAvgSq, b2);
    at::_foreach_addcmul_(g.expAvgSq, g.grads, g.grads, 1.0 - b2);
    double bc1 = 1.0 - std::pow(b1, double(step));
    double bc2 = 1.0 - std::pow(b2, double(step));
    std::vector<at::Tensor> denom = at::_foreach_sqrt(g.expAvgSq);
    at::_foreach_div_(denom, std::sqrt(bc2));
    at::_foreach_add_(denom, eps);
    at::_foreach_addcdiv_(g.params, g.expAvg, denom, -lr / bc1);
    return a.undef();
  });
  // clipGradNorm(params, maxNorm) → total L2 norm (0-d float32 tensor); grads scaled by min(1, max/(norm+1e-6)).
  Def(env, e, "clipGradNorm", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    std::vector<at::Tensor> grads;
    for (const at::Tensor& p : a.tensors(0, "params"))
      if (p.grad().defined()) grads.push_back(p.grad());
    double maxNorm = a.f64(1, "maxNorm");
    if (grads.empty()) return a.ret(at::zeros({}, at::kFloat));
    std::vector<at::Tensor> norms = at::_foreach_norm(grads, 2);
    at::Tensor total = at::norm(at::stack(norms), 2);
    at::Tensor coef = (maxNorm / (total + 1e-6)).clamp_max(1.0);
    at::_foreach_mul_(grads, coef.item());
    return a.ret(total);
  });
  // foreachMul_(tensors, scalar); foreachAdd_(tensors, others, alpha); foreachLerp_(tensors, ends, weight)
  Def(env, e, "foreachMul_", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    auto ts = a.tensors(0, "tensors");
    at::_foreach_mul_(ts, a.scalar(1, "scalar"));
    return a.undef();
  });
  Def(env, e, "foreachAdd_", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    auto ts = a.tensors(0, "tensors");
    auto os = a.tensors(1, "others");
    if (ts.size() != os.size()) a.valueError("lists differ in length: " + std::to_string(ts.size()) + " vs " + std::to_string(os.size()));
    at::_foreach_add_(ts, os, a.has(2) ? a.scalar(2, "alpha") : at::Scalar(1));
    return a.undef();
  });
  Def(env, e, "foreachCopy_", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    auto ts = a.tensors(0, "tensors");
    auto os = a.tensors(1, "sources");
    if (ts.size() != os.size()) a.valueError("lists differ in length: " + std::to_string(ts.size()) + " vs " + std::to_string(os.size()));
    for (size_t i = 0; i < ts.size(); ++i) ts[i].copy_(os[i]);
    return a.undef();
  });
  // emaUpdate(teacher, student, momentum): teacher ← m·teacher + (1 − m)·student (mul then add, as the official code).
  Def(env, e, "emaUpdate", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    auto ts = a.tensors(0, "teacher");
    auto ss = a.tensors(1, "student");
    if (ts.size() != ss.size()) a.valueError("teacher has " + std::to_string(ts.size()) + " tensors but student has " + std::to_string(ss.size()));
    double m = a.f64(2, "momentum");
    at::_foreach_mul_(ts, m);
    at::_foreach_add_(ts, ss, 1.0 - m);
    return a.undef();
  });
}

}  // namespace dinov3
