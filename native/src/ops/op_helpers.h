// Helpers shared by the op families: dim arguments (one wording for every out-of-range dim:
//   "<op>: dim 5 is out of range for float32 [2, 3] (expected -2..1)"), index-tensor checks, number formatting, and
// the float32 detour for CPU kernels that libtorch lacks for 16-bit floats.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "common.h"

namespace dinov3 {

// A number as JS prints it for ordinary values ("-1", "0.5", "1e-06"), for messages.
inline std::string FormatNumber(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Checks `d` against a tensor of `t.dim() + extra` dims (0-d tensors accept -1 and 0, as torch does).
inline int64_t CheckDim(const Args& a, int64_t d, const at::Tensor& t, const char* name = "dim", int64_t extra = 0) {
  int64_t n = std::max<int64_t>(t.dim() + extra, 1);
  if (d < -n || d >= n)
    a.valueError(std::string(name) + " " + std::to_string(d) + " is out of range for " + Describe(t) + " (expected " +
                 std::to_string(-n) + ".." + std::to_string(n - 1) + ")");
  return d;
}

// Reads the integer dim argument `i` and checks it.
inline int64_t DimArg(const Args& a, size_t i, const at::Tensor& t, const char* name = "dim", int64_t extra = 0) {
  return CheckDim(a, a.i64(i, name), t, name, extra);
}

// Reads a dim or an array of dims (argument `i`) and checks each.
inline std::vector<int64_t> DimsArg(const Args& a, size_t i, const at::Tensor& t, const char* name = "dim") {
  std::vector<int64_t> ds = a.ints(i, name);
  for (int64_t d : ds) CheckDim(a, d, t, name);
  return ds;
}

// Index tensors must hold integers: int64 (or int32 where libtorch accepts it).
inline void CheckIndexTensor(const Args& a, size_t i, const char* name, bool allowInt32) {
  at::ScalarType s = a.t(i, name).scalar_type();
  if (s == at::kLong || (allowInt32 && s == at::kInt)) return;
  a.typeError(i, name, allowInt32 ? "an int64 or int32 Tensor" : "an int64 Tensor");
}

// True for a CPU bfloat16/float16 tensor: some libtorch 1.13 CPU kernels (prod, mse_loss, reflection/replication
// padding, antialiased resampling, cdist) are missing for these dtypes; the ops then compute in float32 and cast the
// result back (both casts are differentiable, so autograd still works).
inline bool IsCpu16(const at::Tensor& t) {
  return t.is_cpu() && (t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf);
}

}  // namespace dinov3
