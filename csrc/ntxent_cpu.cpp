// Masked NT-Xent, CPU algorithm: tiled Gram blocks, each computed once for all modality pairs.
//
// Layers (one file each): ntxent_cpu_tiles.{h,cpp} the compacted layout and the tile scheduler,
// ntxent_cpu_gemm.{h,cpp} the BLAS shim, ntxent_cpu_vec.{h,cpp} the element-wise exp loops and the
// online log-sum-exp; this file holds what one tile does in the forward and the backward and the two
// entry points. README.md says why the CUDA kernels take another route.
//
// Layout. The tokens present in modality i are gathered ("compacted") into rows off[i]..off[i+1] of
// U [rows, d] (normalised) with their pair masks Mk [rows, M]; absent tokens are never anchors nor
// negatives of any pair that involves i, so they cost nothing.
//
// Work. The unordered Gram blocks U_i U_j^T (i <= j, M(M+1)/2 of them) are cut into TILE x TILE
// tiles; within-modality blocks are symmetric, so only tiles tA <= tB are visited. Cross blocks
// (i < j) run over the n_ij tokens present in both modalities (their rows are gathered per tile), as
// only those count in pair (i, j). One task = one tile: a BLAS GEMM (MKL sgemm_, or at::addmm_out),
// then the tile feeds the accumulators of every pair it belongs to:
//   * within-modality tile of i: row a's sums for ALL partners j at once, masked by Mk[b, j]
//     (E [Ta x Tb] @ Mk_B [Tb x M], a small GEMM), and, for tA != tB, the transposed rows;
//   * cross tile (i, j): row sums (anchor a of i, partner j) and column sums (anchor b of j,
//     partner i), unmasked.
// No 2n x 2n matrix exists: per worker one tile of scratch, plus per-row statistics.
//
// Exponentials. "Shared" mode: |u| <= 1, so every logit is <= 1/tau; with the fixed shift 1/tau
// every exp lies in [exp(-2/tau), 1], which is exact as long as that does not underflow (fp32: tau >=
// 0.025, fp64: tau >= 0.00286). Then one exp per Gram-tile element serves every pair (within blocks)
// and both directions (cross blocks), and the row sums are masked GEMMs. Otherwise ("online" mode,
// small tau) each (pair, row) keeps a running max and sum (online log-sum-exp), as in flash attention.
//
// Backward. Per-row statistics lse [rows, M] are saved; tiles are recomputed. With
// R[a, j] = w_ij Mk[a, j] exp(1/tau - lse[a, j]) the coefficient of the similarity u_a . u_b is
//   within:  C = E o (R_A Mk_B^T + Mk_A R_B^T)    (a rank-2M mask: one small GEMM, inner 2M)
//   cross:   C = E o (R_A[:, j] 1^T + 1 R_B[:, i]^T)
// and grad_A += C U_B / tau, grad_B += C^T U_A / tau (BLAS). Online mode forms C with exp(x - lse).
//
// Threads. at::parallel_for over W workers; tasks are assigned statically (longest first to the least
// loaded worker), each worker accumulates into its own buffers, which are summed in a fixed order:
// results are deterministic for a given thread count.
#include "ntxent_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "ntxent_cpu_gemm.h"
#include "ntxent_cpu_tiles.h"
#include "ntxent_cpu_vec.h"

