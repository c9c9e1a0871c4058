// Tile scheduler of the CPU NT-Xent: which Gram tiles exist, which worker computes which, and how
// many workers run.
//
// Layout. The tokens present in modality i are gathered ("compacted") into rows off[i]..off[i+1] of
// the operand U [rows, d]; absent tokens are never anchors nor negatives of any pair that involves i,
// so they cost nothing. The unordered Gram blocks U_i U_j^T (i <= j) are cut into tile x tile tiles:
// within-modality blocks are symmetric, so only tiles tA <= tB exist; cross blocks (i < j) run over
// the n_ij tokens present in both modalities (the only ones that count in pair (i, j)).
//
// Assignment. Static, longest task first to the least loaded worker; each worker accumulates into
// its own buffers, which the caller sums in a fixed order: deterministic for a given thread count.
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>
#include <vector>

namespace himoe {
namespace cpu {

constexpr int64_t kDefaultTile = 256;

// The tile edge: kDefaultTile, or HIMOE_FAST_NTXENT_TILE (tests use tiny tiles) read once per process.
int64_t default_tile();

// Where the compacted rows of each modality are and which pairs count (no element type: the
// scheduler never touches the data).
struct PairLayout {
  int64_t M = 0;
  std::vector<int64_t> off;      // [M + 1] first compact row of each modality
  std::vector<uint8_t> qual;     // [M * M] pair (i, j) qualifies (>= 2 shared tokens)
  std::vector<uint8_t> active;   // [M] modality has at least one qualifying pair
  // For pair i < j, the compact rows of its n_ij shared tokens in modality i and in modality j.
  std::vector<int64_t> poff, pn;        // [M * M] offset into prow_*, n_ij
  std::vector<int64_t> prow_i, prow_j;  // concatenated over the pairs
};

// One Gram tile: rows a0..a1 x columns b0..b1 of block (i, j). Within blocks (i == j) index the
// modality's compact rows; cross blocks index the pair's shared tokens (prow_i / prow_j).
struct Task {
  int32_t i, j;
  int64_t a0, a1, b0, b1;
  int64_t cost;  // elements of the tile (half for a diagonal tile) + 1
};

std::vector<Task> make_tasks(const PairLayout& L, int64_t tile);

// Task indices per worker: longest first onto the least loaded worker.
std::vector<std::vector<int64_t>> assign(const std::vector<Task>& tasks, int64_t W);

// Workers for ntasks tasks when each holds buffer_bytes of accumulators: at most the intra-op
// threads and the tasks, and the buffers together under ~512 MB (always >= 1).
int64_t n_workers(int64_t ntasks, int64_t buffer_bytes);

// body(w) for w in [0, W), on at::parallel_for's threads.
template <typename F>
void run_workers(int64_t W, F&& body) {
  if (W == 1) {
    body(0);
    return;
  }
  at::parallel_for(0, W, 1, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) body(w);
  });
}

}  // namespace cpu
}  // namespace himoe
