// torch.library registration of the masked NT-Xent ops (namespace himoe_fast) and the CPU kernels.
//
//   himoe_fast::masked_ntxent_forward(Tensor z, Tensor present, float temperature) -> (Tensor loss, Tensor lse)
//   himoe_fast::masked_ntxent_backward(Tensor grad, Tensor z, Tensor present, Tensor lse, float temperature) -> Tensor
//   himoe_fast::masked_ntxent(Tensor z, Tensor present, float temperature) -> Tensor        (composite)
//
// loss is a 0-dim tensor; lse [M, N, M] holds the per-(anchor row, partner modality) log-sum-exp that
// the backward needs (0 where the row is not an anchor of that pair). The autograd formula (backward
// op) and the fake kernels are registered from Python (himoe_fast/ops/ext.py).
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <pybind11/pybind11.h>
#include <torch/library.h>

#include "ntxent_common.h"
#include "ntxent_cpu.h"

namespace himoe {
namespace {

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& z, const at::Tensor& present, double temperature) {
  check_inputs(z, present, temperature);
  TORCH_CHECK(z.device().is_cpu(), "masked_ntxent: CPU kernel got a tensor on ", z.device());
  at::AutoDispatchBelowADInplaceOrView guard;
  const Prep prep = prepare(z, present);
  at::Tensor lse = cpu::lse_cpu(prep, present, temperature);
  at::Tensor loss = assemble_loss(prep, lse, temperature);
  return {loss, lse};
}

at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& present, const at::Tensor& lse,
                        double temperature) {
  check_inputs(z, present, temperature);
  TORCH_CHECK(lse.dim() == 3 && lse.size(0) == z.size(0) && lse.size(1) == z.size(1) && lse.size(2) == z.size(0),
              "masked_ntxent_backward: lse must be [M, N, M], got ", lse.sizes());
  at::AutoDispatchBelowADInplaceOrView guard;
  const Prep prep = prepare(z, present);
  at::Tensor gu = cpu::grad_lse_cpu(prep, present, lse, temperature);
  return finish_grad(prep, gu, grad, temperature);
}

// The public scalar op: the first output of masked_ntxent_forward (autograd flows through it).
at::Tensor masked_ntxent_composite(const at::Tensor& z, const at::Tensor& present, double temperature) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("himoe_fast::masked_ntxent_forward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double)>();
  return std::get<0>(op.call(z, present, temperature));
}

}  // namespace
}  // namespace himoe

TORCH_LIBRARY_FRAGMENT(himoe_fast, m) {
  m.def("masked_ntxent_forward(Tensor z, Tensor present, float temperature) -> (Tensor, Tensor)");
  m.def("masked_ntxent_backward(Tensor grad, Tensor z, Tensor present, Tensor lse, float temperature) -> Tensor");
  m.def("masked_ntxent(Tensor z, Tensor present, float temperature) -> Tensor");
  m.impl("masked_ntxent", c10::DispatchKey::CompositeImplicitAutograd, TORCH_FN(himoe::masked_ntxent_composite));
}

TORCH_LIBRARY_IMPL(himoe_fast, CPU, m) {
  m.impl("masked_ntxent_forward", TORCH_FN(himoe::forward_cpu));
  m.impl("masked_ntxent_backward", TORCH_FN(himoe::backward_cpu));
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "himoe-fast masked NT-Xent extension; the ops live in torch.ops.himoe_fast";
#ifdef HIMOE_WITH_CUDA
  m.def("cuda_kernels", []() { return true; }, "whether the CUDA kernels were compiled in");
#else
  m.def("cuda_kernels", []() { return false; }, "whether the CUDA kernels were compiled in");
#endif
}
