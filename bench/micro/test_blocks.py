"""Micro-benchmarks, one pytest-benchmark group per slot: each choice of a slot is timed on the
same input, forward and forward+backward; and one group of whole models, one per named variant.
Blocks come from the registry, the same builders the model and the tests use, so a new choice or
variant is timed without an edit here.

    pytest bench/micro --benchmark-only --benchmark-json results/micro.json
"""

from __future__ import annotations

import pytest
import torch

from variants import GPT
from variants.registry import SLOTS, VARIANTS

MODES = ["fwd", "fwd+bwd"]


def _skip_off_cuda(kernel, device, name):
    """A kernel marked `cuda_timings_only` (ours: an interpreter runs it elsewhere) is timed on
    CUDA only."""
    if getattr(kernel, "cuda_timings_only", False) and device.type != "cuda":
        pytest.skip(
            f"the {name} kernel is timed on CUDA only (the CPU interpreter is no benchmark)"
        )


def _bench(benchmark, micro_setup, module, make_inputs, mode, group, name):
    cfg, device, batch = micro_setup
    module = module.to(device)
    inputs = make_inputs(cfg, device, batch)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    if mode == "fwd":

        def step():
            with torch.no_grad():
                module(*inputs)
            sync()
    else:

        def step():
            out = module(*inputs)
            out = out[0] if isinstance(out, tuple) else out
            out.float().sum().backward()
            sync()

    benchmark.group = f"{group} · {mode}"
    benchmark.extra_info.update(
        slot=group,
        choice=name,
        mode=mode,
        device=device.type,
        n_embd=cfg.n_embd,
        block_size=cfg.block_size,
        batch=batch,
    )
    benchmark.pedantic(step, rounds=20, iterations=3, warmup_rounds=3)


def _hidden(cfg, device, batch):
    x = torch.randn(batch, cfg.block_size, cfg.n_embd, device=device, requires_grad=True)
    return (x,)


def _qkv(cfg, device, batch):
    shape = (batch, cfg.n_head, cfg.block_size, cfg.head_size)
    return tuple(torch.randn(shape, device=device, requires_grad=True) for _ in range(3))


def _tokens(cfg, device, batch):
    return (torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), device=device),)


class _Kernel(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, q, k, v):
        return self.fn(q, k, v, 0.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(SLOTS["heads"]))
def test_heads(benchmark, micro_setup, name, mode):
    cfg = micro_setup[0]
    rotary = SLOTS["position"]["learned"].rotary(cfg)
    module = SLOTS["heads"][name](cfg, SLOTS["attention"]["sdpa"], rotary)
    _bench(benchmark, micro_setup, module, _hidden, mode, "heads", name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(SLOTS["attention"]))
def test_attention(benchmark, micro_setup, name, mode):
    _skip_off_cuda(SLOTS["attention"][name], micro_setup[1], name)
    _bench(benchmark, micro_setup, _Kernel(SLOTS["attention"][name]), _qkv, mode, "attention", name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(SLOTS["norm"]))
def test_norm(benchmark, micro_setup, name, mode):
    _bench(benchmark, micro_setup, SLOTS["norm"][name](micro_setup[0]), _hidden, mode, "norm", name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(SLOTS["mlp"]))
def test_mlp(benchmark, micro_setup, name, mode):
    _bench(benchmark, micro_setup, SLOTS["mlp"][name](micro_setup[0]), _hidden, mode, "mlp", name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(SLOTS["position"]))
def test_position(benchmark, micro_setup, name, mode):
    # a position scheme acts in two places (input embedding, q/k rotation): time the whole model
    cfg = micro_setup[0].replace(position=name)
    _bench(benchmark, micro_setup, GPT(cfg), _tokens, mode, "position", name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(SLOTS["qk_norm"]))
def test_qk_norm(benchmark, micro_setup, name, mode):
    module = _QK(SLOTS["qk_norm"][name](micro_setup[0]))
    _bench(benchmark, micro_setup, module, _qkv, mode, "qk_norm", name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant(benchmark, micro_setup, name, mode):
    cfg, device, _ = micro_setup
    cfg = VARIANTS[name].apply(cfg)
    _skip_off_cuda(SLOTS["attention"][cfg.attention], device, cfg.attention)
    _bench(benchmark, micro_setup, GPT(cfg), _tokens, mode, "variant", name)


class _QK(torch.nn.Module):
    """A q/k transform timed on q, k (v is ignored): the sum of both outputs is the result."""

    def __init__(self, qk):
        super().__init__()
        self.qk = qk

    def forward(self, q, k, v):
        a, b = self.qk(q, k)
        return a + b
