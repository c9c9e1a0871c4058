// GEMM shim of the CPU NT-Xent tiles (see ntxent_cpu_gemm.h). Only the ATen headers it uses, so this
// translation unit compiles in a few seconds.
#include "ntxent_cpu_gemm.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/from_blob.h>
#include <dlfcn.h>

#include <cstdlib>
#include <limits>

namespace himoe {
namespace cpu {
namespace {

using sgemm_t = void (*)(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                         const int*, const float*, const int*, const float*, float*, const int*);
using dgemm_t = void (*)(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
                         const int*, const double*, const int*, const double*, double*, const int*);

struct Blas {
  sgemm_t sgemm = nullptr;
  dgemm_t dgemm = nullptr;
};

const Blas& blas() {
  static const Blas b = [] {
    Blas r;
#if defined(__linux__)
    if (std::getenv("HIMOE_FAST_NTXENT_ATEN_GEMM") == nullptr) {
      void* h = dlopen("libtorch_cpu.so", RTLD_NOLOAD | RTLD_LAZY);
      if (h != nullptr && dlsym(h, "mkl_get_max_threads") != nullptr) {  // MKL: sgemm_ is the LP64 one
        r.sgemm = reinterpret_cast<sgemm_t>(dlsym(h, "sgemm_"));
        r.dgemm = reinterpret_cast<dgemm_t>(dlsym(h, "dgemm_"));
      }
    }
#endif
    return r;
  }();
  return b;
}

// The BLAS routine of each element type (nullptr when torch has no MKL).
sgemm_t blas_gemm(float) { return blas().sgemm; }
dgemm_t blas_gemm(double) { return blas().dgemm; }

inline bool fits_int(int64_t v) { return v <= std::numeric_limits<int>::max(); }

template <typename T>
void aten_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda, const T* B,
               int64_t ldb, T beta, T* C, int64_t ldc) {
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor a = ta ? at::from_blob(const_cast<T*>(A), {k, m}, {lda, 1}, opts).t()
                    : at::from_blob(const_cast<T*>(A), {m, k}, {lda, 1}, opts);
  at::Tensor b = tb ? at::from_blob(const_cast<T*>(B), {n, k}, {ldb, 1}, opts).t()
                    : at::from_blob(const_cast<T*>(B), {k, n}, {ldb, 1}, opts);
  at::Tensor c = at::from_blob(C, {m, n}, {ldc, 1}, opts);
  at::addmm_out(c, c, a, b, beta, alpha);  // beta == 0 ignores c's old values
}

template <typename T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < n; ++c) C[r * ldc + c] = beta == T(0) ? T(0) : beta * C[r * ldc + c];
    return;
  }
  // Column-major BLAS sees row-major X as X^T: C^T = op(B)^T op(A)^T.
  const char opa = tb ? 'T' : 'N', opb = ta ? 'T' : 'N';
  const auto fn = blas_gemm(T(0));
  if (fn != nullptr && fits_int(m) && fits_int(n) && fits_int(k) && fits_int(lda) && fits_int(ldb) &&
      fits_int(ldc)) {
    const int M_ = static_cast<int>(n), N_ = static_cast<int>(m), K_ = static_cast<int>(k);
    const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
    return fn(&opa, &opb, &M_, &N_, &K_, &alpha, B, &la, A, &lb, &beta, C, &lc);
  }
  aten_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace

void rm_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

void rm_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* A, int64_t lda,
             const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace cpu
}  // namespace himoe
