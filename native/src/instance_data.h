// Per-environment state of the addon: the JS error constructors handed over at init, the live-tensor counters,
// and the registered entry points. One instance per Node environment (main thread or worker).
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common.h"

namespace dinov3 {

struct Entry {
  const char* name;
  Napi::Value (*body)(Args&);
};

struct AddonData {
  Napi::FunctionReference torchError;
  Napi::FunctionReference rangeError;
  Napi::FunctionReference typeError;
  Napi::FunctionReference disposedError;
  bool errorsSet = false;

  int64_t liveTensors = 0;
  int64_t cpuBytes = 0;
  int64_t cudaBytes = 0;  // logical bytes of live CUDA handles (the allocator's own figures come from cudaMemory)
  int64_t created = 0;    // handles ever created (for leak checks and debugging)

  std::vector<std::unique_ptr<Entry>> entries;
};

AddonData& Data(Napi::Env env);

}  // namespace dinov3
