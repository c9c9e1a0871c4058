// Test-only C entry points of the CUDA kernels compiled for CPU threads (csrc/cuda_emulation.h);
// tests/test_ntxent_ext.py builds this with the host compiler and compares against the CPU op.
#include "cuda_emulation.h"
#include "ntxent_kernels.cu"

extern "C" {
int himoe_emu_lse_f32(const float* u, const float* mk, const float* w, float* lse, int64_t M, int64_t N, int64_t d,
                      double inv_tau) {
  return himoe_cuda::ntxent_lse<float>(u, mk, w, lse, M, N, d, inv_tau, nullptr);
}
int himoe_emu_lse_f64(const double* u, const double* mk, const double* w, double* lse, int64_t M, int64_t N,
                      int64_t d, double inv_tau) {
  return himoe_cuda::ntxent_lse<double>(u, mk, w, lse, M, N, d, inv_tau, nullptr);
}
int himoe_emu_grad_f32(const float* u, const float* mk, const float* w, const float* lse, float* gu, int64_t M,
                       int64_t N, int64_t d, double inv_tau) {
  return himoe_cuda::ntxent_grad_lse<float>(u, mk, w, lse, gu, M, N, d, inv_tau, nullptr);
}
int himoe_emu_grad_f64(const double* u, const double* mk, const double* w, const double* lse, double* gu, int64_t M,
                       int64_t N, int64_t d, double inv_tau) {
  return himoe_cuda::ntxent_grad_lse<double>(u, mk, w, lse, gu, M, N, d, inv_tau, nullptr);
}
}
