"""Test-wide setup.

Triton's interpreter must be switched on before any `@triton.jit` decorator runs, so it is set
here, before test modules import the kernel. On a machine with CUDA the real kernels run.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
