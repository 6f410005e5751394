// Autograd: requires_grad, backward (with gradient, retain_graph; over several roots), .grad, detach, grad mode.
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include "common.h"

namespace dinov3 {

void InitAutograd(Napi::Env env, Napi::Object e) {
  Def(env, e, "requiresGrad", [](Args& a) -> Napi::Value {
    return Napi::Boolean::New(a.env(), a.t(0, "tensor").requires_grad());
  });
  Def(env, e, "setRequiresGrad", [](Args& a) -> Napi::Value {
    at::Tensor t = a.t(0, "tensor");
    bool on = a.b(1, "requiresGrad");
    if (on && !at::isFloatingType(t.scalar_type()))
      a.typeError(0, "tensor", "a floating-point Tensor (only they can require gradients)");
    t.set_requires_grad(on);
    return a.undef();
  });
  Def(env, e, "isLeaf", [](Args& a) -> Napi::Value { return Napi::Boolean::New(a.env(), a.t(0, "tensor").is_leaf()); });
  Def(env, e, "retainGrad", [](Args& a) -> Napi::Value {
    a.t(0, "tensor").retain_grad();
    return a.undef();
  });
  // grad(t) → Tensor | null
  Def(env, e, "grad", [](Args& a) -> Napi::Value {
    const at::Tensor& g = a.t(0, "tensor").grad();
    if (!g.defined()) return a.env().Null();
    return a.ret(g);
  });
  // setGrad(t, g | null)
  Def(env, e, "setGrad", [](Args& a) -> Napi::Value {
    at::Tensor t = a.t(0, "tensor");
    if (a.has(1)) {
      const at::Tensor& g = a.t(1, "grad");
      if (!g.sizes().equals(t.sizes()) || g.scalar_type() != t.scalar_type() || g.device() != t.device())
        a.valueError("the gradient " + Describe(g) + " does not match the tensor " + Describe(t) +
                     " (same shape, dtype and device required)");
      t.mutable_grad() = g;
    } else {
      t.mutable_grad().reset();
    }
    return a.undef();
  });
  // zeroGrad(tensors): drop the gradients (set to none, as PyTorch's default zero_grad).
  Def(env, e, "zeroGrad", [](Args& a) -> Napi::Value {
    for (at::Tensor t : a.tensors(0, "tensors")) t.mutable_grad().reset();
    return a.undef();
  });
  // backward(t, gradient?, retainGraph)
  Def(env, e, "backward", [](Args& a) -> Napi::Value {
    const at::Tensor& t = a.t(0, "tensor");
    auto g = a.optT(1, "gradient");
    if (!t.requires_grad())
      a.valueError("the tensor does not require grad and has no grad_fn (" + Describe(t) +
                   "); was it computed under noGrad, or from tensors without requiresGrad?");
    if (!g && t.numel() != 1)
      a.valueError("a gradient must be given for a non-scalar tensor (" + Describe(t) + ")");
    t.backward(g ? *g : at::Tensor(), a.optB(2, "retainGraph", false));
    return a.undef();
  });
  // backwardAll(tensors, gradients): torch.autograd.backward over several roots in one pass of the engine, each root
  // with its gradient (same shape); gradients accumulate into the leaves' .grad.
  Def(env, e, "backwardAll", [](Args& a) -> Napi::Value {
    std::vector<at::Tensor> ts = a.tensors(0, "tensors");
    std::vector<at::Tensor> gs = a.tensors(1, "gradients");
    if (ts.size() != gs.size())
      a.valueError(std::to_string(ts.size()) + " tensors but " + std::to_string(gs.size()) + " gradients");
    for (size_t i = 0; i < ts.size(); ++i) {
      if (!ts[i].requires_grad())
        a.valueError("tensors[" + std::to_string(i) + "] does not require grad and has no grad_fn (" + Describe(ts[i]) +
                     ")");
      if (!gs[i].sizes().equals(ts[i].sizes()))
        a.valueError("gradients[" + std::to_string(i) + "] (" + Describe(gs[i]) + ") does not match tensors[" +
                     std::to_string(i) + "] (" + Describe(ts[i]) + ")");
    }
    if (!ts.empty()) torch::autograd::backward(ts, gs);
    return a.undef();
  });
  // setData(t, src): replaces t's data (possibly another dtype/device) keeping the same variable (Module.to_).
  Def(env, e, "setData", [](Args& a) -> Napi::Value {
    at::Tensor t = a.t(0, "tensor");
    t.set_data(a.t(1, "src"));
    return a.undef();
  });
  Def(env, e, "detach", [](Args& a) { return a.ret(a.t(0, "tensor").detach()); });
  // setGradEnabled(on) → previous state
  Def(env, e, "setGradEnabled", [](Args& a) -> Napi::Value {
    bool prev = c10::GradMode::is_enabled();
    c10::GradMode::set_enabled(a.b(0, "enabled"));
    return Napi::Boolean::New(a.env(), prev);
  });
  Def(env, e, "isGradEnabled", [](Args& a) -> Napi::Value {
    return Napi::Boolean::New(a.env(), c10::GradMode::is_enabled());
  });
}

}  // namespace dinov3
