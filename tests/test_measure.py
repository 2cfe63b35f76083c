"""Tests for bench.measure: the CPU memory tracker against known allocations, timers, FLOPs."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from bench import measure
from bench.measure import flops, memory

CPU = torch.device("cpu")
MiB = 2**20
EXTRA = 8 * MiB

# Both CPU trackers are checked: MemTracker is what peak_memory_bytes uses, the dispatch-mode
# tracker is its fallback for torch builds without torch.distributed.
TRACKERS = {
    "memtracker": lambda fn, modules=(), optimizer=None: memory._cpu_peak_memtracker(
        fn, list(modules), [optimizer] if optimizer is not None else []
    ),
    "dispatch": lambda fn, modules=(), optimizer=None: memory._cpu_peak_dispatch(
        fn, list(modules), [optimizer] if optimizer is not None else []
    ),
}


@pytest.fixture(params=sorted(TRACKERS))
def cpu_peak(request):
    if request.param == "memtracker" and memory._memtracker_class() is None:
        pytest.skip("MemTracker not available in this torch build")
    return TRACKERS[request.param]


def _work() -> torch.Tensor:
    """Fixed work whose own peak is well above zero (a few 256x256 fp32 temporaries)."""
    x = torch.randn(256, 256)
    y = x @ x
    z = torch.relu(y) + 1
    return z.sum()


def _work_with_extra() -> torch.Tensor:
    extra = torch.empty(EXTRA, dtype=torch.uint8)  # alive until return
    out = _work()
    del extra
    return out


def test_extra_allocation_shows_up_at_its_size(cpu_peak):
    base = cpu_peak(_work)
    with_extra = cpu_peak(_work_with_extra)
    assert base > 0
    diff = with_extra - base
    assert diff == pytest.approx(EXTRA, rel=0.02), (base, with_extra, diff)


def test_freed_memory_is_not_counted(cpu_peak):
    """Two 8 MiB buffers alive one after the other peak at 8 MiB, not 16: frees are seen."""

    def sequential():
        a = torch.empty(EXTRA, dtype=torch.uint8)
        del a
        b = torch.empty(EXTRA, dtype=torch.uint8)
        del b

    def overlapping():
        a = torch.empty(EXTRA, dtype=torch.uint8)
        b = torch.empty(EXTRA, dtype=torch.uint8)
        del a, b

    assert cpu_peak(sequential) == pytest.approx(EXTRA, rel=0.02)
    assert cpu_peak(overlapping) == pytest.approx(2 * EXTRA, rel=0.02)


def _small_training_setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(32, 64)

    def step(n_micro: int = 1):
        for _ in range(n_micro):
            loss = model(x).pow(2).mean()
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return model, opt, step, param_bytes


def test_training_step_peak_covers_params_grads_and_adam_state(cpu_peak):
    model, opt, step, param_bytes = _small_training_setup()
    step()  # create AdamW state (exp_avg, exp_avg_sq) so the measured step is a steady one
    peak = cpu_peak(step, modules=[model], optimizer=opt)
    # params + grads + two Adam moments are all alive during opt.step().
    assert peak >= 4 * param_bytes
    # ... and the tracker is not wildly over-counting either (activations here are tiny).
    assert peak < 8 * param_bytes


def test_peak_memory_bytes_public_api_and_grad_accumulation():
    """Two forwards of the root module in one call (gradient accumulation) are allowed."""
    model, opt, step, param_bytes = _small_training_setup()
    step()
    peak1 = measure.peak_memory_bytes(step, CPU, modules=model, optimizer=opt)
    peak2 = measure.peak_memory_bytes(lambda: step(2), CPU, modules=[model], optimizer=opt)
    assert peak1 >= 4 * param_bytes
    # Accumulating into existing grads needs no more than a fresh step plus one grad copy.
    assert 4 * param_bytes <= peak2 <= peak1 + param_bytes


def test_step_timer_excludes_warmup_and_times_sleeps():
    timer = measure.StepTimer(CPU, warmup=2)
    for i in range(7):
        timer.start()
        time.sleep(0.05 if i < 2 else 0.01)  # slow warm-up steps must not leak in
        timer.stop()
    s = timer.summary()
    assert s["n"] == 5
    assert timer.steps_seen == 7
    assert set(s) == {"median_ms", "p10_ms", "p90_ms", "iqr_ms", "mean_ms", "n"}
    assert 9.5 <= s["median_ms"] < 30
    assert s["p10_ms"] <= s["median_ms"] <= s["p90_ms"]
    assert s["iqr_ms"] >= 0


def test_step_timer_empty_summary_is_nan():
    timer = measure.StepTimer(CPU, warmup=3)
    timer.start()
    timer.stop()
    s = timer.summary()
    assert s["n"] == 0
    assert all(math.isnan(s[k]) for k in ("median_ms", "p10_ms", "p90_ms", "iqr_ms", "mean_ms"))


def test_step_timer_stop_without_start():
    with pytest.raises(RuntimeError):
        measure.StepTimer(CPU, warmup=0).stop()


def test_time_fn_counts_iters():
    calls = []
    s = measure.time_fn(lambda: calls.append(time.sleep(0.002)), CPU, warmup=2, iters=4)
    assert len(calls) == 6
    assert s["n"] == 4
    assert s["median_ms"] >= 1.5


# `tiny` (4 layers, d = 128, 4 heads of 32, context 64) on a 65-token vocabulary, by hand:
# per layer c_attn 128x384 + c_proj 128x128 + c_fc 128x512 + c_proj 512x128 = 196,608 weights,
# the head 65 x 128 = 8,320; causal attention attends (64 + 1) / 2 = 32.5 keys per query on
# average, QK^T and AV 2 x 2 x 32.5 x 128 FLOPs per layer; training = 3 x forward.
TINY_HEAD = 65 * 128
TINY_ATTN = 4 * 4 * 32.5 * 128  # n_layer x (QK^T + AV) x keys x d, 2 FLOPs per multiply-add


def _tiny_flops(variant: str) -> int:
    from variants.config import preset
    from variants.model import GPT
    from variants.registry import get_variant

    cfg = get_variant(variant).apply(preset("tiny", vocab_size=65))
    with torch.device("meta"):  # shapes only
        return measure.flops_per_token(GPT(cfg), 64)


@pytest.mark.parametrize(
    "variant, layer_weights, attention",
    [
        ("baseline", 196_608, TINY_ATTN),
        # SwiGLU: three 128 x 341 matrices (h = round(8 x 128 / 3)) instead of two 128 x 512
        ("swiglu", 196_608 - 2 * 128 * 512 + 3 * 128 * 341, TINY_ATTN),
        # GQA, 2 k/v heads of 32: c_attn 128 x (128 + 64 + 64); MQA, one: 128 x (128 + 32 + 32)
        ("gqa", 196_608 - 128 * 384 + 128 * 256, TINY_ATTN),
        ("mqa", 196_608 - 128 * 384 + 128 * 192, TINY_ATTN),
        # a 16-token window: positions 1..16 see t keys, the other 48 see 16: 904 / 64 on average
        ("sliding-window", 196_608, 4 * 4 * (136 + 48 * 16) / 64 * 128),
    ],
)
def test_flops_per_token_hand_counts(variant, layer_weights, attention):
    forward = 2 * (4 * layer_weights + TINY_HEAD) + attention
    assert _tiny_flops(variant) == round(3 * forward)


def test_flops_per_token_baseline_number():
    """The baseline's count written out: 3 x (2 x (4 x 196,608 + 8,320) + 66,560)."""
    assert _tiny_flops("baseline") == 4_968_192
    assert measure.attended_keys(64) == 32.5 and measure.attended_keys(64, 16) == 14.125
    assert measure.attended_keys(8, 100) == 4.5  # a window past the sequence: plain causal


