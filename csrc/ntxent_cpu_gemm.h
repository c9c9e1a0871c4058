// GEMM shim of the CPU NT-Xent tiles: row-major C[m x n] = alpha * op(A) op(B) + beta * C.
//
// ATen's cpublas::gemm is not exported to extensions, so: MKL's LP64 Fortran sgemm_ / dgemm_ from the
// already loaded libtorch_cpu when torch is built with MKL (resolved once with dlsym), else
// at::addmm_out on from_blob views (portable, a few microseconds more per call).
// HIMOE_FAST_NTXENT_ATEN_GEMM=1 (read once per process) forces the portable path (tests).
#pragma once

#include <cstdint>

namespace himoe {
namespace cpu {

// op(A) = A^T when ta (A is then stored [k, m]), else A [m, k]; likewise op(B) with tb. beta == 0
// ignores C's old values (NaN included).
void rm_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void rm_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* A, int64_t lda,
             const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

}  // namespace cpu
}  // namespace himoe
