// Masked NT-Xent CUDA kernels (plain CUDA; see ntxent_kernels.cuh for the contract).
//
// Block = 32 anchor rows (a0 .. a0+31) of modality i = blockIdx.y, 256 threads: thread t owns row
// ty = t / 8 and the 4 columns 4 * (t % 8) .. +3 of each 32 x 32 Gram tile, so the 8 lanes of a row
// are consecutive lanes of one warp and reduce with __shfl_xor_sync(width 8).
// The block walks every column tile of every modality jj; a tile of u_i u_jj^T serves:
//   jj == i: all partners j != i that qualify (mask mk[i, b, j], b != a);
//   jj != i: the single partner jj (mask mk[jj, b, i]), skipped when the pair does not qualify.
// Forward keeps a running (max, sum) per (row, partner) in shared memory (online log-sum-exp), so
// any temperature is safe. Backward recomputes the tile, forms
//   C[a, b] = sum_j w_ij mk mk (exp(x - lse[i,a,j]) + exp(x - lse[jj,b,.]))
// and adds C u_jj to the block's own rows of gu. Correctness-first: fp32/fp64 FMA tiles, no tensor
// cores.
#include "ntxent_kernels.cuh"

#include <math.h>

#ifndef HIMOE_LAUNCH  // hooks for csrc/cuda_emulation.h (the tests run these kernels on CPU threads)
#define HIMOE_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#define HIMOE_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

namespace himoe_cuda {
namespace {

constexpr int TA = 32;        // anchor rows per block
constexpr int TB = 32;        // columns per tile
constexpr int TK = 32;        // chunk of the embedding dimension
constexpr int THREADS = 256;  // 32 rows x 8 lanes x 4 columns

template <typename T>
__device__ __forceinline__ T dexp(T x);
template <>
__device__ __forceinline__ float dexp<float>(float x) { return expf(x); }
template <>
__device__ __forceinline__ double dexp<double>(double x) { return exp(x); }

template <typename T>
__device__ __forceinline__ T dlog(T x);
template <>
__device__ __forceinline__ float dlog<float>(float x) { return logf(x); }
template <>
__device__ __forceinline__ double dlog<double>(double x) { return log(x); }

template <typename T>
__device__ __forceinline__ T neg_inf() { return -static_cast<T>(INFINITY); }

template <typename T>
__device__ __forceinline__ T group_max(T v) {  // over the 8 lanes of a row
#pragma unroll
  for (int o = 4; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o, 8));
  return v;
}

template <typename T>
__device__ __forceinline__ T group_sum(T v) {
#pragma unroll
  for (int o = 4; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, 8);
  return v;
}

// acc[q] = UA[ty] . UB[4 tx + q] over the d columns; rows past nA / nB read as zero.
template <typename T>
__device__ void gram_tile(const T* __restrict__ UA, const T* __restrict__ UB, int nA, int nB, int64_t d,
                          T (*sA)[TK + 1], T (*sB)[TK + 1], T acc[4]) {
  const int t = threadIdx.x, ty = t / 8, tx = t % 8;
#pragma unroll
  for (int q = 0; q < 4; ++q) acc[q] = T(0);
  for (int64_t k0 = 0; k0 < d; k0 += TK) {
    for (int e = t; e < TA * TK; e += THREADS) {
      const int r = e / TK, c = e % TK;
      sA[r][c] = (r < nA && k0 + c < d) ? UA[r * d + k0 + c] : T(0);
    }
    for (int e = t; e < TB * TK; e += THREADS) {
      const int r = e / TK, c = e % TK;
      sB[r][c] = (r < nB && k0 + c < d) ? UB[r * d + k0 + c] : T(0);
    }
    __syncthreads();
#pragma unroll 8
    for (int c = 0; c < TK; ++c) {
      const T av = sA[ty][c];
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[q] += av * sB[4 * tx + q][c];
    }
    __syncthreads();
  }
}

template <typename T>
__device__ __forceinline__ bool modality_active(const T* __restrict__ w, int i, int M) {
  bool active = false;
  for (int j = 0; j < M; ++j) active |= (w[i * M + j] > T(0));
  return active;
}

template <typename T>
__global__ void __launch_bounds__(THREADS)
    lse_kernel(const T* __restrict__ u, const T* __restrict__ mk, const T* __restrict__ w, T* __restrict__ lse,
               int M, int64_t N, int64_t d, T inv_tau) {
  __shared__ T sA[TA][TK + 1];
  __shared__ T sB[TB][TK + 1];
  HIMOE_DYNAMIC_SMEM(smem);
  T* sM = reinterpret_cast<T*>(smem);                                   // [TA][M] running max
  T* sS = sM + TA * M;                                                  // [TA][M] running sum
  unsigned char* sMkA = reinterpret_cast<unsigned char*>(sS + TA * M);  // [TA][M]
  unsigned char* sMkB = sMkA + TA * M;                                  // [TB][M]

  const int i = blockIdx.y;
  const int64_t a0 = static_cast<int64_t>(blockIdx.x) * TA;
  const int nA = static_cast<int>(N - a0 < TA ? N - a0 : TA);
  const int t = threadIdx.x, ty = t / 8, tx = t % 8;
  const int64_t a = a0 + ty;

  for (int e = t; e < TA * M; e += THREADS) {
    const int r = e / M, j = e % M;
    sM[e] = neg_inf<T>();
    sS[e] = T(0);
    sMkA[e] = (r < nA) && mk[(static_cast<int64_t>(i) * N + a0 + r) * M + j] != T(0);
  }
  __syncthreads();

  if (modality_active(w, i, M)) {
    for (int jj = 0; jj < M; ++jj) {
      const bool within = (jj == i);
      if (!within && !(w[i * M + jj] > T(0))) continue;  // block-uniform
      for (int64_t b0 = 0; b0 < N; b0 += TB) {
        const int nB = static_cast<int>(N - b0 < TB ? N - b0 : TB);
        for (int e = t; e < TB * M; e += THREADS) {
          const int c = e / M, j = e % M;
          sMkB[e] = (c < nB) && mk[(static_cast<int64_t>(jj) * N + b0 + c) * M + j] != T(0);
        }
        __syncthreads();
        T x[4];
        gram_tile(u + (static_cast<int64_t>(i) * N + a0) * d, u + (static_cast<int64_t>(jj) * N + b0) * d, nA, nB, d,
                  sA, sB, x);
#pragma unroll
        for (int q = 0; q < 4; ++q) x[q] *= inv_tau;
        const int jlo = within ? 0 : jj, jhi = within ? M : jj + 1;
        for (int j = jlo; j < jhi; ++j) {
          if (within && (j == i || !(w[i * M + j] > T(0)))) continue;  // block-uniform
          const int mcol = within ? j : i;
          bool v[4];
          T tmax = neg_inf<T>();
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const int c = 4 * tx + q;
            v[q] = c < nB && sMkB[c * M + mcol] && !(within && b0 + c == a);
            if (v[q]) tmax = fmax(tmax, x[q]);
          }
          tmax = group_max(tmax);
          const T mold = sM[ty * M + j];
          const T mnew = fmax(mold, tmax);
          T part = T(0);
          if (mnew != neg_inf<T>()) {
#pragma unroll
            for (int q = 0; q < 4; ++q)
              if (v[q]) part += dexp(x[q] - mnew);
          }
          part = group_sum(part);
          __syncwarp();  // every lane of the row has read mold before lane 0 updates it
          if (tx == 0 && ty < nA && sMkA[ty * M + j] && mnew != neg_inf<T>()) {
            sS[ty * M + j] = (mold == neg_inf<T>() ? T(0) : sS[ty * M + j] * dexp(mold - mnew)) + part;
            sM[ty * M + j] = mnew;
          }
        }
        __syncthreads();  // before sMkB / sA / sB are refilled
      }
    }
  }
  __syncthreads();
  for (int e = t; e < TA * M; e += THREADS) {
    const int r = e / M, j = e % M;
    if (r < nA)
      lse[(static_cast<int64_t>(i) * N + a0 + r) * M + j] =
          (sMkA[e] && sM[e] != neg_inf<T>()) ? sM[e] + dlog(sS[e]) : T(0);
  }
}

