"""Options for the micro-benchmarks: the model size and device they run at."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser):
    parser.addoption(
        "--micro-model", default=None, help="size preset (default: tiny, small on CUDA)"
    )
    parser.addoption("--micro-device", default="auto", help="auto, cpu or cuda")


@pytest.fixture(scope="session")
def micro_setup(request):
    from bench.measure.env import resolve_device
    from variants import preset

    device = resolve_device(request.config.getoption("--micro-device"))
    name = request.config.getoption("--micro-model") or (
        "small" if device.type == "cuda" else "tiny"
    )
    batch = 12 if device.type == "cpu" else 32
    return preset(name, vocab_size=65), device, batch
