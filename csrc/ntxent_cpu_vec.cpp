// Vector math of the CPU NT-Xent tiles (see ntxent_cpu_vec.h).
#include "ntxent_cpu_vec.h"

#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__INTEL_COMPILER)
// Run-time dispatch of the element-wise tile loops (glibc ifunc): the shipped build stays generic
// x86-64, the loops still get AVX2 / AVX-512 on machines that have them.
#define HIMOE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HIMOE_CLONES
#endif

namespace himoe {
namespace cpu {
namespace {

inline float exp_poly(float x) {
  x = x > -87.0f ? x : -87.0f;  // (maxss / minss forms: branch-free, so the loops vectorise)
  x = x < 88.0f ? x : 88.0f;
  const float t = x * 1.44269504088896341f;
  const float fn = (t + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23 trick)
  float r = x - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(fn) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

}  // namespace

HIMOE_CLONES void exp_affine(float* __restrict x, int64_t n, float s, float c) {
  for (int64_t k = 0; k < n; ++k) x[k] = exp_poly(x[k] * s - c);
}
void exp_affine(double* __restrict x, int64_t n, double s, double c) {
  for (int64_t k = 0; k < n; ++k) x[k] = std::exp(x[k] * s - c);
}

HIMOE_CLONES void exp_affine_mul(float* __restrict x, const float* __restrict m, int64_t n, float s, float c) {
  for (int64_t k = 0; k < n; ++k) x[k] = exp_poly(x[k] * s - c) * m[k];
}
void exp_affine_mul(double* __restrict x, const double* __restrict m, int64_t n, double s, double c) {
  for (int64_t k = 0; k < n; ++k) x[k] = std::exp(x[k] * s - c) * m[k];
}

HIMOE_CLONES void exp_affine_rank2(float* __restrict x, const float* __restrict mb, const float* __restrict rb,
                                   int64_t n, float s, float c, float ra, float ma) {
  for (int64_t k = 0; k < n; ++k) x[k] = exp_poly(x[k] * s - c) * (ra * mb[k] + ma * rb[k]);
}
void exp_affine_rank2(double* __restrict x, const double* __restrict mb, const double* __restrict rb, int64_t n,
                      double s, double c, double ra, double ma) {
  for (int64_t k = 0; k < n; ++k) x[k] = std::exp(x[k] * s - c) * (ra * mb[k] + ma * rb[k]);
}

}  // namespace cpu
}  // namespace himoe
