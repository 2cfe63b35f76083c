"""Tests of the Triton FlashAttention kernel against a float64 eager reference.

Without CUDA they run under Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1), so
shapes stay small: T <= 256 and few (batch, head) pairs. Every test draws fresh random inputs; the
seed is part of each failure message, so a failure can be replayed with torch.manual_seed(seed).
"""

from __future__ import annotations

import ctypes
import glob
import math
import os

import numpy as np
import pytest
import torch

from variants.kernels import flash_attn as fa
from variants.kernels.flash_attn import flash_attention, triton_available

_OK, _REASON = triton_available()
pytestmark = pytest.mark.skipif(not _OK, reason=_REASON)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
INTERPRETED = fa._INTERPRETED
TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 2e-2}
DTYPES = [pytest.param(torch.float32, id="fp32"), pytest.param(torch.float16, id="fp16")]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_blas():
    """Pin numpy's OpenBLAS to one thread while this module runs (best effort).

    The interpreter runs every tl.dot as a small numpy matmul. On a busy 2-core machine a
    multi-threaded OpenBLAS spends ~20 ms per 64x128 product synchronising its threads instead
    of ~30 us computing it, which makes the D=128 tests ~30x slower.
    """
    setter = getter = None
    if INTERPRETED:
        libdir = os.path.dirname(np.__file__) + ".libs"
        for path in glob.glob(os.path.join(libdir, "*openblas*")):
            lib = ctypes.CDLL(path)
            for prefix in ("scipy_openblas", "openblas"):
                for suffix in ("64_", ""):
                    set_name = f"{prefix}_set_num_threads{suffix}"
                    get_name = f"{prefix}_get_num_threads{suffix}"
                    if hasattr(lib, set_name) and hasattr(lib, get_name):
                        setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                        break
                if setter is not None:
                    break
    if setter is None:
        yield
        return
    previous = getter()
    setter(1)
    yield
    setter(previous)


def fresh_seed() -> int:
    """Seed torch's RNG from the OS and return the seed (for the failure message)."""
    return torch.seed()


