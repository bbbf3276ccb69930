// CPU kernel and registration of the fused SGLD op
//   ebm_ood::sgld_step_(Tensor(a!) x, Tensor grad, float step_size, float noise_std,
//                       float clamp_min, float clamp_max, Scalar seed, Scalar offset) -> ()
// seed and offset are integers in [0, 2^64) (Scalar, so that Python ints above 2^63 reach the checks).
// x <- clamp(x - step_size * grad + noise_std * n), n = Philox4x32-10 + Box–Muller (philox.h) of
// (seed, offset, element index). No autograd: the op is a sampler update on detached tensors.
//
// Speed: plain PyTorch spends most of its time in single-threaded randn. Here the work is split into
// tiles of kTile elements over threads (at::parallel_for), and each tile runs three flat loops over
// lanes -- Philox words, Box–Muller, update -- that the compiler auto-vectorises. The tile function is
// compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time (GCC function multiversioning),
// so the JIT-built library runs on any x86-64 CPU.
#include <Python.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <torch/library.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>

#include <cmath>

#include "philox.h"
#include "sgld_update.h"

#ifdef EBM_OOD_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace ebm_ood {  // launchers in sgld_cuda.cu (raw pointers; return a cudaError_t code)
int sgld_step_cuda_f32(float*, const float*, int64_t, double, double, double, double, uint64_t, uint64_t, void*);
int sgld_step_cuda_f64(double*, const double*, int64_t, double, double, double, double, uint64_t, uint64_t, void*);
const char* cuda_error_name(int code);
}  // namespace ebm_ood
#endif

