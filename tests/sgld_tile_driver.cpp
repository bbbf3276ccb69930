// A torch-free driver of the portable kernel (csrc/sgld_tile.h), for cross-compiled checks of other CPUs
// (tests/sampling/test_sgld_paths.py builds it for ARM64 and runs it under qemu):
//   driver N SEED OFFSET < x.bin g.bin (float32, N each) > out.bin (float32, N)
// with step 0.3, noise 0.7, clamp [-1.5, 2], the arguments of the tests' bit-for-bit comparisons.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "philox.h"
#include "sgld_update.h"
#include "sgld_tile.h"

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  const int64_t n = std::atoll(argv[1]);
  const uint64_t seed = std::strtoull(argv[2], nullptr, 10), offset = std::strtoull(argv[3], nullptr, 10);
  std::vector<float> x(n), g(n);
  if (std::fread(x.data(), sizeof(float), n, stdin) != static_cast<size_t>(n)) return 3;
  if (std::fread(g.data(), sizeof(float), n, stdin) != static_cast<size_t>(n)) return 3;
  const ebm_ood::TileParams p{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                              static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32), 0.3, 0.7, -1.5, 2.0};
  for (int64_t s = 0; s < n; s += 1024) ebm_ood::EBM_TILE_NS::tile_f32(x.data(), g.data(), s, n - s < 1024 ? n - s : 1024, p);
  std::fwrite(x.data(), sizeof(float), n, stdout);
  return 0;
}
