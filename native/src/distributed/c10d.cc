// Process groups over libtorch c10d: TCPStore rendezvous, Gloo (CPU) or NCCL (CUDA) collectives returning work
// handles (waited synchronously or through a Promise resolved off the JS thread), a gradient-carrying all-gather,
// and a store heartbeat that lets the surviving ranks name a rank that died or hangs.
//
// Gloo is compiled when its headers are present (Debian: libgloo-dev; libtorch_cpu.so exports the c10d Gloo classes);
// NCCL when the build has CUDA and CMake found nccl.h (DINOV3_WITH_NCCL). libtorch 1.13 derives the backends from
// c10d::ProcessGroup, 2.x from c10d::Backend; everything here goes through that common base.
#include "common.h"
#include "instance_data.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#if __has_include(<gloo/algorithm.h>)
#define DINOV3_WITH_GLOO 1
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#if defined(DINOV3_WITH_CUDA) && defined(DINOV3_WITH_NCCL)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <atomic>
#include <cstdlib>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace dinov3 {

namespace {

#if DINOV3_TORCH_AT_LEAST(2, 0)
using PgBase = ::c10d::Backend;
#else
using PgBase = ::c10d::ProcessGroup;
#endif
using ms = std::chrono::milliseconds;

const napi_type_tag kGroupTag = {0x6a1d3e7c925f40b8ULL, 0xc43b1f08e7a6d295ULL};
const napi_type_tag kWorkTag = {0x19f7c2a64e03b5d1ULL, 0x8e2d6b4a1c09f37eULL};

// One process group: its store (rendezvous, a prefix of the TCPStore), the backend, and the heartbeat thread that
// writes "hb/<rank>" (a counter) into the store through a second store connection of its own.
struct Group {
  int rank = 0;
  int size = 1;
  std::string backend;
  std::string host;
  int port = 0;
  ms timeout{30000};
  c10::intrusive_ptr<::c10d::Store> store;
  c10::intrusive_ptr<::c10d::Store> hbStore;
  c10::intrusive_ptr<PgBase> pg;
  int64_t id = 0;

  std::thread hb;
  std::mutex hbMutex;
  std::condition_variable hbCv;
  bool hbStop = false;
  bool hbExited = false;
  ms hbInterval{500};

  void StartHeartbeat() {
    if (size == 1 || !hbStore) return;
    hb = std::thread([this] {
      const std::string key = "hb/" + std::to_string(rank);
      int64_t n = 0;
      std::unique_lock<std::mutex> lock(hbMutex);
      while (!hbStop) {
        lock.unlock();
        try {
          std::string v = std::to_string(++n);
          hbStore->set(key, std::vector<uint8_t>(v.begin(), v.end()));
        } catch (...) {
          // The store is gone (its host exited): the collectives will fail and the probe will say so.
          lock.lock();
          break;
        }
        lock.lock();
        hbCv.wait_for(lock, hbInterval, [this] { return hbStop; });
      }
      hbExited = true;
      hbCv.notify_all();
    });
  }
  // At process exit: asks the thread to stop and gives it a moment, without joining (a store that hangs must not
  // hold the exit up), so that it is not inside the store while libtorch's statics are destroyed.
  void StopHeartbeatAtExit() {
    std::unique_lock<std::mutex> lock(hbMutex);
    hbStop = true;
    hbCv.notify_all();
    if (hb.joinable()) hbCv.wait_for(lock, ms(1000), [this] { return hbExited; });
  }
  void StopHeartbeat() {
    {
      std::lock_guard<std::mutex> lock(hbMutex);
      hbStop = true;
    }
    hbCv.notify_all();
    if (hb.joinable()) hb.join();
  }
  ~Group() { StopHeartbeat(); }
};

// Groups by id, for the autograd function (whose saved state can only hold plain values).
std::mutex gRegistryMutex;
std::map<int64_t, std::weak_ptr<Group>> gRegistry;
std::atomic<int64_t> gNextId{1};

void StopAllHeartbeatsAtExit() {
  std::vector<std::shared_ptr<Group>> live;
  {
    std::lock_guard<std::mutex> lock(gRegistryMutex);
    for (auto& [id, w] : gRegistry)
      if (auto g = w.lock()) live.push_back(std::move(g));
  }
  for (auto& g : live) g->StopHeartbeatAtExit();
  // The groups (and their threads) are deliberately leaked: the process is ending.
  for (auto& g : live) new std::shared_ptr<Group>(std::move(g));
}

std::shared_ptr<Group> FindGroup(int64_t id) {
  std::lock_guard<std::mutex> lock(gRegistryMutex);
  auto it = gRegistry.find(id);
  return it == gRegistry.end() ? nullptr : it->second.lock();
}

// A collective in flight: the backend's work plus what must run once it has finished (the local part of an
// emulated collective: the division of an average, the sum of a reduce-scatter done as an all-to-all).
struct Pending {
  c10::intrusive_ptr<::c10d::Work> work;
  std::function<void()> post;
  std::string what;  // "allReduce(sum) float32 [4]", for messages
  bool nccl = false;
  std::mutex m;  // held by the waiter (one at a time); `finished` can be read without it
  std::atomic<bool> finished{false};
  std::exception_ptr error;