namespace ebm_ood {
namespace {

constexpr int64_t kTile = 1024;              // elements per tile (a multiple of 4: whole Philox blocks)
constexpr int64_t kTileBlocks = kTile / 4;
// Below 64 tiles (64k elements) one thread is faster: waking a thread pool costs more than the work.
constexpr int64_t kGrainTiles = 64;

struct Params {
  uint32_t k0, k1, o0, o1;                   // Philox key (seed) and counter high words (offset)
  double step_size, noise_std, lo, hi;
};

// One tile: elements [start, start + count) of x, start a multiple of 4.
template <typename T>
inline __attribute__((always_inline)) void tile_body(T* __restrict x, const T* __restrict g, int64_t start,
                                                     int64_t count, const Params& p) {
  alignas(64) uint32_t w0[kTileBlocks], w1[kTileBlocks], w2[kTileBlocks], w3[kTileBlocks];
  alignas(64) float n0[kTileBlocks], n1[kTileBlocks], n2[kTileBlocks], n3[kTileBlocks];
  const int64_t nb = (count + 3) / 4;
  const uint64_t b0 = static_cast<uint64_t>(start) / 4;
  for (int64_t j = 0; j < nb; ++j) {         // Philox over lanes
    const uint64_t b = b0 + static_cast<uint64_t>(j);
    uint32_t c0 = static_cast<uint32_t>(b), c1 = static_cast<uint32_t>(b >> 32), c2 = p.o0, c3 = p.o1;
    philox4x32_10(c0, c1, c2, c3, p.k0, p.k1);
    w0[j] = c0; w1[j] = c1; w2[j] = c2; w3[j] = c3;
  }
  for (int64_t j = 0; j < nb; ++j) {         // Box–Muller over lanes
    box_muller(w0[j], w1[j], n0[j], n1[j]);
    box_muller(w2[j], w3[j], n2[j], n3[j]);
  }
  const T step = static_cast<T>(p.step_size), sd = static_cast<T>(p.noise_std);
  const T lo = static_cast<T>(p.lo), hi = static_cast<T>(p.hi);
  T* xs = x + start;
  const T* gs = g + start;
  if (count == kTile) {                      // full tile: fixed trip count, vectorised update
    for (int64_t j = 0; j < kTileBlocks; ++j) {
      xs[4 * j + 0] = sgld_update<T>(xs[4 * j + 0], gs[4 * j + 0], step, sd, n0[j], lo, hi);
      xs[4 * j + 1] = sgld_update<T>(xs[4 * j + 1], gs[4 * j + 1], step, sd, n1[j], lo, hi);
      xs[4 * j + 2] = sgld_update<T>(xs[4 * j + 2], gs[4 * j + 2], step, sd, n2[j], lo, hi);
      xs[4 * j + 3] = sgld_update<T>(xs[4 * j + 3], gs[4 * j + 3], step, sd, n3[j], lo, hi);
    }
  } else {
    for (int64_t i = 0; i < count; ++i) {
      const int64_t j = i / 4, l = i % 4;
      const float n = l == 0 ? n0[j] : (l == 1 ? n1[j] : (l == 2 ? n2[j] : n3[j]));
      xs[i] = sgld_update<T>(xs[i], gs[i], step, sd, n, lo, hi);
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define EBM_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EBM_MULTIVERSION
#endif

EBM_MULTIVERSION void tile_f32(float* x, const float* g, int64_t start, int64_t count, const Params& p) {
  tile_body<float>(x, g, start, count, p);
}

EBM_MULTIVERSION void tile_f64(double* x, const double* g, int64_t start, int64_t count, const Params& p) {
  tile_body<double>(x, g, start, count, p);
}

template <typename T, void (*Tile)(T*, const T*, int64_t, int64_t, const Params&)>
void run_tiles(T* x, const T* g, int64_t numel, const Params& p) {
  const int64_t n_tiles = (numel + kTile - 1) / kTile;
  at::parallel_for(0, n_tiles, /*grain_size=*/kGrainTiles, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t start = t * kTile;
      Tile(x, g, start, std::min(kTile, numel - start), p);
    }
  });
}

// seed or offset as a 64-bit word.
uint64_t key_word(const c10::Scalar& v, const char* name) {
  TORCH_CHECK(v.isIntegral(/*includeBool=*/false), "sgld_step_: ", name, " must be an integer, got ", v.type());
  if (v.isSymbolic()) return 0;  // tracing (torch.compile): only shapes matter
  TORCH_CHECK(v.isUnsigned(), "sgld_step_: ", name, " must be in [0, 2^64), got ", v.toLong());
  return v.toUInt64();
}

// Every argument check of the op, shared by the CPU, CUDA and Meta kernels (the Python wrapper checks the
// same things first, with the same meaning). Returns the kernel parameters.
Params checked_params(const at::Tensor& x, const at::Tensor& grad, double step_size, double noise_std,
                      double clamp_min, double clamp_max, const c10::Scalar& seed, const c10::Scalar& offset) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "sgld_step_: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(grad.scalar_type() == x.scalar_type(), "sgld_step_: grad dtype ", grad.scalar_type(),
              " differs from x dtype ", x.scalar_type());
  TORCH_CHECK(grad.sym_sizes() == x.sym_sizes(), "sgld_step_: grad shape ", grad.sym_sizes(),
              " differs from x shape ", x.sym_sizes());
  TORCH_CHECK(grad.device() == x.device(), "sgld_step_: grad is on ", grad.device(), " but x is on ", x.device());
  TORCH_CHECK(x.is_contiguous(), "sgld_step_: x must be contiguous (the update is in place)");
  TORCH_CHECK(grad.is_contiguous(), "sgld_step_: grad must be contiguous (call .contiguous() first)");
  const bool symbolic = x.unsafeGetTensorImpl()->has_symbolic_sizes_strides() ||
                        grad.unsafeGetTensorImpl()->has_symbolic_sizes_strides();  // tracing: no memory
  TORCH_CHECK(symbolic || at::get_overlap_status(x, grad) == at::MemOverlapStatus::No,
              "sgld_step_: x and grad share memory; the kernel reads grad while writing x, so pass a separate "
              "grad (grad.clone())");
  TORCH_CHECK(!x.requires_grad(), "sgld_step_: x requires grad, but the op has no autograd; pass x.detach()");
  TORCH_CHECK(!(grad.requires_grad() && c10::GradMode::is_enabled()),
              "sgld_step_: grad requires grad, but the op has no autograd; pass grad.detach()");
  TORCH_CHECK(!x.is_inference() || c10::InferenceMode::is_enabled(),
              "sgld_step_: x is an inference tensor; update it inside torch.inference_mode() or pass x.clone()");
  TORCH_CHECK(std::isfinite(step_size), "sgld_step_: step_size must be finite, got ", step_size);
  TORCH_CHECK(std::isfinite(noise_std), "sgld_step_: noise_std must be finite, got ", noise_std);
  TORCH_CHECK(!std::isnan(clamp_min) && !std::isnan(clamp_max), "sgld_step_: clamp bounds must not be NaN, got [",
              clamp_min, ", ", clamp_max, "] (use -inf / inf for no bound)");
  TORCH_CHECK(clamp_min <= clamp_max, "sgld_step_: clamp_min must be <= clamp_max, got ", clamp_min, " > ",
              clamp_max);
  const uint64_t s = key_word(seed, "seed"), o = key_word(offset, "offset");
  return Params{static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32), static_cast<uint32_t>(o),
                static_cast<uint32_t>(o >> 32), step_size, noise_std, clamp_min, clamp_max};
}

