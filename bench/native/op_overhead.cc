// Per-op cost of small libtorch calls from plain C++: the baseline that bench/op_overhead.ts compares the addon with.
// Each op runs `iters` times per run, after a warm-up, in batches of `batch` calls whose results stay alive until the
// batch ends (as in a TypeScript scope of `batch` ops); the median over `runs` runs is reported in µs per op, as JSON,
// as wall-clock time and as process CPU time (CPU time is what to compare on a loaded machine: waiting for a core is
// not counted), plus the fastest run's CPU time.
//
//   op_overhead [--iters N] [--runs R] [--threads T] [--batch B]
//
// Built by the CMake target `op_overhead` (configure with -DDINOV3_BUILD_BENCH=ON; see bench/op_overhead.ts).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace {

struct Op {
  const char* name;
  std::function<at::Tensor()> fn;
};

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Stats {
  double wall, cpu, cpuMin;  // medians over the runs, and the fastest run's CPU time
};

Stats MedianUsPerOp(const Op& op, int iters, int runs, int batch) {
  std::vector<double> wall, cpu;
  std::vector<at::Tensor> live;
  live.reserve(batch);
  for (int r = 0; r < runs; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    double c0 = CpuSeconds();
    for (int i = 0; i < iters; i += batch) {
      for (int k = 0; k < batch; ++k) live.push_back(op.fn());
      live.clear();  // the results are freed here, as a scope frees its tensors
    }
    double c1 = CpuSeconds();
    auto t1 = std::chrono::steady_clock::now();
    wall.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / iters);
    cpu.push_back((c1 - c0) * 1e6 / iters);
  }
  return {Median(wall), Median(cpu), *std::min_element(cpu.begin(), cpu.end())};
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 20000, runs = 7, threads = 0, batch = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--iters")) iters = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
  }
  if (batch < 1 || iters % batch != 0) {
    std::fprintf(stderr, "op_overhead: --iters (%d) must be a multiple of --batch (%d)\n", iters, batch);
    return 2;
  }
  if (threads > 0) at::set_num_threads(threads);
  // Grad mode stays enabled (the default on both sides); the inputs do not require grad.

  at::Tensor a = at::rand({4});
  at::Tensor b = at::rand({4});
  at::Tensor m = at::rand({8, 8});
  std::vector<Op> ops = {
      {"add", [&] { return at::add(a, b); }},
      {"mulScalar", [&] { return at::mul(a, 2.5); }},
      {"matmul8x8", [&] { return at::matmul(m, m); }},
      {"reshapeView", [&] { return a.reshape({2, 2}); }},
      {"sum", [&] { return at::sum(a); }},
  };

  std::vector<Stats> us;
  for (const Op& op : ops) {
    MedianUsPerOp(op, iters, 1, batch);  // warm-up
    us.push_back(MedianUsPerOp(op, iters, runs, batch));
  }
  std::printf("{\n  \"torchVersion\": \"%s\",\n  \"threads\": %d,\n  \"iters\": %d,\n  \"runs\": %d,\n  \"batch\": %d,\n",
              TORCH_VERSION, at::get_num_threads(), iters, runs, batch);
  const char* kinds[] = {"wallUsPerOp", "cpuUsPerOp", "cpuMinUsPerOp"};
  for (int kind = 0; kind < 3; ++kind) {
    std::printf("  \"%s\": {", kinds[kind]);
    for (size_t k = 0; k < ops.size(); ++k) {
      double v = kind == 0 ? us[k].wall : kind == 1 ? us[k].cpu : us[k].cpuMin;
      std::printf("%s\n    \"%s\": %.4f", k ? "," : "", ops[k].name, v);
    }
    std::printf("\n  }%s\n", kind < 2 ? "," : "");
  }
  std::printf("}\n");
  return 0;
}