def test_mfu_and_peak_flops():
    assert measure.peak_flops(CPU, torch.bfloat16) is None
    assert measure.mfu(1e9, 1e3, None) is None
    assert measure.mfu(6e9, 1e5, 1e15) == pytest.approx(0.6)
    h100 = flops._peak_for_name("NVIDIA H100 80GB HBM3", "bf16")
    assert h100 == pytest.approx(989.4e12)
    assert flops._peak_for_name("NVIDIA H100 PCIe", "bf16") == pytest.approx(756.5e12)
    assert flops._peak_for_name("NVIDIA GH200 480GB", "bf16") == pytest.approx(989.4e12)
    assert flops._peak_for_name("NVIDIA A100-SXM4-80GB", "fp32") == pytest.approx(19.5e12)
    assert flops._peak_for_name("NVIDIA A10G", "bf16") is None  # not mistaken for A10/A100
    assert flops._peak_for_name("NVIDIA L40S", "bf16") == pytest.approx(362.05e12)
    assert flops._peak_for_name("Tesla V100-SXM2-16GB", "bf16") is None
    assert flops._peak_for_name("Some Future GPU", "bf16") is None


def test_environment_keys_and_json():
    env = measure.environment(CPU)
    keys = {
        "device",
        "device_name",
        "torch",
        "triton",
        "python",
        "platform",
        "hostname",
        "git_commit",
        "cpu_count",
        "torch_threads",
    }
    assert keys <= set(env)
    assert env["device"] == "cpu"
    assert env["torch"] == torch.__version__
    assert isinstance(env["device_name"], str) and env["device_name"]
    json.dumps(env)  # must be JSON-serialisable
    commit = env["git_commit"]
    assert commit is None or len(commit.removesuffix("-dirty")) == 40


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak_memory_and_event_timer():
    dev = torch.device("cuda")

    def work():
        x = torch.randn(512, 512, device=dev)
        return (x @ x).sum()

    def work_with_extra():
        extra = torch.empty(EXTRA, dtype=torch.uint8, device=dev)
        out = work()
        del extra
        return out

    work()  # cuBLAS workspace etc. allocated before measuring
    diff = measure.peak_memory_bytes(work_with_extra, dev) - measure.peak_memory_bytes(work, dev)
    assert diff == pytest.approx(EXTRA, rel=0.02)
    s = measure.time_fn(work, dev, warmup=2, iters=5)
    assert s["n"] == 5 and s["median_ms"] > 0
    assert isinstance(measure.device_name(dev), str)


def test_measured_peak_flops_is_measured_once_and_cached(tmp_path, monkeypatch):
    """The matmul peak MFU is reported against: measured on this machine, then read back
    from the cache file (keyed by device, dtype and threads), not measured again."""
    monkeypatch.setenv("TRANSFORMER_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(flops, "_peak_memo", {})
    peak = measure.measured_peak_flops(CPU, torch.float32)
    assert 1e9 < peak < 1e14  # a CPU does between a GFLOP/s and a hundred TFLOP/s
    cached = json.loads((tmp_path / "peak_flops.json").read_text())
    (key,) = cached
    assert "float32" in key and "threads" in key and cached[key] == peak

    def no_timing(*args):
        raise AssertionError("measured again despite the cache")

    monkeypatch.setattr(flops, "_time_matmul", no_timing)
    monkeypatch.setattr(flops, "_peak_memo", {})
    assert measure.measured_peak_flops(CPU, torch.float32) == peak
    # an achieved rate equal to half the peak reads 0.5
    assert measure.mfu(peak / 2 / 1e3, 1e3, peak) == pytest.approx(0.5)
