// CPU kernels of the masked NT-Xent (see ntxent_cpu.cpp for the algorithm).
#pragma once

#include "ntxent_common.h"

namespace himoe {
namespace cpu {

// tile: the Gram tile edge; < 1 means the default (256, or HIMOE_FAST_NTXENT_TILE read once per
// process). Tests pass small tiles so that tiny inputs run the multi-tile paths.

// lse [M, N, M]: log-sum-exp of every (anchor row, partner modality); 0 where Mk is 0.
at::Tensor lse_cpu(const Prep& prep, const at::Tensor& present, double temperature, int64_t tile = 0);

// d(sum_{i,a,j} w_ij Mk[i,a,j] lse[i,a,j]) / du, [M, N, d].
at::Tensor grad_lse_cpu(const Prep& prep, const at::Tensor& present, const at::Tensor& lse, double temperature,
                        int64_t tile = 0);

}  // namespace cpu
}  // namespace himoe
