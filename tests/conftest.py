"""Shared test setup.

Triton kernels run on the CPU through the interpreter, which must be switched on before triton is
imported anywhere: do it here, first, when no CUDA device is visible.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402



@pytest.fixture(scope="module")
def one_cpu_thread():
    """For modules of tiny-shape tests: one intra-op thread avoids OpenMP barrier stalls on a shared,
    loaded CPU (with two threads a busy machine turns each parallel region into a scheduler wait)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
