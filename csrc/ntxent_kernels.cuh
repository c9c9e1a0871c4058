// Masked NT-Xent, CUDA kernels: plain CUDA (no torch headers), so that `nvcc -c ntxent_kernels.cu`
// compile-checks them on machines without a GPU or a CUDA build of torch. The torch binding is
// ntxent_cuda.cpp; the device-generic math (normalisation, masks, weights, the positive term) is in
// ntxent_common.h. See ntxent_common.h for the definitions of mk, w and lse.
//
// All arrays are row-major, contiguous and on the current device:
//   u   [M, N, d]  L2-normalised embeddings
//   mk  [M, N, M]  mk[i, a, j] = 1 if token a is present in modalities i and j and pair (i, j)
//                  qualifies (>= 2 shared tokens), else 0
//   w   [M, M]     pair weights 1 / (Q * 2 n_ij); 0 for pairs that are skipped
//   lse [M, N, M]  log-sum-exp of anchor row (i, a) in pair (i, j); 0 where mk is 0
//   gu  [M, N, d]  gradient of sum_{i,a,j} w_ij mk[i,a,j] lse[i,a,j] with respect to u
//
// Kernels (one thread block per 32 anchor rows of one modality, all partners in the same pass):
//   ntxent_lse:      Gram tiles u_i[rows] u_j[cols]^T in shared memory, online (running max) log-sum-exp
//                    per (row, partner) with the per-pair masks applied in the reduction, not the GEMM;
//                    a within-modality tile serves every partner j at once.
//   ntxent_grad_lse: recomputes the tiles, forms the softmax coefficients from lse and accumulates
//                    C u_j into the block's own rows of gu (no atomics).
// No 2n x 2n matrix is stored. Both return the launch's cudaError_t.
#pragma once

#ifndef HIMOE_CUDA_EMULATION  // csrc/cuda_emulation.h runs these kernels on CPU threads in the tests
#include <cuda_runtime.h>
#endif

#include <cstdint>

namespace himoe_cuda {

constexpr int kMaxModalities = 32;  // per-row statistics of all partners live in shared memory

template <typename T>
cudaError_t ntxent_lse(const T* u, const T* mk, const T* w, T* lse, int64_t M, int64_t N, int64_t d, double inv_tau,
                       cudaStream_t stream);

// gu must be zero-initialised (the kernel accumulates into it).
template <typename T>
cudaError_t ntxent_grad_lse(const T* u, const T* mk, const T* w, const T* lse, T* gu, int64_t M, int64_t N, int64_t d,
                            double inv_tau, cudaStream_t stream);

}  // namespace himoe_cuda
