"""``torch.ops.himoe_fast.*``: the masked NT-Xent ops, defined when ``himoe_fast`` is imported.

Schemas, fake (meta) kernels and the autograd formula are registered here, at import, so the ops
resolve and trace (``torch.compile``, ``make_fx``, ``opcheck``) before anything is compiled. The
CPU and CUDA kernels are thin Python functions that build or load the C++/CUDA extension on their
first execution (:func:`himoe_fast.ops.ext.load_extension`) and call its kernels::

    masked_ntxent_forward(Tensor z, Tensor present, float temperature) -> (Tensor loss, Tensor lse)
    masked_ntxent_backward(Tensor grad, Tensor z, Tensor present, Tensor lse, float temperature) -> Tensor
    masked_ntxent(Tensor z, Tensor present, float temperature) -> Tensor      (composite: forward's loss)

``loss`` is 0-dim; ``lse`` ``[M, N, M]`` holds the per-(anchor row, partner modality) log-sum-exp the
backward needs. When the extension cannot be built the kernels raise ``RuntimeError`` naming the
reason; :func:`himoe_fast.ops.masked_ntxent` checks availability first and falls back to torch.
"""

from __future__ import annotations

import torch

NAMESPACE = "himoe_fast"

_lib = torch.library.Library(NAMESPACE, "FRAGMENT")
_lib.define("masked_ntxent_forward(Tensor z, Tensor present, float temperature) -> (Tensor, Tensor)")
_lib.define("masked_ntxent_backward(Tensor grad, Tensor z, Tensor present, Tensor lse, float temperature) -> Tensor")
_lib.define("masked_ntxent(Tensor z, Tensor present, float temperature) -> Tensor")


def _kernels(device: torch.device):
    """The extension module (built or loaded on first use) for tensors on ``device``."""
    from . import ext

    module = ext.load_extension()
    if module is None:
        raise RuntimeError(f"himoe_fast::masked_ntxent: the C++ extension is unavailable "
                           f"({ext.build_status(build=False)['error']})")
    if device.type == "cuda" and not module.cuda_kernels():
        raise RuntimeError("himoe_fast::masked_ntxent: this build of the extension has no CUDA kernels "
                           "(torch without CUDA, or nvcc not found)")
    return module


def _forward_kernel(z, present, temperature):
    mod = _kernels(z.device)
    fn = mod.forward_cuda if z.device.type == "cuda" else mod.forward_cpu
    return fn(z, present, temperature)


def _backward_kernel(grad, z, present, lse, temperature):
    mod = _kernels(z.device)
    fn = mod.backward_cuda if z.device.type == "cuda" else mod.backward_cpu
    return fn(grad, z, present, lse, temperature)


for _key in ("CPU", "CUDA"):
    _lib.impl("masked_ntxent_forward", _forward_kernel, _key)
    _lib.impl("masked_ntxent_backward", _backward_kernel, _key)


def _composite(z, present, temperature):
    """The public scalar op: the loss of ``masked_ntxent_forward`` (autograd flows through it)."""
    return torch.ops.himoe_fast.masked_ntxent_forward(z, present, temperature)[0]


_lib.impl("masked_ntxent", _composite, "CompositeImplicitAutograd")


@torch.library.register_fake("himoe_fast::masked_ntxent_forward", lib=_lib)
def _fake_forward(z, present, temperature):
    M, N = z.shape[0], z.shape[1]
    return z.new_empty(()), z.new_empty((M, N, M))


@torch.library.register_fake("himoe_fast::masked_ntxent_backward", lib=_lib)
def _fake_backward(grad, z, present, lse, temperature):
    return z.new_empty(z.shape)


def _setup_context(ctx, inputs, output):
    z, present, temperature = inputs
    _, lse = output
    ctx.save_for_backward(z, present, lse)
    ctx.temperature = temperature
    ctx.mark_non_differentiable(lse)


def _backward(ctx, grad_loss, grad_lse):
    z, present, lse = ctx.saved_tensors
    grad_z = None
    if ctx.needs_input_grad[0]:
        grad_z = torch.ops.himoe_fast.masked_ntxent_backward(grad_loss, z, present, lse, ctx.temperature)
    return grad_z, None, None


torch.library.register_autograd("himoe_fast::masked_ntxent_forward", _backward, setup_context=_setup_context,
                                lib=_lib)
