// Per-environment state of the addon: the JS error constructors handed over at init, the live-tensor counters,
// and the registered entry points. One instance per Node environment (main thread or worker).
#pragma once

#include <napi.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "common.h"

namespace dinov3 {

struct Entry {
  const char* name;
  Napi::Value (*body)(Args&);
};

// The tensor handles of one environment. A handle is a BigInt id: tag (12 bits: 0xD and the environment's number, so
// that an id from another worker's table is not taken for one of ours) | generation (28 bits) | slot (24 bits).
// Slots live in fixed-size chunks (stable addresses: a TensorRef* stays valid while later handles are created in the
// same call). A disposed slot waits in a FIFO queue and is reused only once kReuseDelay other slots are free, so its
// description outlives many later allocations, and each reuse bumps its generation so that stale ids are recognised.
class HandleTable {
 public:
  static constexpr uint32_t kChunkBits = 12;
  static constexpr uint32_t kSlotBits = 24;  // up to 16,777,216 slots
  static constexpr uint32_t kGenBits = 28;
  static constexpr size_t kReuseDelay = 1024;

  HandleTable();
  // A slot for a new tensor (a fresh one, or a freed one with its generation bumped), or nullptr when every slot is
  // taken.
  TensorRef* Acquire();
  void Release(uint32_t slot) { free_.push_back(slot); }
  // The slot an id names, or nullptr if `id` is not one of ours; *stale is set when the slot has been reused.
  TensorRef* Find(uint64_t id, bool* stale);
  TensorRef& At(uint32_t slot) { return chunks_[slot >> kChunkBits][slot & ((1u << kChunkBits) - 1)]; }
  uint64_t Id(const TensorRef& r) const {
    return (tag_ << (kSlotBits + kGenBits)) | (static_cast<uint64_t>(r.gen) << kSlotBits) | r.slot;
  }

 private:
  std::vector<std::unique_ptr<TensorRef[]>> chunks_;
  uint32_t size_ = 0;
  uint64_t tag_;
  std::deque<uint32_t> free_;
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
  int64_t pendingExternal = 0;  // CPU bytes not yet reported to V8 (reported in 1 MiB steps)

  HandleTable handles;

  std::vector<std::unique_ptr<Entry>> entries;
};

AddonData& Data(Napi::Env env);

}  // namespace dinov3
