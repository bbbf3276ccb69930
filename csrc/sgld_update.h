// The per-element SGLD update, one definition for host and device code:
//   x <- clamp(x - step_size * grad + noise_std * n, lo, hi)
// (decoupled form of the Elflein/JEM code; the Langevin form of HEAT Eq. 4 is step = eta/2,
// noise_std = sqrt(eta)). Operation order matches the twin in ebm_ood/sampling/ops.py. NaN propagates.
#pragma once
#include "philox.h"

namespace ebm_ood {

template <typename T>
EBM_HD T sgld_update(T x, T grad, T step_size, T noise_std, float n, T lo, T hi) {
  T v = x - grad * step_size;
  v = v + static_cast<T>(n) * noise_std;
  v = v < lo ? lo : v;
  v = v > hi ? hi : v;
  return v;
}

}  // namespace ebm_ood
