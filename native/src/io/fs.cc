// File-system primitives Node does not expose. renameExchange swaps two paths in one step (Linux renameat2 with
// RENAME_EXCHANGE), so that a folder written as a set (an npy feature folder, a checkpoint) replaces the old one
// without an instant where neither exists: a process killed at any point leaves the old set or the new one.
#include <cerrno>
#include <cstring>

#if defined(__linux__)
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "common.h"

namespace dinov3 {

namespace {

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

// 0 on success, else the errno (ENOSYS where the platform has no atomic exchange; EINVAL where the file system
// does not support it): the caller then falls back to two renames.
int Exchange(const std::string& a, const std::string& b) {
#if defined(__linux__) && defined(SYS_renameat2)
  long r = syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE);
  return r == 0 ? 0 : errno;
#else
  (void)a;
  (void)b;
  return ENOSYS;
#endif
}

}  // namespace

void InitFs(Napi::Env env, Napi::Object e) {
  // renameExchange(a, b) → { errno, message }: swaps the two existing paths atomically; errno 0 on success.
  Def(env, e, "renameExchange", [](Args& a) -> Napi::Value {
    int err = Exchange(a.str(0, "a"), a.str(1, "b"));
    Napi::Object o = Napi::Object::New(a.env());
    o.Set("errno", Napi::Number::New(a.env(), err));
    o.Set("message", Napi::String::New(a.env(), err == 0 ? "" : std::strerror(err)));
    return o;
  });
}

}  // namespace dinov3