def reference_attention(q, k, v, causal: bool, scale: float) -> torch.Tensor:
    """Masked softmax(q k^T * scale) v in float64 (materialises T x T: small shapes only)."""
    q, k, v = q.double(), k.double(), v.double()
    scores = q @ k.transpose(-2, -1) * scale  # (B, H, T, T)
    if causal:
        T = q.shape[-2]
        visible = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~visible, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||; the plain norm of actual when expected is all zeros
    (e.g. dQ and dK of a length-1 sequence, where the softmax is constant)."""
    diff = (actual.double() - expected.double()).norm().item()
    ref = expected.double().norm().item()
    return diff / ref if ref > 0 else diff


def randn(*shape, dtype):
    return torch.randn(*shape, device=DEVICE, dtype=torch.float32).to(dtype)


def check_against_reference(q, k, v, causal, scale, tol, seed, do=None, call_scale=None):
    """Run ours and the float64 reference on the same (rounded) inputs; compare out, dq, dk, dv.

    q, k, v may be non-leaf views; gradients are taken with respect to these tensors.
    `call_scale` is what is passed as sm_scale (None -> the default, which must equal `scale`).
    """
    q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
    out = flash_attention(q, k, v, causal=causal, sm_scale=call_scale)
    if do is None:
        do = randn(*out.shape, dtype=out.dtype)
    out.backward(do)

    q64, k64, v64 = (t.detach().double().requires_grad_(True) for t in (q, k, v))
    ref = reference_attention(q64, k64, v64, causal, scale)
    ref.backward(do.double())

    assert out.dtype == q.dtype and out.shape == q.shape
    for name, ours, theirs in [
        ("out", out, ref),
        ("dq", q.grad, q64.grad),
        ("dk", k.grad, k64.grad),
        ("dv", v.grad, v64.grad),
    ]:
        assert ours.dtype == q.dtype, name
        err = rel_err(ours, theirs)
        assert err < tol, f"{name}: relative error {err:.3e} >= {tol:.0e} (seed {seed})"
    return out


# ------------------------------------------------------------------------------------------------
# correctness against the reference
# ------------------------------------------------------------------------------------------------

# (D, T): T below one 64-row tile (1, 7, 33), not a multiple of it (100, 200), a multiple (256).
SHAPES = [
    (64, 1),
    (64, 7),
    (64, 33),
    (64, 100),
    (64, 200),
    (16, 100),
    (32, 200),
    (128, 100),
    (128, 256),
]


@pytest.mark.parametrize("D,T", SHAPES, ids=[f"D{d}-T{t}" for d, t in SHAPES])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(dtype, causal, D, T):
    seed = fresh_seed()
    q, k, v = (randn(1, 1, T, D, dtype=dtype) for _ in range(3))
    check_against_reference(q, k, v, causal, 1 / math.sqrt(D), TOL[dtype], seed)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_batch_and_heads(causal):
    """B*H > 1: every (batch, head) pair must use its own slice; also the stride-0 dO that
    out.sum().backward() produces."""
    seed = fresh_seed()
    B, H, T, D = 2, 3, 130, 32
    q, k, v = (randn(B, H, T, D, dtype=torch.float32) for _ in range(3))
    check_against_reference(q, k, v, causal, 1 / math.sqrt(D), TOL[torch.float32], seed)

    # out.sum() hands the backward an expanded, all-zero-stride gradient.
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
    flash_attention(*leaves, causal=causal).sum().backward()
    refs = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    reference_attention(*refs, causal, 1 / math.sqrt(D)).sum().backward()
    for name, ours, theirs in zip(("dq", "dk", "dv"), leaves, refs, strict=True):
        err = rel_err(ours.grad, theirs.grad)
        assert err < TOL[torch.float32], f"{name} (sum loss): {err:.3e} (seed {seed})"


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(dtype):
    """Views as models make them: q transposed from (B, T, H, D); k, v slices of a packed
    (B, T, 3, H, D) projection; a D stride != 1 for v; dO transposed from (B, T, H, D)."""
    seed = fresh_seed()
    B, H, T, D = 2, 2, 77, 32
    q = randn(B, T, H, D, dtype=dtype).transpose(1, 2)
    packed = randn(B, T, 3, H, D, dtype=dtype)
    k = packed[:, :, 1].transpose(1, 2)
    v = randn(B, H, D, T, dtype=dtype).transpose(-1, -2)  # stride along D is T
    do = randn(B, T, H, D, dtype=dtype).transpose(1, 2)
    assert not any(t.is_contiguous() for t in (q, k, v, do))
    for causal in (True, False):
        out = check_against_reference(q, k, v, causal, 1 / math.sqrt(D), TOL[dtype], seed, do=do)
        # The output keeps q's layout, so transposing it back to (B, T, H, D) is free.
        assert out.stride() == q.stride()
        assert out.transpose(1, 2).is_contiguous()


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_custom_scale(causal):
    seed = fresh_seed()
    T, D = 90, 64
    q, k, v = (randn(1, 2, T, D, dtype=torch.float32) for _ in range(3))
    check_against_reference(q, k, v, causal, 0.3, TOL[torch.float32], seed, call_scale=0.3)


def test_default_scale_is_inverse_sqrt_d():
    fresh_seed()
    q, k, v = (randn(1, 1, 40, 16, dtype=torch.float32) for _ in range(3))
    default = flash_attention(q, k, v, causal=False)
    explicit = flash_attention(q, k, v, causal=False, sm_scale=0.25)
    assert torch.equal(default, explicit)


# Tile shapes of the GPU autotune configs (BLOCK_M != BLOCK_N, 16-wide tiles). Under the
# interpreter every kernel otherwise runs 64 x 64, which leaves the causal loop bounds for
# unequal tiles untested.
TILES = [
    pytest.param({"fwd": (128, 32), "dkdv": (32, 128), "dq": (128, 32)}, id="wide-narrow"),
    pytest.param({"fwd": (32, 128), "dkdv": (128, 16), "dq": (16, 64)}, id="narrow-wide"),
    pytest.param({"fwd": (16, 16), "dkdv": (16, 32), "dq": (32, 16)}, id="small"),
]


@pytest.mark.skipif(not INTERPRETED, reason="tile shapes are chosen by the autotuner on a GPU")
@pytest.mark.parametrize("tiles", TILES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_other_tile_shapes(monkeypatch, tiles, causal):
    seed = fresh_seed()
    monkeypatch.setattr(fa, "_INTERPRET_TILES", tiles)
    T, D = 150, 16
    q, k, v = (randn(1, 2, T, D, dtype=torch.float32) for _ in range(3))
    check_against_reference(q, k, v, causal, 1 / math.sqrt(D), TOL[torch.float32], seed)


# ------------------------------------------------------------------------------------------------
# every output element is written; the log-sum-exp
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_forward_overwrites_nan_buffer_and_lse(causal):
    """_forward writes every element of a NaN-poisoned `out`, and lse is the finite row
    log-sum-exp of the scaled scores (float32, (B*H, T))."""
    seed = fresh_seed()
    B, H, T, D = 1, 2, 100, 32
    q, k, v = (randn(B, H, T, D, dtype=torch.float32) for _ in range(3))
    scale = 1 / math.sqrt(D)
    out = torch.full_like(q, float("nan"))
    ret, lse = fa._forward(q, k, v, causal, scale, out=out)
    assert ret is out
    assert not out.isnan().any(), f"unwritten output elements (seed {seed})"
    ref = reference_attention(q, k, v, causal, scale)
    assert rel_err(out, ref) < TOL[torch.float32], f"seed {seed}"

    assert lse.dtype == torch.float32 and lse.shape == (B * H, T)
    assert torch.isfinite(lse).all(), f"non-finite lse (seed {seed})"
    scores = q.double() @ k.double().transpose(-2, -1) * scale
    if causal:
        scores = scores.masked_fill(
            ~torch.ones(T, T, dtype=torch.bool, device=DEVICE).tril(), float("-inf")
        )
    ref_lse = torch.logsumexp(scores, dim=-1).reshape(B * H, T)
    torch.testing.assert_close(lse.double(), ref_lse, rtol=1e-5, atol=1e-5)


def test_every_buffer_fully_written(monkeypatch):
    """Every buffer the forward and backward allocate (out, lse, delta, dq, dk, dv) starts as
    NaN; a single element left unwritten would surface as NaN in the outputs or gradients."""
    seed = fresh_seed()
    B, H, T, D = 2, 1, 70, 16
    q, k, v = (randn(B, H, T, D, dtype=torch.float16).requires_grad_(True) for _ in range(3))
    do = randn(B, H, T, D, dtype=torch.float16)

    real_empty, real_empty_like = torch.empty, torch.empty_like

    def nan_empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    def nan_empty_like(*args, **kwargs):
        t = real_empty_like(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    with monkeypatch.context() as m:
        m.setattr(torch, "empty", nan_empty)
        m.setattr(torch, "empty_like", nan_empty_like)
        out = flash_attention(q, k, v, causal=True)
        out.backward(do)
    for name, t in [("out", out), ("dq", q.grad), ("dk", k.grad), ("dv", v.grad)]:
        assert not t.isnan().any(), f"{name} has unwritten (NaN) elements (seed {seed})"

    q64, k64, v64 = (t.detach().double().requires_grad_(True) for t in (q, k, v))
    ref = reference_attention(q64, k64, v64, True, 1 / math.sqrt(D))
    ref.backward(do.double())
    for name, ours, theirs in [
        ("out", out, ref),
        ("dq", q.grad, q64.grad),
        ("dk", k.grad, k64.grad),
        ("dv", v.grad, v64.grad),
    ]:
        assert rel_err(ours, theirs) < TOL[torch.float16], f"{name} (seed {seed})"


def test_memory_grows_linearly_with_t_unlike_naive():
    # What the kernel allocates in torch (output, LSE, delta, dq/dk/dv) is O(T); naive attention
    # holds T x T scores and probabilities. Doubling T must about double our peak, and about
    # quadruple naive's. (Under the interpreter the tiles live in numpy, so this checks the
    # host-side buffers; on a GPU bench_flash_attn.py reports the real peak.)
    from bench.measure import peak_memory_bytes

    def peak(fn, T):
        q, k, v = (randn(1, 4, T, 16, dtype=torch.float32).requires_grad_() for _ in range(3))
        inputs = torch.nn.Module()
        for i, t in enumerate((q, k, v)):
            inputs.register_buffer(f"t{i}", t)
        return peak_memory_bytes(lambda: fn(q, k, v).sum().backward(), DEVICE, modules=[inputs])

    def naive(q, k, v):
        s = (q @ k.transpose(-2, -1)) / 4.0  # (B, H, T, T)
        mask = torch.ones(q.shape[-2], q.shape[-2], dtype=torch.bool, device=q.device).triu(1)
        return torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v

    ours = peak(lambda q, k, v: flash_attention(q, k, v, causal=True), 512) / peak(
        lambda q, k, v: flash_attention(q, k, v, causal=True), 256
    )
    theirs = peak(naive, 512) / peak(naive, 256)
    assert 1.8 < ours < 2.2, ours
    assert theirs > 3.0, theirs


def test_backward_is_deterministic():
    """dQ has its own kernel (no atomics), so two backward passes agree bit for bit."""
    fresh_seed()
    q, k, v = (randn(1, 2, 120, 32, dtype=torch.float32) for _ in range(3))
    do = randn(1, 2, 120, 32, dtype=torch.float32)
    grads = []
    for _ in range(2):
        leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
        flash_attention(*leaves, causal=True).backward(do)
        grads.append([t.grad for t in leaves])
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------
# errors, availability, autotune config pruning
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("D", [8, 48, 256])
def test_unsupported_head_dim_raises(D):
    q = torch.randn(1, 1, 8, D, device=DEVICE)
    with pytest.raises(ValueError) as info:
        flash_attention(q, q, q)
    message = str(info.value)
    assert "\n" not in message and str(D) in message


def test_bad_inputs_raise():
    q = torch.randn(1, 1, 8, 16, device=DEVICE)
    with pytest.raises(ValueError):
        flash_attention(q.double(), q.double(), q.double())  # float64 unsupported
    with pytest.raises(ValueError):
        flash_attention(q, q[:, :, :4], q)  # shape mismatch
    with pytest.raises(ValueError):
        flash_attention(q[0], q[0], q[0])  # not 4-D


def test_triton_available_reports_ok():
    assert triton_available() == (True, "")


@pytest.mark.parametrize("generation", ["sm90", "sm80", "generic"])
def test_config_pruning_keeps_sensible_configs(generation):
    """Pure-Python check of the autotune tables and the early_config_prune hook (no GPU)."""
    import triton

    def area(cfg):
        return cfg.kwargs["BLOCK_M"] * cfg.kwargs["BLOCK_N"]

    smem = {"sm90": 227 * 1024, "sm80": 163 * 1024, "generic": 99 * 1024}[generation]
    for kernel, table in fa._CONFIGS[generation].items():
        configs = [
            triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm, bn, w, s in table
        ]
        for bm, bn, _, _ in table:
            assert bm >= 16 and bn >= 16 and bm & (bm - 1) == 0 and bn & (bn - 1) == 0
        prune = fa._make_pruner(kernel, smem, hopper=generation == "sm90")
        for T in (1, 100, 1024, 16384):
            for D in fa.SUPPORTED_HEAD_DIMS:
                for dtype in (torch.bfloat16, torch.float32):
                    q = torch.empty(0, dtype=dtype)
                    named = {"Q": q, "T": T, "D": D, "CAUSAL": True, "DOT_PRECISION": "ieee"}
                    kept = prune(configs, named)
                    assert kept, (kernel, T, D)
                    cap = max(16, 1 << (T - 1).bit_length())
                    fits = all(
                        c.kwargs["BLOCK_M"] <= cap and c.kwargs["BLOCK_N"] <= cap for c in kept
                    )
                    # Kept tiles fit the sequence, unless none does: then the smallest is kept.
                    assert fits or (len(kept) == 1 and area(kept[0]) == min(map(area, configs)))
        # Long 16-bit sequences keep several candidates for the autotuner to choose from.
        named = {
            "Q": torch.empty(0, dtype=torch.bfloat16),
            "T": 4096,
            "D": 64,
            "CAUSAL": False,
            "DOT_PRECISION": "ieee",
        }
        kept = prune(configs, named)
        assert len(kept) >= 2, (generation, kernel)


# ------------------------------------------------------------------------------------------------
# GPU only
# ------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or INTERPRETED,
    reason="bfloat16 needs a CUDA GPU (the interpreter's bf16 tl.dot is wrong)",
)
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_bfloat16_on_gpu(causal, D):
    seed = fresh_seed()
    B, H, T = 2, 4, 1000
    q, k, v = (randn(B, H, T, D, dtype=torch.bfloat16) for _ in range(3))
    check_against_reference(q, k, v, causal, 1 / math.sqrt(D), TOL[torch.bfloat16], seed)