template <typename T>
__global__ void __launch_bounds__(THREADS)
    grad_kernel(const T* __restrict__ u, const T* __restrict__ mk, const T* __restrict__ w, const T* __restrict__ lse,
                T* __restrict__ gu, int M, int64_t N, int64_t d, T inv_tau) {
  __shared__ T sA[TA][TK + 1];
  __shared__ T sB[TB][TK + 1];
  __shared__ T sC[TA][TB + 1];
  HIMOE_DYNAMIC_SMEM(smem);
  T* sLA = reinterpret_cast<T*>(smem);                                  // [TA][M] lse of the anchor rows
  T* sLB = sLA + TA * M;                                                // [TB][M] lse of the column rows
  unsigned char* sMkA = reinterpret_cast<unsigned char*>(sLB + TB * M); // [TA][M]
  unsigned char* sMkB = sMkA + TA * M;                                  // [TB][M]

  const int i = blockIdx.y;
  const int64_t a0 = static_cast<int64_t>(blockIdx.x) * TA;
  const int nA = static_cast<int>(N - a0 < TA ? N - a0 : TA);
  const int t = threadIdx.x, ty = t / 8, tx = t % 8;
  const int64_t a = a0 + ty;

  for (int e = t; e < TA * M; e += THREADS) {
    const int r = e / M, j = e % M;
    const int64_t off = (static_cast<int64_t>(i) * N + a0 + r) * M + j;
    sMkA[e] = (r < nA) && mk[off] != T(0);
    sLA[e] = (r < nA) ? lse[off] : T(0);
  }
  __syncthreads();
  if (!modality_active(w, i, M)) return;  // block-uniform: nothing to add

  for (int jj = 0; jj < M; ++jj) {
    const bool within = (jj == i);
    if (!within && !(w[i * M + jj] > T(0))) continue;
    const T* UB0 = u + static_cast<int64_t>(jj) * N * d;
    for (int64_t b0 = 0; b0 < N; b0 += TB) {
      const int nB = static_cast<int>(N - b0 < TB ? N - b0 : TB);
      for (int e = t; e < TB * M; e += THREADS) {
        const int c = e / M, j = e % M;
        const int64_t off = (static_cast<int64_t>(jj) * N + b0 + c) * M + j;
        sMkB[e] = (c < nB) && mk[off] != T(0);
        sLB[e] = (c < nB) ? lse[off] : T(0);
      }
      __syncthreads();
      T x[4];
      gram_tile(u + (static_cast<int64_t>(i) * N + a0) * d, UB0 + b0 * d, nA, nB, d, sA, sB, x);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int c = 4 * tx + q;
        const T xv = x[q] * inv_tau;
        T coef = T(0);
        if (ty < nA && c < nB) {
          if (within) {
            if (b0 + c != a)
              for (int j = 0; j < M; ++j) {
                const T wij = w[i * M + j];
                if (wij > T(0) && sMkA[ty * M + j] && sMkB[c * M + j])
                  coef += wij * (dexp(xv - sLA[ty * M + j]) + dexp(xv - sLB[c * M + j]));
              }
          } else if (sMkA[ty * M + jj] && sMkB[c * M + i]) {
            coef = w[i * M + jj] * (dexp(xv - sLA[ty * M + jj]) + dexp(xv - sLB[c * M + i]));
          }
        }
        sC[ty][c] = coef * inv_tau;
      }
      __syncthreads();
      // gu[i, a0 + r, k] += sum_c C[r][c] u[jj, b0 + c, k]
      for (int64_t k0 = 0; k0 < d; k0 += TK) {
        for (int e = t; e < TB * TK; e += THREADS) {
          const int c = e / TK, kk = e % TK;
          sB[c][kk] = (c < nB && k0 + kk < d) ? UB0[(b0 + c) * d + k0 + kk] : T(0);
        }
        __syncthreads();
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int kk = 4 * tx + q;
          T s = T(0);
#pragma unroll 8
          for (int c = 0; c < TB; ++c) s += sC[ty][c] * sB[c][kk];
          if (ty < nA && k0 + kk < d) gu[(static_cast<int64_t>(i) * N + a) * d + k0 + kk] += s;
        }
        __syncthreads();
      }
      __syncthreads();  // before sC / sMkB / sLB are refilled
    }
  }
}

