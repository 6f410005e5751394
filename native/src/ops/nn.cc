// Neural-network ops: conv2d, layer_norm, rms_norm, softmax/log_softmax, scaled dot-product attention,
// interpolate, pad, avg_pool2d/adaptive_avg_pool2d, normalize, cross entropy, mse, pairwise distance.
#include "common.h"
#include "ops/op_helpers.h"

namespace dinov3 {

namespace {

int64_t Reduction(const Args& a, size_t i) {
  std::string r = a.has(i) ? a.str(i, "reduction") : "mean";
  if (r == "mean") return at::Reduction::Mean;
  if (r == "sum") return at::Reduction::Sum;
  if (r == "none") return at::Reduction::None;
  a.valueError("reduction must be \"mean\", \"sum\" or \"none\", received \"" + r + "\"");
}

at::Tensor SdpaMath(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const c10::optional<at::Tensor>& mask, double dropout, bool causal, double scale) {
  at::Tensor attn = at::matmul(q, k.transpose(-2, -1)).mul_(scale);
  if (causal) {
    at::Tensor keep = at::ones({q.size(-2), k.size(-2)}, q.options().dtype(at::kBool)).tril();
    attn.masked_fill_(keep.logical_not(), -std::numeric_limits<double>::infinity());
  }
  if (mask) {
    if (mask->scalar_type() == at::kBool)
      attn.masked_fill_(mask->logical_not(), -std::numeric_limits<double>::infinity());
    else
      attn.add_(*mask);
  }
  attn = at::softmax(attn, -1);
  if (dropout > 0) attn = at::dropout(attn, dropout, true);
  return at::matmul(attn, v);
}

void CheckQKV(const Args& a, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  if (q.dim() < 2 || k.dim() != q.dim() || v.dim() != q.dim() || q.size(-1) != k.size(-1) || k.size(-2) != v.size(-2))
    a.valueError("query " + Describe(q) + ", key " + Describe(k) + " and value " + Describe(v) +
                 " must be [..., T, d] with matching head dims and key/value lengths");
}

// A [h, w] pair argument (a number means the same value twice); each entry must be >= `min`.
std::vector<int64_t> Pair(const Args& a, size_t i, const char* name, int64_t min) {
  std::vector<int64_t> v = a.ints(i, name);
  if (v.size() == 1) v.push_back(v[0]);
  if (v.size() != 2 || v[0] < min || v[1] < min)
    a.valueError(std::string(name) + " must be a number or [h, w] with entries >= " + std::to_string(min) +
                 ", received [" + c10::Join(", ", a.ints(i, name)) + "]");
  return v;
}

void CheckImage(const Args& a, const at::Tensor& x) {
  if (x.dim() != 4 && x.dim() != 3) a.valueError("expected a 3-D or 4-D input [N, C, H, W], received " + Describe(x));
}

}  // namespace

void InitNN(Napi::Env env, Napi::Object e) {
  // conv2d(x, weight, bias?, stride[2], padding[2], dilation[2], groups)
  Def(env, e, "conv2d", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& w = a.t(1, "weight");
    if (x.dim() != 4 && x.dim() != 3) a.valueError("expected a 3-D or 4-D input [N, C, H, W], received " + Describe(x));
    if (w.dim() != 4) a.valueError("expected \"weight\" to be 4-D [out, in/groups, kH, kW], received " + Describe(w));
    std::vector<int64_t> stride = a.has(3) ? a.ints(3, "stride") : std::vector<int64_t>{1, 1};
    std::vector<int64_t> padding = a.has(4) ? a.ints(4, "padding") : std::vector<int64_t>{0, 0};
    std::vector<int64_t> dilation = a.has(5) ? a.ints(5, "dilation") : std::vector<int64_t>{1, 1};
    return a.ret(at::conv2d(x, w, a.optT(2, "bias"), stride, padding, dilation, a.has(6) ? a.i64(6, "groups") : 1));
  });
  // layerNorm(x, normalizedShape, weight?, bias?, eps)
  Def(env, e, "layerNorm", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    std::vector<int64_t> ns = a.ints(1, "normalizedShape");
    int64_t nd = static_cast<int64_t>(ns.size());
    bool ok = nd <= x.dim();
    for (int64_t i = 0; ok && i < nd; ++i) ok = x.size(x.dim() - nd + i) == ns[i];
    if (!ok) a.valueError("normalizedShape [" + c10::Join(", ", ns) + "] does not match the trailing dims of " + Describe(x));
    return a.ret(at::layer_norm(x, ns, a.optT(2, "weight"), a.optT(3, "bias"), a.f64(4, "eps")));
  });
  // rmsNorm(x, weight?, eps): computed in (at least) float32, cast back, then scaled by weight.
  Def(env, e, "rmsNorm", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (!at::isFloatingType(x.scalar_type())) a.typeError(0, "input", "a floating-point Tensor");
    // At least float32: 16-bit inputs are upcast, float64 stays float64.
    at::Tensor xf = x.to(at::promote_types(x.scalar_type(), at::kFloat));
    at::Tensor y = (xf * at::rsqrt(xf.pow(2).mean(-1, true).add(a.f64(2, "eps")))).to(x.scalar_type());
    auto w = a.optT(1, "weight");
    return a.ret(w ? y * *w : y);
  });
  Def(env, e, "softmax", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::softmax(x, DimArg(a, 1, x), a.optDtype(2, "dtype")));
  });
  Def(env, e, "logSoftmax", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::log_softmax(x, DimArg(a, 1, x), a.optDtype(2, "dtype")));
  });
  // sdpa(q, k, v, mask?, dropout, isCausal, scale?) with q,k,v [..., T, d]. Flash/efficient kernels on libtorch 2.x.
  Def(env, e, "sdpa", [](Args& a) {
    const at::Tensor& q = a.t(0, "query");
    const at::Tensor& k = a.t(1, "key");
    const at::Tensor& v = a.t(2, "value");
    CheckQKV(a, q, k, v);
    auto mask = a.optT(3, "mask");
    double dropout = a.has(4) ? a.f64(4, "dropout") : 0.0;
    bool causal = a.optB(5, "isCausal", false);
    auto scale = a.optF64(6, "scale");
#if DINOV3_TORCH_AT_LEAST(2, 1)
    // Shapes only on meta (2.x's CPU kernel choice has no meta implementation): [..., Tq, dv].
    if (q.is_meta()) {
      std::vector<int64_t> shape(q.sizes().begin(), q.sizes().end());
      shape.back() = v.size(-1);
      return a.ret(at::empty(shape, q.options()));
    }
    return a.ret(at::scaled_dot_product_attention(q, k, v, mask, dropout, causal, scale));
#else
    return a.ret(SdpaMath(q, k, v, mask, dropout, causal, scale ? *scale : 1.0 / std::sqrt(double(q.size(-1)))));
#endif
  });
  // sdpaMath: the reference composition (used by tests and by the CPU fallback).
  Def(env, e, "sdpaMath", [](Args& a) {
    const at::Tensor& q = a.t(0, "query");
    const at::Tensor& k = a.t(1, "key");
    const at::Tensor& v = a.t(2, "value");
    CheckQKV(a, q, k, v);
    auto scale = a.optF64(6, "scale");
    double dropout = a.has(4) ? a.f64(4, "dropout") : 0.0;
    return a.ret(SdpaMath(q, k, v, a.optT(3, "mask"), dropout, a.optB(5, "isCausal", false),
                          scale ? *scale : 1.0 / std::sqrt(double(q.size(-1)))));
  });
  // interpolate(x [N,C,H,W], size [h, w], mode, alignCorners, antialias)
  Def(env, e, "interpolate", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (x.dim() != 4) a.valueError("expected a 4-D input [N, C, H, W], received " + Describe(x));
    std::vector<int64_t> size = a.ints(1, "size");
    if (size.size() != 2 || size[0] <= 0 || size[1] <= 0) a.valueError("size must be [height, width] with positive sizes");
    std::string mode = a.str(2, "mode");
    bool ac = a.optB(3, "alignCorners", false);
    bool aa = a.optB(4, "antialias", false);
    // 16-bit CPU: 1.13 has no antialias kernels and its plain bicubic kernel accumulates in bfloat16 (errors of
    // ~10 ulps); resample in float32 and round once.
    if ((mode == "bilinear" || mode == "bicubic") && IsCpu16(x)) {
      at::Tensor xf = x.to(at::kFloat);
      at::Tensor y;
      if (mode == "bilinear")
        y = aa ? at::_upsample_bilinear2d_aa(xf, size, ac) : at::upsample_bilinear2d(xf, size, ac);
      else
        y = aa ? at::_upsample_bicubic2d_aa(xf, size, ac) : at::upsample_bicubic2d(xf, size, ac);
      return a.ret(y.to(x.scalar_type()));
    }
    if (mode == "bilinear") return a.ret(aa ? at::_upsample_bilinear2d_aa(x, size, ac) : at::upsample_bilinear2d(x, size, ac));
    if (mode == "bicubic") return a.ret(aa ? at::_upsample_bicubic2d_aa(x, size, ac) : at::upsample_bicubic2d(x, size, ac));
    if (mode == "nearest") return a.ret(at::upsample_nearest2d(x, size));
    a.valueError("mode must be \"bilinear\", \"bicubic\" or \"nearest\", received \"" + mode + "\"");
  });
  // pad(x, pads [left, right, top, bottom, ...], mode, value)
  Def(env, e, "pad", [](Args& a) {
    std::string mode = a.has(2) ? a.str(2, "mode") : "constant";
    if (mode != "constant" && mode != "reflect" && mode != "replicate" && mode != "circular")
      a.valueError("mode must be constant|reflect|replicate|circular, received \"" + mode + "\"");
    const at::Tensor& x = a.t(0, "input");
    if (mode != "constant" && IsCpu16(x))  // no 16-bit CPU reflection/replication kernels in 1.13
      return a.ret(at::pad(x.to(at::kFloat), a.ints(1, "pad"), mode, c10::nullopt).to(x.scalar_type()));
    return a.ret(at::pad(x, a.ints(1, "pad"), mode, a.optF64(3, "value")));
  });
  // avgPool2d(x, kernel, stride?, padding, ceilMode, countIncludePad, divisorOverride?)
  Def(env, e, "avgPool2d", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    CheckImage(a, x);
    std::vector<int64_t> k = Pair(a, 1, "kernelSize", 1);
    std::vector<int64_t> s = a.has(2) ? Pair(a, 2, "stride", 1) : k;
    std::vector<int64_t> p = a.has(3) ? Pair(a, 3, "padding", 0) : std::vector<int64_t>{0, 0};
    if (p[0] * 2 > k[0] || p[1] * 2 > k[1])
      a.valueError("padding [" + c10::Join(", ", p) + "] must be at most half the kernel size [" + c10::Join(", ", k) +
                   "]");
    return a.ret(at::avg_pool2d(x, k, s, p, a.optB(4, "ceilMode", false), a.optB(5, "countIncludePad", true),
                                a.optI64(6, "divisorOverride")));
  });
  // adaptiveAvgPool2d(x, outputSize [h, w])
  Def(env, e, "adaptiveAvgPool2d", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    CheckImage(a, x);
    return a.ret(at::adaptive_avg_pool2d(x, Pair(a, 1, "outputSize", 1)));
  });
  // normalize(x, p, dim, eps) = x / max(‖x‖_p, eps), as torch.nn.functional.normalize.
  Def(env, e, "normalize", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    at::Tensor n = at::norm(x, a.scalar(1, "p"), {DimArg(a, 2, x)}, true).clamp_min(a.f64(3, "eps")).expand_as(x);
    return a.ret(x / n);
  });
  // crossEntropy(logits, target (class indices int64 or probabilities), reduction, labelSmoothing, ignoreIndex)
  Def(env, e, "crossEntropy", [](Args& a) {
    return a.ret(at::cross_entropy_loss(a.t(0, "input"), a.t(1, "target"), c10::nullopt, Reduction(a, 2),
                                        a.has(4) ? a.i64(4, "ignoreIndex") : -100, a.has(3) ? a.f64(3, "labelSmoothing") : 0.0));
  });
  Def(env, e, "mseLoss", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& t = a.t(1, "target");
    if (IsCpu16(x) && t.scalar_type() == x.scalar_type())  // no 16-bit CPU kernel in 1.13
      return a.ret(at::mse_loss(x.to(at::kFloat), t.to(at::kFloat), Reduction(a, 2)).to(x.scalar_type()));
    return a.ret(at::mse_loss(x, t, Reduction(a, 2)));
  });
  // pairwiseDistance(x1, x2, p, eps, keepdim) = ‖x1 − x2 + eps‖_p over the last dim.
  Def(env, e, "pairwiseDistance", [](Args& a) {
    return a.ret(at::pairwise_distance(a.t(0, "x1"), a.t(1, "x2"), a.has(2) ? a.f64(2, "p") : 2.0,
                                       a.has(3) ? a.f64(3, "eps") : 1e-6, a.optB(4, "keepdim", false)));
  });
}

}  // namespace dinov3