  void Wait(ms timeout) {
    std::lock_guard<std::mutex> lock(m);
    if (finished) {
      if (error) std::rethrow_exception(error);
      return;
    }
    try {
      work->wait(timeout);
      if (post) post();
      post = nullptr;
    } catch (...) {
      error = std::current_exception();
      finished = true;
      throw;
    }
    finished = true;
  }
  // Never blocks (a waiter may hold `m` for the whole collective). A finished work whose local part has not run yet
  // counts as not completed.
  bool Completed() { return finished.load() || (!post && work->isCompleted()); }
};

std::shared_ptr<Group>& GroupArg(const Args& a, size_t i) {
  bool ok = false;
  if (i >= a.size() || !a.raw(i).IsExternal() || napi_check_object_type_tag(a.env(), a.raw(i), &kGroupTag, &ok) != napi_ok ||
      !ok)
    a.typeError(i, "group", "a native process group");
  auto& g = *a.raw(i).As<Napi::External<std::shared_ptr<Group>>>().Data();
  if (!g || !g->pg) throw Napi::Error(MakeError(a.env(), ErrKind::Torch, std::string(a.op()) + ": the process group has been destroyed", "ERR_DIST_BACKEND"));
  return g;
}

std::shared_ptr<Pending>& WorkArg(const Args& a, size_t i) {
  bool ok = false;
  if (i >= a.size() || !a.raw(i).IsExternal() || napi_check_object_type_tag(a.env(), a.raw(i), &kWorkTag, &ok) != napi_ok ||
      !ok)
    a.typeError(i, "work", "a native work handle");
  return *a.raw(i).As<Napi::External<std::shared_ptr<Pending>>>().Data();
}

Napi::Value WrapPending(Napi::Env env, std::shared_ptr<Pending> p) {
  auto ext = Napi::External<std::shared_ptr<Pending>>::New(env, new std::shared_ptr<Pending>(std::move(p)),
                                                            [](Napi::Env, std::shared_ptr<Pending>* q) { delete q; });
  napi_type_tag_object(env, ext, &kWorkTag);
  return ext;
}

// The error code of a failed collective or rendezvous, from the backend's message.
const char* CodeOf(const std::string& msg, const char* dflt) {
  if (msg.find("imed out") != std::string::npos || msg.find("imeout") != std::string::npos) return "ERR_DIST_TIMEOUT";
  return dflt;
}

std::string MessageOf(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const c10::Error& x) {
    return x.what_without_backtrace();
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown native exception";
  }
}

// Gloo and NCCL take contiguous dense tensors on the group's device.
void CheckTensor(const Args& a, const at::Tensor& t, const char* name, const Group& g) {
  if (!t.is_contiguous()) a.valueError(std::string("\"") + name + "\" must be contiguous, received a strided " + Describe(t));
  bool cuda = t.is_cuda();
  if (g.backend == "gloo" && cuda) a.valueError(std::string("the gloo backend takes CPU tensors, received \"") + name + "\" " + Describe(t));
  if (g.backend == "nccl" && !cuda) a.valueError(std::string("the nccl backend takes CUDA tensors, received \"") + name + "\" " + Describe(t));
}

c10d::ReduceOp ParseOp(const Args& a, size_t i) {
  std::string op = a.str(i, "op");
  if (op == "sum") return c10d::ReduceOp::SUM;
  if (op == "max") return c10d::ReduceOp::MAX;
  if (op == "min") return c10d::ReduceOp::MIN;
  if (op == "product") return c10d::ReduceOp::PRODUCT;
  a.valueError("op must be one of \"sum\", \"max\", \"min\", \"product\", received \"" + op + "\"");
}

// ---- collectives on a group (shared by the JS entry points and the autograd function) ----

std::shared_ptr<Pending> IssueAllGatherInto(Group& g, at::Tensor out, at::Tensor in) {
  auto p = std::make_shared<Pending>();
  p->nccl = g.backend == "nccl";
  if (p->nccl) {
    p->work = g.pg->_allgather_base(out, in);
  } else {
    // Gloo has no _allgather_base in libtorch 1.13: gather into the W row blocks of `out`.
    std::vector<std::vector<at::Tensor>> outs(1);
    for (int r = 0; r < g.size; ++r) outs[0].push_back(out.narrow(0, r * in.size(0), in.size(0)));
    std::vector<at::Tensor> ins{in};
    p->work = g.pg->allgather(outs, ins);
  }
  return p;
}

// out[i] = Σ_r in_r[rank·n + i] (sum over ranks of this rank's block). NCCL has it natively; Gloo (1.13) does not:
// an all-to-all brings every rank's block for this rank here, then they are summed locally in rank order.
std::shared_ptr<Pending> IssueReduceScatterSum(Group& g, at::Tensor out, at::Tensor in) {
  auto p = std::make_shared<Pending>();
  p->nccl = g.backend == "nccl";
  if (p->nccl) {
    p->work = g.pg->_reduce_scatter_base(out, in);
  } else {
    at::Tensor recv = at::empty_like(in);
    std::vector<int64_t> counts;  // equal splits
    p->work = g.pg->alltoall_base(recv, in, counts, counts);
    int64_t n = out.size(0);
    int size = g.size;
    p->post = [recv, out, n, size]() mutable {
      at::NoGradGuard ng;
      at::Tensor acc = recv.narrow(0, 0, n).clone();
      for (int r = 1; r < size; ++r) acc.add_(recv.narrow(0, r * n, n));
      out.copy_(acc);
    };
  }
  return p;
}