namespace himoe {
namespace cpu {
namespace {

// ---------------------------------------------------------------------------------------------
// The compacted operands of one call: the scheduler's layout plus the typed data.
template <typename T>
struct Problem : PairLayout {
  int64_t d = 0, rows = 0;
  const T* U = nullptr;          // [rows, d] normalised embeddings of the present tokens
  const T* Mk = nullptr;         // [rows, M] their pair masks
  T inv_tau = 0, shift = 0;
  bool shared = true;            // shared-shift mode (see the header of this file)
};

// ---------------------------------------------------------------------------------------------
// Per-worker scratch.
template <typename T>
struct Scratch {
  std::vector<T> G, K, col, UA, UB, tmp;
  Scratch(int64_t tile, int64_t d, bool need_k)
      : G(tile * tile), K(need_k ? tile * tile : 0), col(2 * tile), UA(tile * d), UB(tile * d), tmp(tile * d) {}
};

// The tile's operands: within-modality tiles read U in place; cross tiles gather the shared tokens'
// rows (Ta + Tb rows: negligible next to the Ta x Tb x d GEMM).
template <typename T>
struct TileRows {
  const T* UA;
  const T* UB;
  const int64_t* RA = nullptr;  // cross tiles: compact row of each tile row / column
  const int64_t* RB = nullptr;
  int64_t rA = 0, rB = 0;       // within tiles: first compact row
};

template <typename T>
TileRows<T> tile_rows(const Problem<T>& P, const Task& t, Scratch<T>& S) {
  TileRows<T> r;
  const int64_t d = P.d;
  if (t.i == t.j) {
    r.rA = P.off[t.i] + t.a0;
    r.rB = P.off[t.j] + t.b0;
    r.UA = P.U + r.rA * d;
    r.UB = P.U + r.rB * d;
    return r;
  }
  const int64_t po = P.poff[t.i * P.M + t.j];
  r.RA = P.prow_i.data() + po + t.a0;
  r.RB = P.prow_j.data() + po + t.b0;
  for (int64_t a = 0; a < t.a1 - t.a0; ++a) std::memcpy(S.UA.data() + a * d, P.U + r.RA[a] * d, d * sizeof(T));
  for (int64_t b = 0; b < t.b1 - t.b0; ++b) std::memcpy(S.UB.data() + b * d, P.U + r.RB[b] * d, d * sizeof(T));
  r.UA = S.UA.data();
  r.UB = S.UB.data();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Forward: per-worker (mx, s) [rows, M]; in shared mode mx is the constant shift and s the sum.
template <typename T>
void forward_task(const Problem<T>& P, const Task& t, Scratch<T>& S, T* mx, T* s) {
  const int64_t M = P.M, d = P.d, i = t.i, j = t.j;
  const int64_t Ta = t.a1 - t.a0, Tb = t.b1 - t.b0;
  const TileRows<T> R = tile_rows(P, t, S);
  T* G = S.G.data();
  const bool diag = (i == j && t.a0 == t.b0);
  rm_gemm(false, true, Ta, Tb, d, T(1), R.UA, d, R.UB, d, T(0), G, Tb);  // G = U_A U_B^T

  if (i == j) {
    const T* MkA = P.Mk + R.rA * M;
    const T* MkB = P.Mk + R.rB * M;
    if (P.shared) {
      exp_affine(G, Ta * Tb, P.inv_tau, P.shift);  // E = exp(G / tau - 1 / tau)
      if (diag)
        for (int64_t a = 0; a < Ta; ++a) G[a * Tb + a] = T(0);
      // row sums of every partner j at once: s_A += E Mk_B, s_B += E^T Mk_A
      rm_gemm(false, false, Ta, M, Tb, T(1), G, Tb, MkB, M, T(1), s + R.rA * M, M);
      if (!diag) rm_gemm(true, false, Tb, M, Ta, T(1), G, Tb, MkA, M, T(1), s + R.rB * M, M);
      return;
    }
    for (int64_t k = 0; k < Ta * Tb; ++k) G[k] *= P.inv_tau;  // online mode: logits
    for (int64_t jj = 0; jj < M; ++jj) {
      if (!P.qual[i * M + jj]) continue;
      for (int64_t a = 0; a < Ta; ++a) {
        if (MkA[a * M + jj] == T(0)) continue;
        const int64_t r = (R.rA + a) * M + jj;
        online_update(mx[r], s[r], G + a * Tb, 1, MkB + jj, M, Tb, diag ? a : -1);
      }
      if (diag) continue;
      for (int64_t b = 0; b < Tb; ++b) {
        if (MkB[b * M + jj] == T(0)) continue;
        const int64_t r = (R.rB + b) * M + jj;
        online_update(mx[r], s[r], G + b, Tb, MkA + jj, M, Ta, -1);
      }
    }
    return;
  }

  // Cross tile of pair (i, j): every row and column is a shared token, no mask.
  if (P.shared) {
    exp_affine(G, Ta * Tb, P.inv_tau, P.shift);
    T* colsum = S.col.data();
    std::fill(colsum, colsum + Tb, T(0));
    for (int64_t a = 0; a < Ta; ++a) {
      T rs = 0;
      const T* row = G + a * Tb;
      for (int64_t b = 0; b < Tb; ++b) rs += row[b];
      s[R.RA[a] * M + j] += rs;
      axpy(colsum, row, T(1), Tb);
    }
    for (int64_t b = 0; b < Tb; ++b) s[R.RB[b] * M + i] += colsum[b];
    return;
  }
  for (int64_t k = 0; k < Ta * Tb; ++k) G[k] *= P.inv_tau;
  for (int64_t a = 0; a < Ta; ++a) {
    const int64_t r = R.RA[a] * M + j;
    online_update<T>(mx[r], s[r], G + a * Tb, 1, nullptr, 0, Tb, -1);
  }
  for (int64_t b = 0; b < Tb; ++b) {
    const int64_t r = R.RB[b] * M + i;
    online_update<T>(mx[r], s[r], G + b, Tb, nullptr, 0, Ta, -1);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: per-worker gradient buffer g [rows, d] (LSE part, already divided by tau).
// RM = [R | Mk], MR = [Mk | R] (each [rows, 2M]) in shared mode; lse [rows, M], w [M, M] in online mode.
template <typename T>
void backward_task(const Problem<T>& P, const Task& t, const T* RM, const T* MR, const T* lse, const T* w,
                   Scratch<T>& S, T* g) {
  const int64_t M = P.M, d = P.d, i = t.i, j = t.j;
  const int64_t Ta = t.a1 - t.a0, Tb = t.b1 - t.b0;
  const TileRows<T> R = tile_rows(P, t, S);
  T* G = S.G.data();
  const bool diag = (i == j && t.a0 == t.b0);
  rm_gemm(false, true, Ta, Tb, d, T(1), R.UA, d, R.UB, d, T(0), G, Tb);

  if (i == j) {
    const T* MkA = P.Mk + R.rA * M;
    const T* MkB = P.Mk + R.rB * M;
    if (P.shared) {
      // K = [R_A | Mk_A] [Mk_B | R_B]^T = R_A Mk_B^T + Mk_A R_B^T ; C = E o K
      T* K = S.K.data();
      rm_gemm(false, true, Ta, Tb, 2 * M, T(1), RM + R.rA * 2 * M, 2 * M, MR + R.rB * 2 * M, 2 * M, T(0), K, Tb);
      exp_affine_mul(G, K, Ta * Tb, P.inv_tau, P.shift);
    } else {
      const T* LA = lse + R.rA * M;
      const T* LB = lse + R.rB * M;
      for (int64_t a = 0; a < Ta; ++a)
        for (int64_t b = 0; b < Tb; ++b) {
          const T x = G[a * Tb + b] * P.inv_tau;
          T c = 0;
          for (int64_t jj = 0; jj < M; ++jj)
            if (MkA[a * M + jj] != T(0) && MkB[b * M + jj] != T(0))
              c += w[i * M + jj] * (std::exp(x - LA[a * M + jj]) + std::exp(x - LB[b * M + jj]));
          G[a * Tb + b] = c;
        }
    }
    if (diag)
      for (int64_t a = 0; a < Ta; ++a) G[a * Tb + a] = T(0);
    // g_A += C U_B / tau ; g_B += C^T U_A / tau  (the diagonal tile's C already holds both directions)
    rm_gemm(false, false, Ta, d, Tb, P.inv_tau, G, Tb, R.UB, d, T(1), g + R.rA * d, d);
    if (!diag) rm_gemm(true, false, Tb, d, Ta, P.inv_tau, G, Tb, R.UA, d, T(1), g + R.rB * d, d);
    return;
  }

  // Cross tile: C[a, b] = E[a, b] (R[RA[a], j] + R[RB[b], i])  (shared mode; all masks are 1 here)
  if (P.shared) {
    T* ones = S.col.data();
    T* rB = S.col.data() + Tb;
    for (int64_t b = 0; b < Tb; ++b) {
      ones[b] = T(1);
      rB[b] = RM[R.RB[b] * 2 * M + i];
    }
    for (int64_t a = 0; a < Ta; ++a)
      exp_affine_rank2(G + a * Tb, ones, rB, Tb, P.inv_tau, P.shift, RM[R.RA[a] * 2 * M + j], T(1));
  } else {
    const T wij = w[i * M + j];
    for (int64_t a = 0; a < Ta; ++a) {
      const T la = lse[R.RA[a] * M + j];
      for (int64_t b = 0; b < Tb; ++b) {
        const T x = G[a * Tb + b] * P.inv_tau;
        G[a * Tb + b] = wij * (std::exp(x - la) + std::exp(x - lse[R.RB[b] * M + i]));
      }
    }
  }
  T* tmp = S.tmp.data();
  rm_gemm(false, false, Ta, d, Tb, P.inv_tau, G, Tb, R.UB, d, T(0), tmp, d);  // C U_B / tau
  for (int64_t a = 0; a < Ta; ++a) axpy(g + R.RA[a] * d, tmp + a * d, T(1), d);
  rm_gemm(true, false, Tb, d, Ta, P.inv_tau, G, Tb, R.UA, d, T(0), tmp, d);   // C^T U_A / tau
  for (int64_t b = 0; b < Tb; ++b) axpy(g + R.RB[b] * d, tmp + b * d, T(1), d);
}

// ---------------------------------------------------------------------------------------------
struct Compaction {
  std::vector<at::Tensor> idx;  // per modality: indices of present tokens
  std::vector<int64_t> off;
};

Compaction compact_index(const at::Tensor& present) {
  Compaction c;
  const int64_t M = present.size(0);
  c.off.assign(M + 1, 0);
  for (int64_t i = 0; i < M; ++i) {
    c.idx.push_back(present[i].nonzero().squeeze(1));
    c.off[i + 1] = c.off[i] + c.idx.back().numel();
  }
  return c;
}

at::Tensor gather_rows(const at::Tensor& x, const Compaction& c) {  // x [M, N, k] -> [rows, k]
  std::vector<at::Tensor> parts;
  for (size_t i = 0; i < c.idx.size(); ++i) parts.push_back(x[i].index_select(0, c.idx[i]));
  return at::cat(parts, 0).contiguous();
}

at::Tensor scatter_rows(const at::Tensor& rows, const Compaction& c, int64_t N) {  // -> [M, N, k]
  const int64_t M = static_cast<int64_t>(c.idx.size());
  at::Tensor out = at::zeros({M, N, rows.size(1)}, rows.options());
  for (int64_t i = 0; i < M; ++i)
    out[i].index_copy_(0, c.idx[i], rows.narrow(0, c.off[i], c.off[i + 1] - c.off[i]));
  return out;
}

template <typename T>
Problem<T> make_problem(const at::Tensor& Uc, const at::Tensor& Mkc, const at::Tensor& w, const Compaction& c,
                        int64_t N, double temperature) {
  Problem<T> P;
  P.M = w.size(0);
  P.d = Uc.size(1);
  P.rows = Uc.size(0);
  P.off = c.off;
  P.U = Uc.data_ptr<T>();
  P.Mk = Mkc.data_ptr<T>();
  at::Tensor wq = w.gt(0).to(at::kByte).contiguous();
  P.qual.assign(wq.data_ptr<uint8_t>(), wq.data_ptr<uint8_t>() + P.M * P.M);
  P.active.assign(P.M, 0);
  for (int64_t i = 0; i < P.M; ++i)
    for (int64_t j = 0; j < P.M; ++j) P.active[i] |= P.qual[i * P.M + j];
  // token -> compact row per modality, then the shared tokens of every qualifying pair
  std::vector<int64_t> row_of(P.M * N, -1);
  for (int64_t i = 0; i < P.M; ++i) {
    const at::Tensor idx = c.idx[i].contiguous();
    const int64_t* ix = idx.data_ptr<int64_t>();
    for (int64_t k = 0; k < idx.numel(); ++k) row_of[i * N + ix[k]] = c.off[i] + k;
  }
  P.poff.assign(P.M * P.M, 0);
  P.pn.assign(P.M * P.M, 0);
  for (int64_t i = 0; i < P.M; ++i)
    for (int64_t j = i + 1; j < P.M; ++j) {
      if (!P.qual[i * P.M + j]) continue;
      P.poff[i * P.M + j] = static_cast<int64_t>(P.prow_i.size());
      for (int64_t tok = 0; tok < N; ++tok)
        if (row_of[i * N + tok] >= 0 && row_of[j * N + tok] >= 0) {
          P.prow_i.push_back(row_of[i * N + tok]);
          P.prow_j.push_back(row_of[j * N + tok]);
        }
      P.pn[i * P.M + j] = static_cast<int64_t>(P.prow_i.size()) - P.poff[i * P.M + j];
    }
  P.inv_tau = static_cast<T>(1.0 / temperature);
  P.shared = shared_shift_ok(Uc.scalar_type(), temperature);
  P.shift = P.shared ? P.inv_tau : T(0);
  return P;
}

template <typename T>
at::Tensor lse_impl(const Prep& prep, const at::Tensor& present, double temperature, int64_t tile) {
  const int64_t M = prep.u.size(0), N = prep.u.size(1);
  const Compaction c = compact_index(present);
  const at::Tensor Uc = gather_rows(prep.u, c), Mkc = gather_rows(prep.mk, c);
  const Problem<T> P = make_problem<T>(Uc, Mkc, prep.w, c, N, temperature);
  const std::vector<Task> tasks = make_tasks(P, tile);
  const int64_t W = n_workers(static_cast<int64_t>(tasks.size()), 2 * P.rows * M * int64_t(sizeof(T)));
  const auto per = assign(tasks, W);
  const T ninf = -std::numeric_limits<T>::infinity();
  std::vector<T> mx(W * P.rows * M, P.shared ? P.shift : ninf), s(W * P.rows * M, T(0));
  run_workers(W, [&](int64_t w) {
    Scratch<T> S(tile, P.d, false);
    T* mxw = mx.data() + w * P.rows * M;
    T* sw = s.data() + w * P.rows * M;
    for (int64_t k : per[w]) forward_task(P, tasks[k], S, mxw, sw);
  });
  // Merge the workers' (max, sum) in a fixed order; lse = max + log(sum) where the mask is set.
  at::Tensor Lc = at::zeros({P.rows, M}, Uc.options());
  T* L = Lc.data_ptr<T>();
  const int64_t RM = P.rows * M;
  at::parallel_for(0, RM, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (P.Mk[r] == T(0)) continue;
      T m = ninf;
      for (int64_t w = 0; w < W; ++w) m = std::max(m, mx[w * RM + r]);
      T acc = 0;
      for (int64_t w = 0; w < W; ++w)
        if (mx[w * RM + r] != ninf) acc += s[w * RM + r] * std::exp(mx[w * RM + r] - m);
      L[r] = m + std::log(acc);
    }
  });
  return scatter_rows(Lc, c, N);
}

template <typename T>
at::Tensor grad_impl(const Prep& prep, const at::Tensor& present, const at::Tensor& lse, double temperature,
                     int64_t tile) {
  const int64_t M = prep.u.size(0), N = prep.u.size(1), d = prep.u.size(2);
  const Compaction c = compact_index(present);
  const at::Tensor Uc = gather_rows(prep.u, c), Mkc = gather_rows(prep.mk, c);
  const at::Tensor Lc = gather_rows(lse.to(prep.u.scalar_type()), c);
  const Problem<T> P = make_problem<T>(Uc, Mkc, prep.w, c, N, temperature);
  const at::Tensor wc = prep.w.contiguous();
  at::Tensor RM, MR;
  if (P.shared) {  // R = w_ij Mk exp(1/tau - lse), [M, N, M] -> compact rows
    const at::Tensor L = lse.to(prep.u.scalar_type());
    const at::Tensor R = at::where(prep.mk.ne(0), prep.w.unsqueeze(1) * at::exp(static_cast<double>(P.shift) - L),
                                   at::zeros_like(L));
    const at::Tensor Rc = gather_rows(R, c);
    RM = at::cat({Rc, Mkc}, 1).contiguous();
    MR = at::cat({Mkc, Rc}, 1).contiguous();
  }
  const std::vector<Task> tasks = make_tasks(P, tile);
  const int64_t W = n_workers(static_cast<int64_t>(tasks.size()), P.rows * d * int64_t(sizeof(T)));
  const auto per = assign(tasks, W);
  std::vector<T> gbuf(W * P.rows * d, T(0));
  run_workers(W, [&](int64_t w) {
    Scratch<T> S(tile, d, P.shared);
    for (int64_t k : per[w])
      backward_task(P, tasks[k], P.shared ? RM.data_ptr<T>() : nullptr, P.shared ? MR.data_ptr<T>() : nullptr,
                    Lc.data_ptr<T>(), wc.data_ptr<T>(), S, gbuf.data() + w * P.rows * d);
  });
  at::Tensor gc = at::empty({P.rows, d}, Uc.options());
  T* out = gc.data_ptr<T>();
  const int64_t RD = P.rows * d;
  at::parallel_for(0, RD, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      T acc = 0;
      for (int64_t w = 0; w < W; ++w) acc += gbuf[w * RD + k];
      out[k] = acc;
    }
  });
  return scatter_rows(gc, c, N);
}

}  // namespace

at::Tensor lse_cpu(const Prep& prep, const at::Tensor& present, double temperature, int64_t tile) {
  const int64_t t = tile >= 1 ? tile : default_tile();
  return AT_DISPATCH_FLOATING_TYPES(prep.u.scalar_type(), "masked_ntxent_lse_cpu",
                                    [&] { return lse_impl<scalar_t>(prep, present, temperature, t); });
}

at::Tensor grad_lse_cpu(const Prep& prep, const at::Tensor& present, const at::Tensor& lse, double temperature,
                        int64_t tile) {
  const int64_t t = tile >= 1 ? tile : default_tile();
  return AT_DISPATCH_FLOATING_TYPES(prep.u.scalar_type(), "masked_ntxent_grad_lse_cpu",
                                    [&] { return grad_impl<scalar_t>(prep, present, lse, temperature, t); });
}

}  // namespace cpu
}  // namespace himoe