template <typename T>
size_t dynamic_smem(int64_t M) {
  return static_cast<size_t>(2 * TA * M) * sizeof(T) + static_cast<size_t>(2 * TA * M);
}

bool bad_sizes(int64_t M, int64_t N, int64_t d) {
  return M < 1 || M > kMaxModalities || N < 0 || d < 0 || (N + TA - 1) / TA > 2147483647LL;
}

}  // namespace

template <typename T>
cudaError_t ntxent_lse(const T* u, const T* mk, const T* w, T* lse, int64_t M, int64_t N, int64_t d, double inv_tau,
                       cudaStream_t stream) {
  if (bad_sizes(M, N, d)) return cudaErrorInvalidValue;
  if (N == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((N + TA - 1) / TA), static_cast<unsigned>(M));
  HIMOE_LAUNCH(lse_kernel<T>, grid, THREADS, dynamic_smem<T>(M), stream)(u, mk, w, lse, static_cast<int>(M), N, d,
                                                                         static_cast<T>(inv_tau));
  return cudaGetLastError();
}

template <typename T>
cudaError_t ntxent_grad_lse(const T* u, const T* mk, const T* w, const T* lse, T* gu, int64_t M, int64_t N, int64_t d,
                            double inv_tau, cudaStream_t stream) {
  if (bad_sizes(M, N, d)) return cudaErrorInvalidValue;
  if (N == 0 || d == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((N + TA - 1) / TA), static_cast<unsigned>(M));
  HIMOE_LAUNCH(grad_kernel<T>, grid, THREADS, dynamic_smem<T>(M), stream)(u, mk, w, lse, gu, static_cast<int>(M), N,
                                                                          d, static_cast<T>(inv_tau));
  return cudaGetLastError();
}

template cudaError_t ntxent_lse<float>(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t,
                                       double, cudaStream_t);
template cudaError_t ntxent_lse<double>(const double*, const double*, const double*, double*, int64_t, int64_t,
                                        int64_t, double, cudaStream_t);
template cudaError_t ntxent_grad_lse<float>(const float*, const float*, const float*, const float*, float*, int64_t,
                                            int64_t, int64_t, double, cudaStream_t);
template cudaError_t ntxent_grad_lse<double>(const double*, const double*, const double*, const double*, double*,
                                             int64_t, int64_t, int64_t, double, cudaStream_t);

}  // namespace himoe_cuda