// all_gather whose backward hands each rank the sum over ranks of the gradient of its block (as
// torch.distributed.nn.functional.all_gather, used by the official distributed KoLeo).
struct AllGatherFn : public torch::autograd::Function<AllGatherFn> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor x, int64_t groupId) {
    auto g = FindGroup(groupId);
    TORCH_CHECK(g && g->pg, "allGather: the process group has been destroyed");
    ctx->saved_data["group"] = groupId;
    at::Tensor in = x.contiguous();
    std::vector<int64_t> shape = in.sizes().vec();
    shape[0] *= g->size;
    at::Tensor out = at::empty(shape, in.options());
    IssueAllGatherInto(*g, out, in)->Wait(g->timeout);
    return {out};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto g = FindGroup(ctx->saved_data["group"].toInt());
    TORCH_CHECK(g && g->pg, "allGather backward: the process group has been destroyed");
    at::Tensor go = grads[0].contiguous();
    std::vector<int64_t> shape = go.sizes().vec();
    shape[0] /= g->size;
    at::Tensor gi = at::empty(shape, go.options());
    IssueReduceScatterSum(*g, gi, go)->Wait(g->timeout);
    return {gi, at::Tensor()};
  }
};

// ---- rendezvous (off the JS thread: connecting waits for the peers) ----

struct CreateOptions {
  std::string host;
  int port = 0;
  int rank = 0;
  int size = 1;
  bool isServer = false;
  std::string backend = "gloo";
  std::string prefix;
  std::string deviceHostname;
  std::string deviceInterface;
  ms timeout{30000};
  ms heartbeat{500};
  int threads = 2;
};

