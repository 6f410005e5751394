// View and layout ops: reshape/view/permute/transpose/flatten/unflatten/squeeze/unsqueeze/narrow/slice/select,
// expand/repeat/roll/flip, t/tril/triu/diag/diagonal, and the list ops cat/stack/split/chunk/unbind.
#include "common.h"
#include "ops/op_helpers.h"

namespace dinov3 {

namespace {

int64_t Dim(const Args& a, size_t i, const at::Tensor& t, const char* name = "dim", int64_t extra = 0) {
  return DimArg(a, i, t, name, extra);
}

// The list ops check their dim against the first tensor (cat) or one more dim (stack).
int64_t ListDim(const Args& a, const std::vector<at::Tensor>& ts, int64_t extra) {
  return a.has(1) ? CheckDim(a, a.i64(1, "dim"), ts[0], "dim", extra) : 0;
}

// tril/triu/diag/diagonal need matrices (the last two dims).
void CheckMatrix(const Args& a, const at::Tensor& x) {
  if (x.dim() < 2) a.valueError("expected a tensor with at least 2 dimensions, received " + Describe(x));
}

// The target shape of reshape/view, checked here so that every libtorch version reports a bad one the same way (1.13
// throws a plain std::runtime_error, 2.x a c10::Error): TorchError ERR_TORCH with libtorch's wording.
std::vector<int64_t> TargetShape(const Args& a, const at::Tensor& x) {
  std::vector<int64_t> shape = a.ints(1, "shape");
  auto fail = [&](const std::string& what) { throw MakeError(a.env(), ErrKind::Torch, std::string(a.op()) + ": " + what, "ERR_TORCH"); };
  int64_t known = 1;
  int inferred = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (inferred >= 0) fail("only one dimension can be inferred");
      inferred = static_cast<int>(i);
    } else if (shape[i] < 0) {
      fail("invalid shape dimension " + std::to_string(shape[i]));
    } else {
      known *= shape[i];
    }
  }
  int64_t numel = x.numel();
  const std::string s = FormatInts(shape);
  if (numel == known || (inferred >= 0 && known > 0 && numel % known == 0)) {
    if (inferred >= 0 && known == 0)
      fail("cannot reshape tensor of 0 elements into shape " + s +
           " because the unspecified dimension size -1 can be any value and is ambiguous");
    return shape;
  }
  fail("shape '" + s + "' is invalid for input of size " + std::to_string(numel));
  return shape;
}

}  // namespace

