"""Triton kernels of the fast path (importable as ``himoe_fast.kernels``).

Each kernel module holds ``@triton.jit`` kernels with shapes in comments, a
``torch.autograd.Function`` and a small wrapper. Importing this package does not import triton;
the modules do, so set ``TRITON_INTERPRET=1`` before importing them on a machine without CUDA.
"""