void sgld_step_cpu(at::Tensor& x, const at::Tensor& grad, double step_size, double noise_std, double clamp_min,
                   double clamp_max, const c10::Scalar& seed, const c10::Scalar& offset) {
  const Params p = checked_params(x, grad, step_size, noise_std, clamp_min, clamp_max, seed, offset);
  TORCH_CHECK(x.device().is_cpu(), "sgld_step_ (CPU): x must be on the CPU");
  x.unsafeGetTensorImpl()->bump_version();  // an in-place op: autograd must see that x changed
  if (x.scalar_type() == at::kFloat) {
    run_tiles<float, tile_f32>(x.data_ptr<float>(), grad.data_ptr<float>(), x.numel(), p);
  } else {
    run_tiles<double, tile_f64>(x.data_ptr<double>(), grad.data_ptr<double>(), x.numel(), p);
  }
}

#ifdef EBM_OOD_WITH_CUDA
void sgld_step_cuda(at::Tensor& x, const at::Tensor& grad, double step_size, double noise_std, double clamp_min,
                    double clamp_max, const c10::Scalar& seed, const c10::Scalar& offset) {
  const Params p = checked_params(x, grad, step_size, noise_std, clamp_min, clamp_max, seed, offset);
  TORCH_CHECK(x.is_cuda(), "sgld_step_ (CUDA): x must be on a CUDA device");
  x.unsafeGetTensorImpl()->bump_version();  // an in-place op: autograd must see that x changed
  const c10::cuda::CUDAGuard guard(x.device());
  void* stream = c10::cuda::getCurrentCUDAStream().stream();
  const uint64_t s = p.k0 | (static_cast<uint64_t>(p.k1) << 32), o = p.o0 | (static_cast<uint64_t>(p.o1) << 32);
  const int err = x.scalar_type() == at::kFloat
      ? sgld_step_cuda_f32(x.data_ptr<float>(), grad.data_ptr<float>(), x.numel(), step_size, noise_std, clamp_min,
                           clamp_max, s, o, stream)
      : sgld_step_cuda_f64(x.data_ptr<double>(), grad.data_ptr<double>(), x.numel(), step_size, noise_std,
                           clamp_min, clamp_max, s, o, stream);
  TORCH_CHECK(err == 0, "sgld_step_ (CUDA): kernel launch failed: ", cuda_error_name(err));
}
#endif

// Kernel for fake/meta tensors (torch.compile, opcheck): the same checks as the real kernels, no data.
void sgld_step_meta(at::Tensor& x, const at::Tensor& grad, double step_size, double noise_std, double clamp_min,
                    double clamp_max, const c10::Scalar& seed, const c10::Scalar& offset) {
  checked_params(x, grad, step_size, noise_std, clamp_min, clamp_max, seed, offset);
  x.unsafeGetTensorImpl()->bump_version();
}

}  // namespace

TORCH_LIBRARY(ebm_ood, m) {
  m.def("sgld_step_(Tensor(a!) x, Tensor grad, float step_size, float noise_std, float clamp_min, "
        "float clamp_max, Scalar seed, Scalar offset) -> ()");
}

TORCH_LIBRARY_IMPL(ebm_ood, CPU, m) { m.impl("sgld_step_", &sgld_step_cpu); }
#ifdef EBM_OOD_WITH_CUDA
TORCH_LIBRARY_IMPL(ebm_ood, CUDA, m) { m.impl("sgld_step_", &sgld_step_cuda); }
#endif
TORCH_LIBRARY_IMPL(ebm_ood, Meta, m) { m.impl("sgld_step_", &sgld_step_meta); }
// No derivative: inputs that require grad get autograd's "not implemented" error.
TORCH_LIBRARY_IMPL(ebm_ood, Autograd, m) {
  m.impl("sgld_step_", torch::autograd::autogradNotImplementedFallback());
}
TORCH_LIBRARY_IMPL(ebm_ood, ADInplaceOrView, m) {
  m.impl("sgld_step_", torch::autograd::autogradNotImplementedInplaceOrViewFallback());
}

}  // namespace ebm_ood

// Lets setup.py's ahead-of-time build be imported as the Python module ebm_ood._C (it only registers ops).
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