void InitShape(Napi::Env env, Napi::Object e) {
  Def(env, e, "reshape", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(x.reshape(TargetShape(a, x)));
  });
  Def(env, e, "view", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(x.view(TargetShape(a, x)));
  });
  Def(env, e, "permute", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    std::vector<int64_t> p = a.ints(1, "dims");
    if (static_cast<int64_t>(p.size()) != x.dim())
      a.valueError("dims has " + std::to_string(p.size()) + " entries but the input is " + Describe(x));
    return a.ret(x.permute(p));
  });
  Def(env, e, "transpose", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(x.transpose(Dim(a, 1, x, "dim0"), Dim(a, 2, x, "dim1")));
  });
  Def(env, e, "flatten", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t s = a.has(1) ? Dim(a, 1, x, "startDim") : 0;
    int64_t t = a.has(2) ? Dim(a, 2, x, "endDim") : -1;
    return a.ret(x.flatten(s, t));
  });
  Def(env, e, "unflatten", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(x.unflatten(Dim(a, 1, x), a.ints(2, "sizes")));
  });
  Def(env, e, "squeeze", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (!a.has(1)) return a.ret(x.squeeze());
    return a.ret(x.squeeze(Dim(a, 1, x)));
  });
  Def(env, e, "unsqueeze", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(x.unsqueeze(Dim(a, 1, x, "dim", 1)));
  });
  Def(env, e, "narrow", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t d = Dim(a, 1, x);
    int64_t start = a.i64(2, "start"), len = a.i64(3, "length");
    int64_t n = x.size(d);
    if (start < 0) start += n;
    if (start < 0 || len < 0 || start + len > n)
      a.valueError("start " + std::to_string(start) + " + length " + std::to_string(len) + " exceeds size " +
                   std::to_string(n) + " of dim " + std::to_string(d) + " (" + Describe(x) + ")");
    return a.ret(x.narrow(d, start, len));
  });
  // slice(x, dim, start?, end?, step)
  Def(env, e, "slice", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t step = a.has(4) ? a.i64(4, "step") : 1;
    if (step <= 0) a.valueError("step must be positive, received " + std::to_string(step));
    return a.ret(x.slice(Dim(a, 1, x), a.optI64(2, "start"), a.optI64(3, "end"), step));
  });
  Def(env, e, "select", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t d = Dim(a, 1, x);
    int64_t i = a.i64(2, "index");
    int64_t n = x.size(d);
    if (i < -n || i >= n)
      a.valueError("index " + std::to_string(i) + " is out of range for dim " + std::to_string(d) + " of " +
                   Describe(x));
    return a.ret(x.select(d, i));
  });
  Def(env, e, "expand", [](Args& a) { return a.ret(a.t(0, "input").expand(a.ints(1, "shape"))); });
  Def(env, e, "repeat", [](Args& a) { return a.ret(a.t(0, "input").repeat(a.ints(1, "repeats"))); });
  Def(env, e, "flip", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::flip(x, DimsArg(a, 1, x, "dims")));
  });
  // t(x): transpose of a matrix; 0-D and 1-D tensors are returned as they are (as torch.t).
  Def(env, e, "t", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (x.dim() > 2) a.valueError("expected a tensor with at most 2 dimensions, received " + Describe(x));
    return a.ret(x.t());
  });
  // tril/triu(x, diagonal): the lower/upper triangle of the last two dims.
  Def(env, e, "tril", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    CheckMatrix(a, x);
    return a.ret(at::tril(x, a.has(1) ? a.i64(1, "diagonal") : 0));
  });
  Def(env, e, "triu", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    CheckMatrix(a, x);
    return a.ret(at::triu(x, a.has(1) ? a.i64(1, "diagonal") : 0));
  });
  // diag(x, diagonal): a 1-D vector → a square matrix with it on the diagonal; a 2-D matrix → its diagonal (a copy).
  Def(env, e, "diag", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (x.dim() != 1 && x.dim() != 2) a.valueError("expected a 1-D or 2-D tensor, received " + Describe(x));
    return a.ret(at::diag(x, a.has(1) ? a.i64(1, "diagonal") : 0));
  });
  // diagonal(x, offset, dim1, dim2): a view of the diagonal of the (dim1, dim2) planes, appended as the last dim.
  Def(env, e, "diagonal", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    CheckMatrix(a, x);
    int64_t d1 = a.has(2) ? Dim(a, 2, x, "dim1") : 0, d2 = a.has(3) ? Dim(a, 3, x, "dim2") : 1;
    if ((d1 + x.dim()) % x.dim() == (d2 + x.dim()) % x.dim())
      a.valueError("dim1 and dim2 must differ, received " + std::to_string(d1) + " and " + std::to_string(d2));
    return a.ret(at::diagonal(x, a.has(1) ? a.i64(1, "offset") : 0, d1, d2));
  });
  Def(env, e, "roll", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    std::vector<int64_t> shifts = a.ints(1, "shifts"), dims = DimsArg(a, 2, x, "dims");
    if (shifts.size() != dims.size())
      a.valueError("shifts and dims must have the same length, received " + std::to_string(shifts.size()) + " and " +
                   std::to_string(dims.size()));
    return a.ret(at::roll(x, shifts, dims));
  });
  Def(env, e, "movedim", [](Args& a) { return a.ret(at::movedim(a.t(0, "input"), a.ints(1, "source"), a.ints(2, "destination"))); });
  Def(env, e, "cat", [](Args& a) {
    auto ts = a.tensors(0, "tensors");
    if (ts.empty()) a.valueError("expected a non-empty list of tensors");
    return a.ret(at::cat(ts, ListDim(a, ts, 0)));
  });
  Def(env, e, "stack", [](Args& a) {
    auto ts = a.tensors(0, "tensors");
    if (ts.empty()) a.valueError("expected a non-empty list of tensors");
    return a.ret(at::stack(ts, ListDim(a, ts, 1)));
  });
  // split(x, sizeOrSizes, dim)
  Def(env, e, "split", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t d = a.has(2) ? Dim(a, 2, x) : 0;
    if (a.raw(1).IsNumber()) {
      int64_t s = a.i64(1, "splitSize");
      if (s <= 0) a.valueError("splitSize must be positive, received " + std::to_string(s));
      return a.ret(x.split(s, d));
    }
    return a.ret(x.split_with_sizes(a.ints(1, "splitSizes"), d));
  });
  Def(env, e, "chunk", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t c = a.i64(1, "chunks");
    if (c <= 0) a.valueError("chunks must be positive, received " + std::to_string(c));
    return a.ret(x.chunk(c, a.has(2) ? Dim(a, 2, x) : 0));
  });
  Def(env, e, "unbind", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(x.unbind(a.has(1) ? Dim(a, 1, x) : 0));
  });
}

}  // namespace dinov3
