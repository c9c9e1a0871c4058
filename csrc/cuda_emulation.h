// Test-only: runs the plain-CUDA kernels of ntxent_kernels.cu on CPU threads, so that their logic
// (indexing, masks, online log-sum-exp, barriers, shuffles) is exercised on machines without a GPU.
// Include this, then ntxent_kernels.cu, in a C++ file (see ntxent_kernels_emu.cpp).
//
// Model: blocks run one after another; each CUDA thread of a block is one std::thread; __syncthreads
// is a barrier of the block (a thread that returns drops out of it); __shared__ variables are
// function statics (one copy, shared by the block's threads); __shfl_xor_sync exchanges through a
// block-wide buffer between two barriers, which is exact when every thread of the block reaches the
// shuffle (block-uniform control flow, as in these kernels; otherwise it deadlocks, i.e. fails).
// It does not model warp scheduling, the memory model or atomics: not a general CUDA emulator.
#pragma once

#define HIMOE_CUDA_EMULATION 1

#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
using cudaStream_t = void*;
inline cudaError_t cudaGetLastError() { return cudaSuccess; }

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace himoe_emu {
struct Idx {
  unsigned x = 0, y = 0, z = 0;
};
struct Block {
  std::barrier<>* bar;
  std::vector<double>* xchg;
};
inline thread_local Idx thread_idx, block_idx;
inline thread_local Block* block = nullptr;
alignas(64) inline unsigned char dynamic_smem[1 << 20];

inline void syncthreads() { block->bar->arrive_and_wait(); }

template <typename F>
auto launch(dim3 grid, unsigned threads, size_t smem, F kernel) {
  return [=](auto... args) {
    if (smem > sizeof(dynamic_smem)) throw std::runtime_error("emulation: dynamic shared memory too large");
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        std::barrier<> bar(static_cast<std::ptrdiff_t>(threads));
        std::vector<double> xchg(threads);
        Block blk{&bar, &xchg};
        std::vector<std::thread> pool;
        pool.reserve(threads);
        for (unsigned t = 0; t < threads; ++t)
          pool.emplace_back([&, t] {
            thread_idx = {t, 0, 0};
            block_idx = {bx, by, 0};
            block = &blk;
            kernel(args...);
            bar.arrive_and_drop();
          });
        for (auto& th : pool) th.join();
      }
  };
}
}  // namespace himoe_emu

template <typename T>
T __shfl_xor_sync(unsigned /*mask*/, T v, int lane_mask, int width = 32) {
  const unsigned tid = himoe_emu::thread_idx.x, lane = tid % 32;
  (*himoe_emu::block->xchg)[tid] = static_cast<double>(v);  // exact for float and double
  himoe_emu::syncthreads();
  const unsigned partner = (lane & ~static_cast<unsigned>(width - 1)) | ((lane ^ lane_mask) & (width - 1));
  const T r = static_cast<T>((*himoe_emu::block->xchg)[tid - lane + partner]);
  himoe_emu::syncthreads();
  return r;
}

#define threadIdx (himoe_emu::thread_idx)
#define blockIdx (himoe_emu::block_idx)
#define __syncthreads() himoe_emu::syncthreads()
#define __syncwarp() himoe_emu::syncthreads()  // reached by the whole block in these kernels
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(n)
#define __shared__ static
#define HIMOE_DYNAMIC_SMEM(name) unsigned char* name = himoe_emu::dynamic_smem
#define HIMOE_LAUNCH(kernel, grid, block, smem, stream) \
  himoe_emu::launch(grid, block, smem, [&](auto... kernel_args) { kernel(kernel_args...); })
