// Addon entry: instance data and the export table (one initialiser per op family).
#include <napi.h>

#include "common.h"
#include "instance_data.h"

namespace dinov3 {

// Data augmentation kernels (ops/augment.cc); declared here so that adding them does not touch common.h.
void InitAugment(Napi::Env env, Napi::Object exports);
// File-system primitives (io/fs.cc).
void InitFs(Napi::Env env, Napi::Object exports);

AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<AddonData>(new AddonData());
  InitWarnings(env, exports);
  InitTensorCore(env, exports);
  InitCreation(env, exports);
  InitPointwise(env, exports);
  InitReduce(env, exports);
  InitShape(env, exports);
  InitIndex(env, exports);
  InitLinalg(env, exports);
  InitDecomp(env, exports);
  InitNN(env, exports);
  InitAutograd(env, exports);
  InitAutocast(env, exports);
  InitOptim(env, exports);
  InitDevice(env, exports);
  InitFused(env, exports);
  InitBench(env, exports);
  InitThreads(env, exports);
  InitAugment(env, exports);
  InitDistributed(env, exports);
  InitFs(env, exports);
  return exports;
}

}  // namespace dinov3

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return dinov3::Init(env, exports); }

NODE_API_MODULE(dinov3, InitAddon)
