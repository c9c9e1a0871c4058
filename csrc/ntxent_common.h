// Masked NT-Xent over all modality pairs: the device-generic part (ATen ops only).
//
// Definition (DESIGN.md section 3): for every modality pair i < j keep the n_ij tokens present in
// both, u = normalize([z_i; z_j]), S = u u^T / tau without the diagonal, positive of row a = the same
// token in the other modality; pair loss = mean over the 2 n_ij rows of -log softmax(S[a])[pos(a)].
// Pairs with n_ij < 2 are skipped; the result is the mean over the Q pairs left (0 when Q == 0).
//
// Rewritten over ordered pairs (i, j), i != j, with w_ij = 1 / (Q * 2 n_ij) for qualifying pairs
// (0 otherwise) and Mk[i, a, j] = present_i[a] * present_j[a] * qualifies(i, j):
//
//   loss = sum_{i, a, j} w_ij Mk[i, a, j] (lse[i, a, j] - u_ia . u_ja / tau)
//   lse[i, a, j] = log( sum_{b != a, Mk[i,b,j]} exp(u_ia . u_ib / tau)        (same modality)
//                     + sum_{b,      Mk[i,b,j]} exp(u_ia . u_jb / tau) )      (other modality)
//
// The device kernels ("heavy" part) compute lse [M, N, M] in the forward and, in the backward,
// gu = d(sum w Mk lse)/du [M, N, d]; everything else (normalisation, masks, the positive term, the
// normalisation backward) is a handful of O(M^2 N d) ATen ops here, shared by CPU and CUDA.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace himoe {

constexpr double kNormEps = 1e-12;  // torch.nn.functional.normalize's eps

struct Prep {
  at::Tensor norm;  // [M, N, 1] L2 norms of z (0 for absent tokens)
  at::Tensor u;     // [M, N, d] z / max(norm, eps), contiguous
  at::Tensor mk;    // [M, N, M] pair masks (dtype of z), contiguous
  at::Tensor w;     // [M, M] pair weights 1 / (Q * 2 n_ij), 0 for pairs that do not qualify
};

inline void check_inputs(const at::Tensor& z, const at::Tensor& present, double temperature) {
  TORCH_CHECK(z.dim() == 3, "masked_ntxent: z must be [M, N, d], got ", z.sizes());
  TORCH_CHECK(present.dim() == 2 && present.size(0) == z.size(0) && present.size(1) == z.size(1),
              "masked_ntxent: present must be [M, N] = ", z.sizes().slice(0, 2), ", got ", present.sizes());
  TORCH_CHECK(present.scalar_type() == at::kBool, "masked_ntxent: present must be bool, got ",
              present.scalar_type());
  TORCH_CHECK(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble,
              "masked_ntxent: z must be float32 or float64, got ", z.scalar_type());
  TORCH_CHECK(present.device() == z.device(), "masked_ntxent: z and present on different devices");
  TORCH_CHECK(temperature > 0.0, "masked_ntxent: temperature must be > 0, got ", temperature);
}

inline Prep prepare(const at::Tensor& z, const at::Tensor& present) {
  const int64_t M = z.size(0);
  Prep p;
  // Absent tokens are neither anchors nor negatives: zero them first, so that whatever they hold
  // (even NaN/Inf) cannot leak into a masked product; their gradient is 0.
  const at::Tensor zs = at::where(present.unsqueeze(-1), z, at::zeros({}, z.options()));
  p.norm = at::linalg_vector_norm(zs, 2, {-1}, /*keepdim=*/true);
  p.u = (zs / p.norm.clamp_min(kNormEps)).contiguous();
  at::Tensor pf = present.to(z.scalar_type());                              // [M, N]
  at::Tensor cnt = at::matmul(pf, pf.t());                                  // n_ij, exact (< 2^24)
  at::Tensor eye = at::eye(M, present.options());
  at::Tensor qual = cnt.ge(2.0).logical_and(eye.logical_not());             // [M, M] bool
  at::Tensor q = qual.sum().to(z.scalar_type()).div(2.0).clamp_min(1.0);    // Q (1 when none)
  p.w = at::where(qual, (q * 2.0 * cnt).reciprocal(), at::zeros_like(cnt)); // [M, M]
  p.mk = (pf.unsqueeze(2) * pf.t().unsqueeze(0) * qual.to(z.scalar_type()).unsqueeze(1)).contiguous();
  return p;
}

// Scalar loss from lse: sum w Mk (lse - u_ia . u_ja / tau).
inline at::Tensor assemble_loss(const Prep& p, const at::Tensor& lse, double temperature) {
  at::Tensor ut = p.u.transpose(0, 1);                                      // [N, M, d]
  at::Tensor dots = at::bmm(ut, ut.transpose(1, 2)).permute({1, 0, 2});     // [M, N, M]: u_ia . u_ja
  at::Tensor coef = p.w.unsqueeze(1) * p.mk;                                // [M, N, M]
  return (coef * (lse - dots / temperature)).sum();
}

// gu (LSE part, from the device kernel) -> grad z: adds the positive term, scales by grad, and
// back-propagates through the normalisation.
inline at::Tensor finish_grad(const Prep& p, at::Tensor gu, const at::Tensor& grad, double temperature) {
  at::Tensor coef = (p.w.unsqueeze(1) * p.mk).permute({1, 0, 2});          // [N, M(i), M(j)]
  at::Tensor pos = at::bmm(coef, p.u.transpose(0, 1)).transpose(0, 1);      // [M, N, d]: sum_j c u_ja
  gu = (gu - pos * (2.0 / temperature)) * grad.to(gu.scalar_type());
  at::Tensor radial = (p.u * gu).sum(-1, /*keepdim=*/true);
  at::Tensor live = p.norm.gt(kNormEps).to(gu.scalar_type());
  return (gu - live * p.u * radial) / p.norm.clamp_min(kNormEps);
}

// Shared-shift mode (see ntxent_cpu.cpp): every logit is <= 1/tau because |u| <= 1, so with the
// fixed shift 1/tau all exponentials lie in [exp(-2/tau), 1]; exact while that does not underflow.
inline bool shared_shift_ok(at::ScalarType t, double temperature) {
  const double span = 2.0 / temperature;
  return t == at::kDouble ? span <= 700.0 : span <= 80.0;
}

}  // namespace himoe
