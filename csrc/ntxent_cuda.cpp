// CUDA kernels of the masked NT-Xent ops: ATen prep (ntxent_common.h) + the plain-CUDA kernels of
// ntxent_kernels.cu, as himoe::forward_cuda / himoe::backward_cuda (exposed by ntxent_op.cpp). Compiled only
// when torch has CUDA (ext.py adds it and -DHIMOE_WITH_CUDA).
// It uses only device-generic c10 headers (the current stream comes through c10's virtual guard),
// so it also syntax-checks against a CPU build of torch (.ci/nvcc-check).
#include <ATen/Dispatch.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "ntxent_common.h"
#include "ntxent_kernels.cuh"

namespace himoe {
namespace {

cudaStream_t current_stream(const at::Device& device) {
  const c10::impl::VirtualGuardImpl impl(c10::DeviceType::CUDA);
  return static_cast<cudaStream_t>(impl.getStream(device).native_handle());
}

void check_cuda(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "masked_ntxent: ", what, " failed: ", cudaGetErrorString(err));
}

// The inputs checked (as every backend does, plus the CUDA limits); returns z's device.
at::Device checked_device(const at::Tensor& z, const at::Tensor& present, double temperature) {
  check_inputs(z, present, temperature);
  TORCH_CHECK(z.is_cuda(), "masked_ntxent: CUDA kernel got a tensor on ", z.device());
  TORCH_CHECK(z.size(0) <= himoe_cuda::kMaxModalities, "masked_ntxent: the CUDA kernels take at most ",
              himoe_cuda::kMaxModalities, " modalities, got ", z.size(0));
  return z.device();
}

// What both entry points set up, in this order (members initialise in declaration order): checked
// inputs, z's device current, ATen below autograd, the prep (u, mk, w), the sizes and the stream.
struct CudaCall {
  CudaCall(const at::Tensor& z, const at::Tensor& present, double temperature)
      : device_guard(checked_device(z, present, temperature)),
        prep(prepare(z, present)),
        w(prep.w.contiguous()),
        M(z.size(0)),
        N(z.size(1)),
        d(z.size(2)),
        stream(current_stream(z.device())) {}

  const c10::DeviceGuard device_guard;
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  const Prep prep;
  const at::Tensor w;  // [M, M] contiguous
  const int64_t M, N, d;
  const cudaStream_t stream;
};

}  // namespace

// Called from the Python-registered op kernels through the extension module (ntxent_op.cpp).
std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& z, const at::Tensor& present, double temperature) {
  const CudaCall c(z, present, temperature);
  at::Tensor lse = at::zeros({c.M, c.N, c.M}, c.prep.u.options());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "masked_ntxent_lse_cuda", [&] {
    check_cuda(himoe_cuda::ntxent_lse<scalar_t>(c.prep.u.data_ptr<scalar_t>(), c.prep.mk.data_ptr<scalar_t>(),
                                                c.w.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(), c.M, c.N, c.d,
                                                1.0 / temperature, c.stream),
               "ntxent_lse");
  });
  at::Tensor loss = assemble_loss(c.prep, lse, temperature);
  return {loss, lse};
}

at::Tensor backward_cuda(const at::Tensor& grad, const at::Tensor& z, const at::Tensor& present, const at::Tensor& lse,
                         double temperature) {
  const CudaCall c(z, present, temperature);
  const at::Tensor L = lse.to(c.prep.u.scalar_type()).contiguous();
  at::Tensor gu = at::zeros_like(c.prep.u);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "masked_ntxent_grad_lse_cuda", [&] {
    check_cuda(himoe_cuda::ntxent_grad_lse<scalar_t>(c.prep.u.data_ptr<scalar_t>(), c.prep.mk.data_ptr<scalar_t>(),
                                                     c.w.data_ptr<scalar_t>(), L.data_ptr<scalar_t>(),
                                                     gu.data_ptr<scalar_t>(), c.M, c.N, c.d, 1.0 / temperature,
                                                     c.stream),
               "ntxent_grad_lse");
  });
  return finish_grad(c.prep, gu, grad, temperature);
}

}  // namespace himoe
