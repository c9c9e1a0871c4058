// The masked NT-Xent kernels as plain functions of the extension module. The ops themselves
//
//   himoe_fast::masked_ntxent_forward(Tensor z, Tensor present, float temperature) -> (Tensor loss, Tensor lse)
//   himoe_fast::masked_ntxent_backward(Tensor grad, Tensor z, Tensor present, Tensor lse, float temperature) -> Tensor
//   himoe_fast::masked_ntxent(Tensor z, Tensor present, float temperature) -> Tensor        (composite)
//
// are defined from Python when himoe_fast is imported (himoe_fast/ops/library.py: schemas, fake
// kernels, autograd), so they resolve before this library is built; their CPU and CUDA kernels load
// this module on first execution and call the functions below.
//
// loss is a 0-dim tensor; lse [M, N, M] holds the per-(anchor row, partner modality) log-sum-exp that
// the backward needs (0 where the row is not an anchor of that pair). The CPU functions take an
// optional Gram tile edge (tests; 0 = the default).
//
// Only torch's pybind11 bindings are included, not <torch/extension.h> (the whole C++ frontend):
// this file is the longest to compile, and it needs nothing from the frontend.
#include <torch/csrc/utils/pybind.h>

#include "ntxent_common.h"
#include "ntxent_cpu.h"

namespace himoe {

#ifdef HIMOE_WITH_CUDA
// ntxent_cuda.cpp
std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& z, const at::Tensor& present, double temperature);
at::Tensor backward_cuda(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& present, const at::Tensor& lse,
                         double temperature);
#endif

namespace {

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& z, const at::Tensor& present, double temperature,
                                               int64_t tile) {
  check_inputs(z, present, temperature);
  TORCH_CHECK(z.device().is_cpu(), "masked_ntxent: CPU kernel got a tensor on ", z.device());
  at::AutoDispatchBelowADInplaceOrView guard;
  const Prep prep = prepare(z, present);
  at::Tensor lse = cpu::lse_cpu(prep, present, temperature, tile);
  at::Tensor loss = assemble_loss(prep, lse, temperature);
  return {loss, lse};
}

at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& present, const at::Tensor& lse,
                        double temperature, int64_t tile) {
  check_inputs(z, present, temperature);
  TORCH_CHECK(lse.dim() == 3 && lse.size(0) == z.size(0) && lse.size(1) == z.size(1) && lse.size(2) == z.size(0),
              "masked_ntxent_backward: lse must be [M, N, M], got ", lse.sizes());
  at::AutoDispatchBelowADInplaceOrView guard;
  const Prep prep = prepare(z, present);
  at::Tensor gu = cpu::grad_lse_cpu(prep, present, lse, temperature, tile);
  return finish_grad(prep, gu, grad, temperature);
}

}  // namespace
}  // namespace himoe

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "himoe-fast masked NT-Xent kernels; the ops live in torch.ops.himoe_fast";
  namespace py = pybind11;
  m.def("forward_cpu", &himoe::forward_cpu, "masked NT-Xent forward (CPU): (loss, lse)", py::arg("z"),
        py::arg("present"), py::arg("temperature"), py::arg("tile") = 0);
  m.def("backward_cpu", &himoe::backward_cpu, "masked NT-Xent backward (CPU): grad_z", py::arg("grad"), py::arg("z"),
        py::arg("present"), py::arg("lse"), py::arg("temperature"), py::arg("tile") = 0);
#ifdef HIMOE_WITH_CUDA
  m.def("forward_cuda", &himoe::forward_cuda, "masked NT-Xent forward (CUDA): (loss, lse)");
  m.def("backward_cuda", &himoe::backward_cuda, "masked NT-Xent backward (CUDA): grad_z");
  m.def("cuda_kernels", []() { return true; }, "whether the CUDA kernels were compiled in");
#else
  m.def("cuda_kernels", []() { return false; }, "whether the CUDA kernels were compiled in");
#endif
}