class CreateWorker : public Napi::AsyncWorker {
 public:
  CreateWorker(Napi::Env env, CreateOptions o)
      : Napi::AsyncWorker(env, "dinov3.distributed.create"), deferred_(Napi::Promise::Deferred::New(env)), o_(std::move(o)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    auto g = std::make_shared<Group>();
    g->rank = o_.rank;
    g->size = o_.size;
    g->backend = o_.backend;
    g->host = o_.host;
    g->timeout = o_.timeout;
    g->hbInterval = o_.heartbeat;
    const std::string where = o_.host + ":" + std::to_string(o_.port);
    try {
      ::c10d::TCPStoreOptions so;
      so.port = static_cast<std::uint16_t>(o_.port);
      so.isServer = o_.isServer;
      so.numWorkers = static_cast<std::size_t>(o_.size);
      so.waitWorkers = false;
      so.timeout = o_.timeout;
      auto tcp = c10::make_intrusive<::c10d::TCPStore>(o_.host, so);
      g->port = tcp->getPort();
      g->store = c10::make_intrusive<::c10d::PrefixStore>(o_.prefix, tcp);
      if (o_.size > 1) {
        ::c10d::TCPStoreOptions ho = so;
        ho.isServer = false;
        ho.port = tcp->getPort();
        g->hbStore = c10::make_intrusive<::c10d::PrefixStore>(o_.prefix, c10::make_intrusive<::c10d::TCPStore>(o_.host, ho));
      }
    } catch (...) {
      std::string m = MessageOf(std::current_exception());
      code_ = "ERR_DIST_STORE";
      SetError("rank " + std::to_string(o_.rank) + " could not " + (o_.isServer ? "open" : "reach") +
               " the rendezvous store at " + where + " within " + std::to_string(o_.timeout.count()) +
               " ms (is rank 0 running, and MASTER_ADDR/MASTER_PORT the same on every rank?): " + m);
      return;
    }
    try {
      if (o_.backend == "gloo") {
#ifdef DINOV3_WITH_GLOO
        auto opts = ::c10d::ProcessGroupGloo::Options::create(o_.timeout);
        if (!o_.deviceInterface.empty())
          opts->devices.push_back(::c10d::ProcessGroupGloo::createDeviceForInterface(o_.deviceInterface));
        else if (!o_.deviceHostname.empty())
          opts->devices.push_back(::c10d::ProcessGroupGloo::createDeviceForHostname(o_.deviceHostname));
        else
          opts->devices.push_back(::c10d::ProcessGroupGloo::createDefaultDevice());
        opts->threads = o_.threads;
        g->pg = c10::make_intrusive<::c10d::ProcessGroupGloo>(g->store, o_.rank, o_.size, opts);
#else
        code_ = "ERR_DIST_BACKEND";
        SetError("the gloo backend is not compiled into this build (libtorch " TORCH_VERSION " without gloo headers)");
        return;
#endif
      } else if (o_.backend == "nccl") {
#if defined(DINOV3_WITH_CUDA) && defined(DINOV3_WITH_NCCL)
        auto opts = ::c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = o_.timeout;
        g->pg = c10::make_intrusive<::c10d::ProcessGroupNCCL>(g->store, o_.rank, o_.size, opts);
#else
        code_ = "ERR_DIST_BACKEND";
        SetError("the nccl backend is not compiled into this build (it needs a CUDA libtorch and nccl.h)");
        return;
#endif
      } else {
        code_ = "ERR_DIST_BACKEND";
        SetError("unknown backend \"" + o_.backend + "\" (expected \"gloo\" or \"nccl\")");
        return;
      }
    } catch (...) {
      std::string m = MessageOf(std::current_exception());
      code_ = CodeOf(m, "ERR_DIST_NETWORK");
      SetError("rank " + std::to_string(o_.rank) + " of " + std::to_string(o_.size) + ": the " + o_.backend +
               " rendezvous through " + where + " did not complete within " + std::to_string(o_.timeout.count()) +
               " ms (every rank must join with the same world size): " + m);
      return;
    }
    static std::once_flag atExit;
    std::call_once(atExit, [] { std::atexit(StopAllHeartbeatsAtExit); });
    g->id = gNextId++;
    {
      std::lock_guard<std::mutex> lock(gRegistryMutex);
      gRegistry[g->id] = g;
    }
    g->StartHeartbeat();
    group_ = std::move(g);
  }
  void OnOK() override {
    Napi::Env env = Env();
    auto ext = Napi::External<std::shared_ptr<Group>>::New(env, new std::shared_ptr<Group>(std::move(group_)),
                                                           [](Napi::Env, std::shared_ptr<Group>* p) { delete p; });
    napi_type_tag_object(env, ext, &kGroupTag);
    deferred_.Resolve(ext);
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(MakeError(Env(), ErrKind::Torch, "distributed.init: " + e.Message(), code_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  CreateOptions o_;
  std::shared_ptr<Group> group_;
  const char* code_ = "ERR_DIST_NETWORK";
};

// Waits for a collective on a libuv worker thread and settles a Promise.
class WaitWorker : public Napi::AsyncWorker {
 public:
  WaitWorker(Napi::Env env, std::shared_ptr<Pending> p, ms timeout)
      : Napi::AsyncWorker(env, "dinov3.distributed.wait"), deferred_(Napi::Promise::Deferred::New(env)), p_(std::move(p)), timeout_(timeout) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      p_->Wait(timeout_);
    } catch (...) {
      std::string m = MessageOf(std::current_exception());
      code_ = CodeOf(m, "ERR_DIST_NETWORK");
      SetError(m);
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(MakeError(Env(), ErrKind::Torch, p_->what + ": " + e.Message(), code_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Pending> p_;
  ms timeout_;
  const char* code_ = "ERR_DIST_NETWORK";
};

// The ranks whose heartbeat did not advance during `window` (this rank excluded), and whether each had closed its
// group on purpose ("exit/<rank>" set by destroy). Throws when the store itself cannot be reached.
struct ProbeResult {
  std::vector<int> silent;
  std::vector<int> closed;
  std::string storeError;
};

ProbeResult Probe(Group& g, ms window) {
  ProbeResult res;
  auto read = [&]() {
    std::vector<std::string> counts(g.size);
    for (int r = 0; r < g.size; ++r) {
      std::string k = "hb/" + std::to_string(r);
      if (g.hbStore->check({k})) {
        auto v = g.hbStore->get(k);
        counts[r] = std::string(v.begin(), v.end());
      }
    }
    return counts;
  };
  try {
    if (!g.hbStore) return res;
    auto before = read();
    std::this_thread::sleep_for(window);
    auto after = read();
    for (int r = 0; r < g.size; ++r) {
      if (r == g.rank || (!after[r].empty() && after[r] != before[r])) continue;
      res.silent.push_back(r);
      if (g.hbStore->check({"exit/" + std::to_string(r)})) res.closed.push_back(r);
    }
  } catch (...) {
    res.storeError = MessageOf(std::current_exception());
  }
  return res;
}

Napi::Value ProbeToJs(Napi::Env env, const ProbeResult& r) {
  Napi::Object o = Napi::Object::New(env);
  auto arr = [&](const std::vector<int>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, v[i]));
    return a;
  };
  o.Set("silent", arr(r.silent));
  o.Set("closed", arr(r.closed));
  o.Set("storeError", r.storeError.empty() ? env.Null() : Napi::String::New(env, r.storeError).As<Napi::Value>());
  return o;
}

class ProbeWorker : public Napi::AsyncWorker {
 public:
  ProbeWorker(Napi::Env env, std::shared_ptr<Group> g, ms window)
      : Napi::AsyncWorker(env, "dinov3.distributed.probe"), deferred_(Napi::Promise::Deferred::New(env)), g_(std::move(g)), window_(window) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override { r_ = Probe(*g_, window_); }
  void OnOK() override { deferred_.Resolve(ProbeToJs(Env(), r_)); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Group> g_;
  ms window_;
  ProbeResult r_;
};

ms TimeoutArg(const Args& a, size_t i, const char* name) {
  double v = a.f64(i, name);
  if (!(v > 0) || v > 1e12) a.valueError(std::string(name) + " must be a positive number of milliseconds, received " + std::to_string(v));
  return ms(static_cast<int64_t>(v));
}


// ---- FSDP flat units (src/distributed/fsdp.ts): gather, release and gradient reduce-scatter of one unit's flat
// parameters, and the autograd hooks that run them during backward: on a unit's outputs (the gradient reaches the
// unit: gather its parameters again under FULL_SHARD, prefetch the unit before it) and on its inputs (the unit's
// backward is done, its parameters' gradients are complete: reduce-scatter them and free the parameters). The hooks
// run wherever the autograd engine runs the node (the JS thread for CPU graphs, a device thread for CUDA), so they
// never call into JS.
const napi_type_tag kUnitTag = {0x5c2e8a71f94b06d3ULL, 0x2b9f4d6e18c07a35ULL};

struct FsdpUnit {
  std::shared_ptr<Group> g;
  std::vector<at::Tensor> params;  // the module's parameters (the same TensorImpls as the JS handles)
  std::vector<int64_t> offsets, numels;
  std::vector<std::vector<int64_t>> shapes;
  at::Tensor shard, gradShard, empty;
  int64_t padded = 0;
  int64_t numel = 0;
  int64_t id = 0;
  at::Tensor full, fullInFlight;
  std::shared_ptr<Pending> gathering;
  std::shared_ptr<Pending> reducing;
  at::Tensor gradFlat;
  int inputsPending = 0;  // input hooks of this step whose backward has not run yet
  bool reduced = false;
  int64_t hookGathers = 0;  // gathers done by output hooks (FULL_SHARD re-gathers during backward)
  int64_t hookReduces = 0;  // reduce-scatters issued by input hooks (during backward)
  std::weak_ptr<FsdpUnit> prev;  // the unit before this one in forward order (prefetched during backward)

  void Prefetch() {
    if (full.defined() || gathering) return;
    fullInFlight = at::empty({padded}, shard.options());
    gathering = IssueAllGatherInto(*g, fullInFlight, shard);
  }
  void Gather() {
    if (full.defined()) return;
    Prefetch();
    gathering->Wait(g->timeout);
    gathering.reset();
    full = fullInFlight;
    fullInFlight = at::Tensor();
    for (size_t i = 0; i < params.size(); ++i) params[i].set_data(full.narrow(0, offsets[i], numels[i]).view(shapes[i]));
  }
  void Release() {
    if (gathering) {
      gathering->Wait(g->timeout);
      gathering.reset();
      fullInFlight = at::Tensor();
    }
    for (auto& p : params) p.set_data(empty);
    full = at::Tensor();
  }
  // The average over ranks of the flat gradient, into gradShard (issued; FinishReduce waits).
  void IssueReduce() {
    if (reduced) return;
    reduced = true;
    at::NoGradGuard ng;
    std::vector<at::Tensor> parts;
    for (size_t i = 0; i < params.size(); ++i) {
      at::Tensor gr = params[i].grad();
      parts.push_back(gr.defined() ? gr.reshape({-1}).to(shard.scalar_type()) : at::zeros({numels[i]}, shard.options()));
      params[i].mutable_grad().reset();
    }
    if (padded > numel) parts.push_back(at::zeros({padded - numel}, shard.options()));
    gradFlat = at::cat(parts);
    reducing = IssueReduceScatterSum(*g, gradShard, gradFlat);
    reducing->what = "reduceScatter (gradients of a sharded unit)";
    at::Tensor gs = gradShard;
    int w = g->size;
    auto before = reducing->post;
    reducing->post = [before, gs, w]() mutable {
      if (before) before();
      at::NoGradGuard ng2;
      gs.div_(w);
    };
  }
  void FinishReduce() {
    if (!reducing) return;
    auto r = reducing;
    reducing.reset();
    r->Wait(g->timeout);
    gradFlat = at::Tensor();
  }
};

std::recursive_mutex gUnitMutex;  // every unit operation (hooks may run on an autograd device thread)
std::map<int64_t, std::weak_ptr<FsdpUnit>> gUnits;
std::atomic<int64_t> gNextUnit{1};

std::shared_ptr<FsdpUnit> FindUnit(int64_t id) {
  std::lock_guard<std::recursive_mutex> lock(gUnitMutex);
  auto it = gUnits.find(id);
  return it == gUnits.end() ? nullptr : it->second.lock();
}

struct UnitHookFn : public torch::autograd::Function<UnitHookFn> {
  // kind 0: on an input of the unit (post-backward); kind 1: on an output (pre-backward).
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor x, int64_t unitId, int64_t kind) {
    ctx->saved_data["unit"] = unitId;
    ctx->saved_data["kind"] = kind;
    return {x.view_as(x)};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto u = FindUnit(ctx->saved_data["unit"].toInt());
    if (u) {
      std::lock_guard<std::recursive_mutex> lock(gUnitMutex);
      if (ctx->saved_data["kind"].toInt() == 1) {
        if (!u->full.defined()) ++u->hookGathers;
        u->Gather();
        if (auto p = u->prev.lock()) p->Prefetch();
      } else if (--u->inputsPending == 0) {
        if (!u->reduced) ++u->hookReduces;
        u->IssueReduce();
        u->Release();
      }
    }
    return {grads[0], at::Tensor(), at::Tensor()};
  }
};

std::shared_ptr<FsdpUnit>& UnitArg(const Args& a, size_t i) {
  bool ok = false;
  if (i >= a.size() || !a.raw(i).IsExternal() || napi_check_object_type_tag(a.env(), a.raw(i), &kUnitTag, &ok) != napi_ok || !ok)
    a.typeError(i, "unit", "a native FSDP unit");
  auto& u = *a.raw(i).As<Napi::External<std::shared_ptr<FsdpUnit>>>().Data();
  if (!u) a.valueError("the FSDP unit has been disposed");
  return u;
}

// Runs a unit operation with the unit lock, turning failures into JS errors with a distributed code.
template <typename F>
void UnitOp(const Args& a, F f) {
  try {
    std::lock_guard<std::recursive_mutex> lock(gUnitMutex);
    f();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    std::string m = MessageOf(std::current_exception());
    throw Napi::Error(MakeError(a.env(), ErrKind::Torch, std::string(a.op()) + ": " + m, CodeOf(m, "ERR_DIST_NETWORK")));
  }
}

}  // namespace

void InitDistributed(Napi::Env env, Napi::Object e) {
  // distBackends() → which backends this build has.
  Def(env, e, "distBackends", [](Args& a) -> Napi::Value {
    Napi::Array out = Napi::Array::New(a.env());
    uint32_t n = 0;
#ifdef DINOV3_WITH_GLOO
    out.Set(n++, Napi::String::New(a.env(), "gloo"));
#endif
#if defined(DINOV3_WITH_CUDA) && defined(DINOV3_WITH_NCCL)
    out.Set(n++, Napi::String::New(a.env(), "nccl"));
#endif
    return out;
  });
  // distCreate({host, port, rank, worldSize, isServer, backend, prefix, deviceHostname, deviceInterface, timeoutMs,
  //             heartbeatMs, threads}) → Promise<group>
  Def(env, e, "distCreate", [](Args& a) -> Napi::Value {
    if (!a.has(0) || !a.raw(0).IsObject()) a.typeError(0, "options", "an object");
    Napi::Object o = a.raw(0).As<Napi::Object>();
    auto str = [&](const char* k) { Napi::Value v = o.Get(k); return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string(); };
    auto num = [&](const char* k, double d) { Napi::Value v = o.Get(k); return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : d; };
    CreateOptions c;
    c.host = str("host");
    c.port = static_cast<int>(num("port", -1));
    c.rank = static_cast<int>(num("rank", -1));
    c.size = static_cast<int>(num("worldSize", 0));
    c.isServer = o.Get("isServer").ToBoolean().Value();
    c.backend = str("backend");
    c.prefix = str("prefix");
    c.deviceHostname = str("deviceHostname");
    c.deviceInterface = str("deviceInterface");
    c.timeout = ms(static_cast<int64_t>(num("timeoutMs", 30000)));
    c.heartbeat = ms(static_cast<int64_t>(num("heartbeatMs", 500)));
    c.threads = static_cast<int>(num("threads", 2));
    if (c.host.empty()) a.valueError("options.host must be a non-empty string");
    if (c.port < 0 || c.port > 65535) a.valueError("options.port must be in [0, 65535], received " + std::to_string(c.port));
    if (c.size < 1) a.valueError("options.worldSize must be >= 1, received " + std::to_string(c.size));
    if (c.rank < 0 || c.rank >= c.size)
      a.valueError("options.rank must be in [0, " + std::to_string(c.size) + "), received " + std::to_string(c.rank));
    if (c.timeout.count() <= 0 || c.heartbeat.count() <= 0 || c.threads < 1)
      a.valueError("options.timeoutMs, heartbeatMs and threads must be positive");
    auto* w = new CreateWorker(a.env(), std::move(c));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
  // distInfo(group) → {rank, worldSize, backend, host, port}
  Def(env, e, "distInfo", [](Args& a) -> Napi::Value {
    auto& g = GroupArg(a, 0);
    Napi::Object o = Napi::Object::New(a.env());
    o.Set("rank", g->rank);
    o.Set("worldSize", g->size);
    o.Set("backend", g->backend);
    o.Set("host", g->host);
    o.Set("port", g->port);
    return o;
  });
  // distDestroy(group): marks this rank as closed in the store, stops the heartbeat, and releases the backend (which
  // waits for queued work). Idempotent.
  Def(env, e, "distDestroy", [](Args& a) -> Napi::Value {
    bool ok = false;
    if (!a.has(0) || !a.raw(0).IsExternal() || napi_check_object_type_tag(a.env(), a.raw(0), &kGroupTag, &ok) != napi_ok || !ok)
      a.typeError(0, "group", "a native process group");
    auto& g = *a.raw(0).As<Napi::External<std::shared_ptr<Group>>>().Data();
    if (!g) return a.undef();
    try {
      if (g->hbStore) {
        std::string one = "1";
        g->hbStore->set("exit/" + std::to_string(g->rank), std::vector<uint8_t>(one.begin(), one.end()));
      }
    } catch (...) {
    }
    g->StopHeartbeat();
    {
      std::lock_guard<std::mutex> lock(gRegistryMutex);
      gRegistry.erase(g->id);
    }
    g.reset();
    return a.undef();
  });
  // distAllReduce(group, t, op) → work (in place)
  Def(env, e, "distAllReduce", [](Args& a) -> Napi::Value {
    auto& g = GroupArg(a, 0);
    at::Tensor t = a.t(1, "tensor");
    CheckTensor(a, t, "tensor", *g);
    c10d::AllreduceOptions opts;
    opts.reduceOp = ParseOp(a, 2);
    auto p = std::make_shared<Pending>();
    p->nccl = g->backend == "nccl";
    p->what = "allReduce(" + a.str(2, "op") + ") " + Describe(t);
    std::vector<at::Tensor> ts{t};
    p->work = g->pg->allreduce(ts, opts);
    return WrapPending(a.env(), std::move(p));
  });
  // distAllGatherInto(group, output [W·n, ...], input [n, ...]) → work
  Def(env, e, "distAllGatherInto", [](Args& a) -> Napi::Value {
    auto& g = GroupArg(a, 0);
    at::Tensor out = a.t(1, "output");
    at::Tensor in = a.t(2, "input");
    CheckTensor(a, out, "output", *g);
    CheckTensor(a, in, "input", *g);
    if (in.dim() == 0 || out.dim() != in.dim() || out.size(0) != in.size(0) * g->size ||
        !out.sizes().slice(1).equals(in.sizes().slice(1)) || out.scalar_type() != in.scalar_type())
      a.valueError("output must be the input's dtype with " + std::to_string(g->size) +
                   " × its first dimension, received output " + Describe(out) + " for input " + Describe(in));
    auto p = IssueAllGatherInto(*g, out, in);
    p->what = "allGatherInto " + Describe(in);
    return WrapPending(a.env(), std::move(p));
  });
  // distReduceScatter(group, output [n, ...], input [W·n, ...]) → work (sum)
  Def(env, e, "distReduceScatter", [](Args& a) -> Napi::Value {
    auto& g = GroupArg(a, 0);
    at::Tensor out = a.t(1, "output");
    at::Tensor in = a.t(2, "input");
    CheckTensor(a, out, "output", *g);
    CheckTensor(a, in, "input", *g);
    if (out.dim() == 0 || out.dim() != in.dim() || in.size(0) != out.size(0) * g->size ||
        !out.sizes().slice(1).equals(in.sizes().slice(1)) || out.scalar_type() != in.scalar_type())
      a.valueError("input must be the output's dtype with " + std::to_string(g->size) +
                   " × its first dimension, received input " + Describe(in) + " for output " + Describe(out));
    auto p = IssueReduceScatterSum(*g, out, in);
    p->what = "reduceScatter " + Describe(in);
    return WrapPending(a.env(), std::move(p));
  });
  // distAllToAll(group, output, input): equal splits along dim 0 → work
  Def(env, e, "distAllToAll", [](Args& a) -> Napi::Value {
    auto& g = GroupArg(a, 0);
    at::Tensor out = a.t(1, "output");
    at::Tensor in = a.t(2, "input");
    CheckTensor(a, out, "output", *g);
    CheckTensor(a, in, "input", *g);
    if (in.dim() == 0 || !out.sizes().equals(in.sizes()) || in.size(0) % g->size != 0 || out.scalar_type() != in.scalar_type())
      a.valueError("output and input must have the same dtype and shape, the first dimension a multiple of " +
                   std::to_string(g->size) + ", received output " + Describe(out) + " and input " + Describe(in));
    auto p = std::make_shared<Pending>();
    p->nccl = g->backend == "nccl";
    p->what = "allToAll " + Describe(in);
    std::vector<int64_t> counts;
    p->work = g->pg->alltoall_base(out, in, counts, counts);
    return WrapPending(a.env(), std::move(p));
  });
  // distBroadcast(group, t, src) → work (in place)
  Def(env, e, "distBroadcast", [](Args& a) -> Napi::Value {
    auto& g = GroupArg(a, 0);
    at::Tensor t = a.t(1, "tensor");
    CheckTensor(a, t, "tensor", *g);
    int64_t src = a.i64(2, "src");
    if (src < 0 || src >= g->size) a.valueError("src must be in [0, " + std::to_string(g->size) + "), received " + std::to_string(src));
    c10d::BroadcastOptions opts;
    opts.rootRank = src;
    auto p = std::make_shared<Pending>();
    p->nccl = g->backend == "nccl";
    p->what = "broadcast(src " + std::to_string(src) + ") " + Describe(t);
    std::vector<at::Tensor> ts{t};
    p->work = g->pg->broadcast(ts, opts);
    return WrapPending(a.env(), std::move(p));
  });
  // distBarrier(group) → work
  Def(env, e, "distBarrier", [](Args& a) -> Napi::Value {
    auto& g = GroupArg(a, 0);
    auto p = std::make_shared<Pending>();
    p->nccl = g->backend == "nccl";
    p->what = "barrier";
    p->work = g->pg->barrier();
    return WrapPending(a.env(), std::move(p));
  });
  // distAllGatherAutograd(group, t) → the gathered [W·n, ...] tensor, differentiable (backward: reduce-scatter sum).
  Def(env, e, "distAllGatherAutograd", [](Args& a) -> Napi::Value {
    auto& g = GroupArg(a, 0);
    at::Tensor t = a.t(1, "tensor");
    if (t.dim() == 0) a.valueError("tensor must have at least one dimension, received " + Describe(t));
    if ((g->backend == "gloo") == t.is_cuda()) a.valueError("the " + g->backend + " backend does not take " + Describe(t));
    try {
      return a.ret(AllGatherFn::apply(t, g->id)[0]);
    } catch (...) {
      std::string m = MessageOf(std::current_exception());
      throw Napi::Error(MakeError(a.env(), ErrKind::Torch, std::string(a.op()) + " " + Describe(t) + ": " + m, CodeOf(m, "ERR_DIST_NETWORK")));
    }
  });
  // distWait(work, timeoutMs): blocks this thread until the work is done (then runs its local part).
  Def(env, e, "distWait", [](Args& a) -> Napi::Value {
    auto p = WorkArg(a, 0);
    ms timeout = TimeoutArg(a, 1, "timeoutMs");
    try {
      p->Wait(timeout);
    } catch (...) {
      std::string m = MessageOf(std::current_exception());
      throw Napi::Error(MakeError(a.env(), ErrKind::Torch, p->what + ": " + m, CodeOf(m, "ERR_DIST_NETWORK")));
    }
    return a.undef();
  });
  // distWaitAsync(work, timeoutMs) → Promise<void>, settled from a worker thread (NCCL: the wait only orders the
  // current stream after the collective, so it runs here).
  Def(env, e, "distWaitAsync", [](Args& a) -> Napi::Value {
    auto p = WorkArg(a, 0);
    ms timeout = TimeoutArg(a, 1, "timeoutMs");
    if (p->nccl) {
      auto d = Napi::Promise::Deferred::New(a.env());
      try {
        p->Wait(timeout);
        d.Resolve(a.env().Undefined());
      } catch (...) {
        std::string m = MessageOf(std::current_exception());
        d.Reject(MakeError(a.env(), ErrKind::Torch, p->what + ": " + m, CodeOf(m, "ERR_DIST_NETWORK")).Value());
      }
      return d.Promise();
    }
    auto* w = new WaitWorker(a.env(), p, timeout);
    Napi::Promise pr = w->Promise();
    w->Queue();
    return pr;
  });
  Def(env, e, "distIsCompleted", [](Args& a) -> Napi::Value {
    return Napi::Boolean::New(a.env(), WorkArg(a, 0)->Completed());
  });
  // distProbe(group, windowMs) → Promise<{silent, closed, storeError}>; distProbeSync the same, blocking.
  Def(env, e, "distProbe", [](Args& a) -> Napi::Value {
    auto g = GroupArg(a, 0);
    auto* w = new ProbeWorker(a.env(), g, TimeoutArg(a, 1, "windowMs"));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
  Def(env, e, "distProbeSync", [](Args& a) -> Napi::Value {
    auto g = GroupArg(a, 0);
    return ProbeToJs(a.env(), Probe(*g, TimeoutArg(a, 1, "windowMs")));
  });

  // ---- FSDP units ----
  // distFsdpUnit(group, params, shard, gradShard, offsets, padded) → unit (the parameters are left empty)
  Def(env, e, "distFsdpUnit", [](Args& a) -> Napi::Value {
    auto& g = GroupArg(a, 0);
    auto u = std::make_shared<FsdpUnit>();
    u->g = g;
    u->params = a.tensors(1, "params");
    u->shard = a.t(2, "shard");
    u->gradShard = a.t(3, "gradShard");
    u->offsets = a.ints(4, "offsets");
    u->padded = a.i64(5, "padded");
    if (u->offsets.size() != u->params.size()) a.valueError("offsets must have one entry per parameter");
    for (auto& p : u->params) {
      u->numels.push_back(p.numel());
      u->shapes.push_back(p.sizes().vec());
      u->numel += p.numel();
    }
    if (u->shard.dim() != 1 || u->shard.numel() * g->size != u->padded || !u->gradShard.sizes().equals(u->shard.sizes()))
      a.valueError("shard and gradShard must be 1-D with padded / worldSize elements");
    u->empty = at::empty({0}, u->shard.options());
    u->id = gNextUnit++;
    {
      std::lock_guard<std::recursive_mutex> lock(gUnitMutex);
      gUnits[u->id] = u;
      u->Release();
    }
    auto ext = Napi::External<std::shared_ptr<FsdpUnit>>::New(a.env(), new std::shared_ptr<FsdpUnit>(u),
                                                              [](Napi::Env, std::shared_ptr<FsdpUnit>* p) { delete p; });
    napi_type_tag_object(a.env(), ext, &kUnitTag);
    return ext;
  });
  // distFsdpSetPrev(unit, prev | null): the unit prefetched when this one's backward starts.
  Def(env, e, "distFsdpSetPrev", [](Args& a) -> Napi::Value {
    auto& u = UnitArg(a, 0);
    if (a.has(1)) u->prev = UnitArg(a, 1);
    else u->prev.reset();
    return a.undef();
  });
  Def(env, e, "distFsdpPrefetch", [](Args& a) -> Napi::Value {
    auto& u = UnitArg(a, 0);
    UnitOp(a, [&] { u->Prefetch(); });
    return a.undef();
  });
  Def(env, e, "distFsdpGather", [](Args& a) -> Napi::Value {
    auto& u = UnitArg(a, 0);
    UnitOp(a, [&] { u->Gather(); });
    return a.undef();
  });
  Def(env, e, "distFsdpRelease", [](Args& a) -> Napi::Value {
    auto& u = UnitArg(a, 0);
    UnitOp(a, [&] { u->Release(); });
    return a.undef();
  });
  // distFsdpStats(unit) → {hookGathers, hookReduces}: what its autograd hooks did so far.
  Def(env, e, "distFsdpStats", [](Args& a) -> Napi::Value {
    auto& u = UnitArg(a, 0);
    std::lock_guard<std::recursive_mutex> lock(gUnitMutex);
    Napi::Object o = Napi::Object::New(a.env());
    o.Set("hookGathers", static_cast<double>(u->hookGathers));
    o.Set("hookReduces", static_cast<double>(u->hookReduces));
    return o;
  });
  Def(env, e, "distFsdpIsGathered", [](Args& a) -> Napi::Value {
    auto& u = UnitArg(a, 0);
    std::lock_guard<std::recursive_mutex> lock(gUnitMutex);
    return Napi::Boolean::New(a.env(), u->full.defined());
  });
  // distFsdpIssueReduce(unit): reduce-scatter now unless its input hooks already did (idempotent per step).
  Def(env, e, "distFsdpIssueReduce", [](Args& a) -> Napi::Value {
    auto& u = UnitArg(a, 0);
    UnitOp(a, [&] { u->IssueReduce(); });
    return a.undef();
  });
  // distFsdpFinishStep(unit) → whether its hooks had issued the reduce-scatter: waits for it, resets the step state.
  Def(env, e, "distFsdpFinishReduce", [](Args& a) -> Napi::Value {
    auto& u = UnitArg(a, 0);
    UnitOp(a, [&] {
      u->FinishReduce();
      u->reduced = false;
      u->inputsPending = 0;
    });
    return a.undef();
  });
  // distFsdpHook(unit, t, kind) → t through the unit's hook (kind 0: an input, counted; 1: an output).
  Def(env, e, "distFsdpHook", [](Args& a) -> Napi::Value {
    auto& u = UnitArg(a, 0);
    at::Tensor t = a.t(1, "tensor");
    int64_t kind = a.i64(2, "kind");
    if (!t.requires_grad()) return a.ret(t);
    if (kind == 0) {
      std::lock_guard<std::recursive_mutex> lock(gUnitMutex);
      ++u->inputsPending;
    }
    return a.ret(UnitHookFn::apply(t, u->id, kind)[0]);
  });
  Def(env, e, "distFsdpDispose", [](Args& a) -> Napi::Value {
    bool ok = false;
    if (!a.has(0) || !a.raw(0).IsExternal() || napi_check_object_type_tag(a.env(), a.raw(0), &kUnitTag, &ok) != napi_ok || !ok)
      a.typeError(0, "unit", "a native FSDP unit");
    auto& u = *a.raw(0).As<Napi::External<std::shared_ptr<FsdpUnit>>>().Data();
    if (!u) return a.undef();
    UnitOp(a, [&] {
      u->FinishReduce();
      u->Release();
      gUnits.erase(u->id);
    });
    u.reset();
    return a.undef();
  });
}

}  // namespace dinov3
