// Vector math of the CPU NT-Xent tiles: the element-wise loops over a Gram tile and the online
// log-sum-exp. No torch headers (ntxent_cpu_vec.cpp compiles in well under a second).
//
// float: the exp loops use a Cody-Waite + degree-6 polynomial exp (cephes expf, ~1 ulp) written so
// that GCC vectorises it without -ffast-math, in AVX-512 / AVX2 / generic clones picked at load time;
// double: std::exp (only gradcheck and the float64 tests use it).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace himoe {
namespace cpu {

// x[k] = exp(x[k] * s - c)
void exp_affine(float* x, int64_t n, float s, float c);
void exp_affine(double* x, int64_t n, double s, double c);

// x[k] = exp(x[k] * s - c) * m[k]
void exp_affine_mul(float* x, const float* m, int64_t n, float s, float c);
void exp_affine_mul(double* x, const double* m, int64_t n, double s, double c);

// x[k] = exp(x[k] * s - c) * (ra * mb[k] + ma * rb[k])   (one row of a cross tile, backward)
void exp_affine_rank2(float* x, const float* mb, const float* rb, int64_t n, float s, float c, float ra, float ma);
void exp_affine_rank2(double* x, const double* mb, const double* rb, int64_t n, double s, double c, double ra,
                      double ma);

// y[k] += a * x[k]
template <typename T>
inline void axpy(T* __restrict y, const T* __restrict x, T a, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] += a * x[k];
}

// Online log-sum-exp of the masked entries x[k * xs] (mask m[k * ms] != 0, or all when m is null;
// k != skip) merged into the running (mx, s): afterwards mx + log(s) is the log-sum-exp of all
// entries seen so far.
template <typename T>
void online_update(T& mx, T& s, const T* x, int64_t xs, const T* m, int64_t ms, int64_t n, int64_t skip) {
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  T tmax = ninf;
  for (int64_t k = 0; k < n; ++k)
    if ((m == nullptr || m[k * ms] != T(0)) && k != skip) tmax = std::max(tmax, x[k * xs]);
  if (tmax == ninf) return;
  const T nm = std::max(mx, tmax);
  T acc = (mx == ninf) ? T(0) : s * std::exp(mx - nm);
  for (int64_t k = 0; k < n; ++k)
    if ((m == nullptr || m[k * ms] != T(0)) && k != skip) acc += std::exp(x[k * xs] - nm);
  mx = nm;
  s = acc;
}

}  // namespace cpu
}  // namespace himoe
