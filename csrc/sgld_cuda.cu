// CUDA kernel of the fused SGLD op: raw pointers and the CUDA runtime only, so `nvcc -c` works on a machine
// without a GPU and without a CUDA build of torch. The op's CUDA registration lives in sgld_cpu.cpp
// (compiled with EBM_OOD_WITH_CUDA), which passes torch's current stream to the launchers below.
// One thread per Philox block of 4 elements, grid-stride loop. Same noise as the CPU kernel for the same
// (seed, offset, element index): philox.h and sgld_update.h are shared, and this file is compiled with
// --fmad=false so that no multiply-add is contracted.
#include <cuda_runtime.h>

#include <cstdint>

#include "philox.h"
#include "sgld_update.h"

namespace ebm_ood {

template <typename T>
__global__ void sgld_step_kernel(T* __restrict__ x, const T* __restrict__ g, int64_t numel, T step_size,
                                 T noise_std, T lo, T hi, uint32_t k0, uint32_t k1, uint32_t o0, uint32_t o1) {
  const int64_t n_blocks = (numel + 3) / 4;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < n_blocks; b += stride) {
    float n[4];
    philox_normal4(static_cast<uint64_t>(b), k0, k1, o0, o1, n);
    const int64_t i0 = 4 * b;
    for (int l = 0; l < 4; ++l) {
      const int64_t i = i0 + l;
      if (i < numel) x[i] = sgld_update<T>(x[i], g[i], step_size, noise_std, n[l], lo, hi);
    }
  }
}

template <typename T>
int launch(T* x, const T* g, int64_t numel, double step_size, double noise_std, double clamp_min, double clamp_max,
           uint64_t seed, uint64_t offset, void* stream) {
  if (numel == 0) return 0;
  const int threads = 256;
  const int64_t n_blocks = (numel + 3) / 4;
  const int64_t grid = (n_blocks + threads - 1) / threads;
  sgld_step_kernel<T><<<static_cast<unsigned>(grid < 65535 ? grid : 65535), threads, 0,
                        static_cast<cudaStream_t>(stream)>>>(
      x, g, numel, static_cast<T>(step_size), static_cast<T>(noise_std), static_cast<T>(clamp_min),
      static_cast<T>(clamp_max), static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
      static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32));
  return static_cast<int>(cudaGetLastError());
}

// Launchers called from sgld_cpu.cpp; return a cudaError_t code (0 = success).
int sgld_step_cuda_f32(float* x, const float* g, int64_t numel, double step_size, double noise_std,
                       double clamp_min, double clamp_max, uint64_t seed, uint64_t offset, void* stream) {
  return launch<float>(x, g, numel, step_size, noise_std, clamp_min, clamp_max, seed, offset, stream);
}

int sgld_step_cuda_f64(double* x, const double* g, int64_t numel, double step_size, double noise_std,
                       double clamp_min, double clamp_max, uint64_t seed, uint64_t offset, void* stream) {
  return launch<double>(x, g, numel, step_size, noise_std, clamp_min, clamp_max, seed, offset, stream);
}

const char* cuda_error_name(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace ebm_ood
