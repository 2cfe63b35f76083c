"""FlashAttention-2 style fused attention in Triton: forward, backward and autograd glue.

Public API::

    flash_attention(q, k, v, causal=True, sm_scale=None)  # (B, H, T, D) -> (B, H, T, D)
    triton_available() -> (bool, reason)

Algorithm (Dao, "FlashAttention-2", 2023):

* Forward: one program owns a tile of BLOCK_M query rows of one (batch, head), streams the K/V
  tiles of that head through SRAM and keeps a running row max ``m`` and row sum ``l`` of the
  exponentials (online softmax), rescaling its output accumulator whenever the max grows. The
  T x T score matrix never exists in memory. Besides the output it stores the log-sum-exp of
  every row (float32, natural log, shape (B*H, T)) so the backward can recompute the
  probabilities ``P = exp(S - lse)`` instead of storing them.
* Backward: ``_attn_bwd_preprocess`` computes ``delta = rowsum(dO * O)`` (this equals
  ``rowsum(P * dP)``, the term of the softmax Jacobian); ``_attn_bwd_dkdv`` gives every program a
  tile of keys and loops over query tiles accumulating dK and dV; ``_attn_bwd_dq`` gives every
  program a tile of queries and loops over key tiles accumulating dQ. Splitting dQ into its own
  kernel costs one more recomputation of ``QK^T`` but needs no atomics, so gradients are
  deterministic (bit-identical run to run).
* Causal: tiles that lie entirely above the diagonal are never visited (loop bounds), tiles
  entirely below it run a mask-free loop, and only the tiles that straddle the diagonal (or the
  ragged end of the sequence) pay for building a mask.
* Softmax runs in base 2: ``log2(e)`` is folded into the scale so every exponential is an
  ``exp2`` (a single MUFU instruction on NVIDIA GPUs).

Inputs may be float32, float16 or bfloat16; all accumulation (scores, row statistics, output and
gradient accumulators) is float32. float32 inputs use exact float32 products
(``input_precision="ieee"``) unless ``torch.backends.cuda.matmul.allow_tf32`` asks for TF32.
Inputs and the incoming gradient may have any strides (all four strides of every tensor are
passed to the kernels), e.g. the ``(B, T, H, D) -> (B, H, T, D)`` transposed view that models
produce; nothing is copied to make it contiguous.

Launch configuration: on a CUDA GPU each kernel is wrapped in ``triton.autotune`` with a config
list chosen from the GPU generation (built lazily, on the first call, so importing this module
never touches the driver). Under Triton's interpreter (``TRITON_INTERPRET=1``, the CPU path used
by the tests) the raw kernels run with one fixed 64 x 64 tile: the interpreter's cost grows with
the number of tiles, and multi-config autotuning would need a GPU driver to time configs.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch

try:
    import triton
    import triton.language as tl

    _TRITON_IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - triton ships with torch on Linux
    # Stand-ins so the kernel definitions below still parse; `triton_available()` reports why the
    # kernel cannot run and `flash_attention` refuses to launch.
    _TRITON_IMPORT_ERROR = str(exc)

    class _NoTriton:
        @staticmethod
        def jit(fn=None, **_kwargs):
            return fn if fn is not None else (lambda f: f)

    class _NoTl:
        constexpr = object

    triton = _NoTriton()
    tl = _NoTl()

__all__ = ["flash_attention", "triton_available"]

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Tiles (BLOCK_M, BLOCK_N) used under the interpreter, which cannot autotune. 64 x 64 is ~50x
# faster there than 16 x 16 (the interpreter's cost grows with the number of tiles) and satisfies
# tl.dot's minimum tile size of 16. The tests override entries to push the unequal tile shapes of
# the GPU configs through the interpreter.
_INTERPRET_BLOCK = 64
_INTERPRET_TILES = {"fwd": (64, 64), "dkdv": (64, 64), "dq": (64, 64)}


# ----------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------


@triton.jit
def _attn_fwd_inner(
    acc, l_i, m_i, q,  # running state: (BLOCK_M, D), (BLOCK_M,), (BLOCK_M,); q: (BLOCK_M, D)
    K_head, V_head, stride_kt, stride_kd, stride_vt, stride_vd,
    offs_m, offs_d, lo, hi, T, qk_scale,
    BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Fold the key/value tiles starting in [lo, hi) into the online-softmax state of one query
    tile. MASKED tiles may contain keys past T or (causal) keys after some query; the others are
    guaranteed fully visible, so they skip both the load masks and the score mask."""
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0  # (BLOCK_N,)
        k_ptrs = K_head + offs_n[:, None] * stride_kt + offs_d[None, :] * stride_kd
        v_ptrs = V_head + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd
        if MASKED:
            k = tl.load(k_ptrs, mask=offs_n[:, None] < T, other=0.0)  # (BLOCK_N, D)
            v = tl.load(v_ptrs, mask=offs_n[:, None] < T, other=0.0)  # (BLOCK_N, D)
        else:
            k = tl.load(k_ptrs)  # (BLOCK_N, D)
            v = tl.load(v_ptrs)  # (BLOCK_N, D)
        # Scores in log2 units: exp(x * scale) == exp2(x * scale * log2(e)).
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        if MASKED:
            keep = offs_n[None, :] < T  # (1, BLOCK_N): zero-filled keys past the end
            if CAUSAL:
                keep = keep & (offs_n[None, :] <= offs_m[:, None])  # (BLOCK_M, BLOCK_N)
            s = tl.where(keep, s, float("-inf"))
        # Every row sees at least one visible key in the first tile it processes (see the loop
        # bounds in _attn_fwd), so m_new is finite and the -inf scores turn into exact zeros.
        m_new = tl.maximum(m_i, tl.max(s, 1))  # (BLOCK_M,)
        alpha = tl.math.exp2(m_i - m_new)  # (BLOCK_M,) rescales what was summed under the old max
        p = tl.math.exp2(s - m_new[:, None])  # (BLOCK_M, BLOCK_N)
        l_i = l_i * alpha + tl.sum(p, 1)
        # P is cast to the input dtype so the second GEMM runs on tensor cores like the first.
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(
    Q, K, V, Out, LSE, sm_scale,
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_ob, stride_oh, stride_ot, stride_od,
    H, T,
    D: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # A 1-D grid of (B*H) * num_m programs, query tile fastest: the programs of one head run
    # together and share its K/V through L2, and B*H is not bound by the 65535 limit of grid
    # axes 1 and 2.
    num_m = tl.cdiv(T, BLOCK_M)
    pid = tl.program_id(0)
    pid_bh = pid // num_m
    pid_m = pid % num_m
    if CAUSAL:
        # Causal cost grows with the query index; launch the longest tiles first so the short ones
        # fill the gaps at the end of the wave instead of a long tile running alone.
        pid_m = num_m - 1 - pid_m
    off_b = (pid_bh // H).to(tl.int64)  # int64: batch/head offsets can exceed 2**31 elements
    off_h = (pid_bh % H).to(tl.int64)
    Q_head = Q + off_b * stride_qb + off_h * stride_qh
    K_head = K + off_b * stride_kb + off_h * stride_kh
    V_head = V + off_b * stride_vb + off_h * stride_vh
    O_head = Out + off_b * stride_ob + off_h * stride_oh
    LSE_row = LSE + pid_bh.to(tl.int64) * T

    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)  # (BLOCK_M,)
    offs_d = tl.arange(0, D)  # (D,)
    row_ok = offs_m < T  # (BLOCK_M,) the last query tile may be partial
    q_ptrs = Q_head + offs_m[:, None] * stride_qt + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)  # (BLOCK_M, D)

    qk_scale = sm_scale * 1.4426950408889634  # log2(e) folded in: softmax runs on exp2
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # (BLOCK_M,) running max (log2)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # (BLOCK_M,) running sum of exp2(s - m_i)
    acc = tl.zeros([BLOCK_M, D], dtype=tl.float32)  # (BLOCK_M, D) unnormalised output

    # Key tiles split into a mask-free prefix and a masked remainder.
    #   causal:     keys below start_m are visible to every row of the tile -> tiles ending before
    #               start_m are mask-free; tiles from there up to the tile's last row straddle the
    #               diagonal; tiles past the last row are fully masked and never loaded.
    #   non-causal: every full tile is mask-free; only a ragged last tile (T % BLOCK_N) is masked.
    # In both cases the first masked tile holds a key every row may see (key n_full <= start_m),
    # so no row's running max stays -inf.
    if CAUSAL:
        n_full = (start_m // BLOCK_N) * BLOCK_N
        n_end = tl.minimum(start_m + BLOCK_M, T)
    else:
        n_full = (T // BLOCK_N) * BLOCK_N
        n_end = T
    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q, K_head, V_head, stride_kt, stride_kd, stride_vt, stride_vd,
        offs_m, offs_d, 0, n_full, T, qk_scale,
        BLOCK_N, False, CAUSAL, DOT_PRECISION,
    )
    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q, K_head, V_head, stride_kt, stride_kd, stride_vt, stride_vd,
        offs_m, offs_d, n_full, n_end, T, qk_scale,
        BLOCK_N, True, CAUSAL, DOT_PRECISION,
    )

    out = acc / l_i[:, None]  # (BLOCK_M, D)
    # Natural-log LSE: lse = ln(sum exp(x*scale)) = (m + log2(l)) * ln(2).
    lse = (m_i + tl.math.log2(l_i)) * 0.6931471805599453  # (BLOCK_M,)
    tl.store(LSE_row + offs_m, lse, mask=row_ok)
    o_ptrs = O_head + offs_m[:, None] * stride_ot + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None])


# ----------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------


@triton.jit
def _attn_bwd_preprocess(
    O, DO, Delta,
    stride_ob, stride_oh, stride_ot, stride_od,
    stride_dob, stride_doh, stride_dot, stride_dod,
    H, T,
    D: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """delta[i] = sum_d dO[i, d] * O[i, d], which equals sum_j P[i, j] * dP[i, j]: the row term
    of the softmax backward dS = P * (dP - delta)."""
    num_m = tl.cdiv(T, BLOCK_M)
    pid = tl.program_id(0)
    pid_bh = pid // num_m
    pid_m = pid % num_m
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,)
    offs_d = tl.arange(0, D)  # (D,)
    row_ok = offs_m < T
    o_ptrs = O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_ot \
        + offs_d[None, :] * stride_od
    do_ptrs = DO + off_b * stride_dob + off_h * stride_doh + offs_m[:, None] * stride_dot \
        + offs_d[None, :] * stride_dod
    o = tl.load(o_ptrs, mask=row_ok[:, None], other=0.0).to(tl.float32)  # (BLOCK_M, D)
    do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0).to(tl.float32)  # (BLOCK_M, D)
    delta = tl.sum(o * do, axis=1)  # (BLOCK_M,)
    tl.store(Delta + pid_bh.to(tl.int64) * T + offs_m, delta, mask=row_ok)


@triton.jit
def _attn_bwd_dkdv_inner(
    dk, dv, k, v,  # dk, dv: (BLOCK_N, D) float32 accumulators; k, v: (BLOCK_N, D)
    Q_head, DO_head, LSE_row, Delta_row,
    stride_qt, stride_qd, stride_dot, stride_dod,
    offs_n, offs_d, lo, hi, T, qk_scale,
    BLOCK_M: tl.constexpr, MASKED: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Accumulate dK, dV of one key tile over the query tiles starting in [lo, hi).

    Works on transposed scores (keys x queries) so that P^T and dS^T come out in the layout the
    dV += P^T dO and dK += dS^T Q products want, with no transposes of the big tiles.
    """
    offs_m0 = tl.arange(0, BLOCK_M)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + offs_m0  # (BLOCK_M,)
        row_ok = offs_m < T
        q_ptrs = Q_head + offs_m[:, None] * stride_qt + offs_d[None, :] * stride_qd
        do_ptrs = DO_head + offs_m[:, None] * stride_dot + offs_d[None, :] * stride_dod
        q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)  # (BLOCK_M, D)
        do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0)  # (BLOCK_M, D)
        # Queries past T get lse = +inf, which turns their probabilities into exact zeros: no
        # score mask is needed for the ragged end, only the load masks above.
        lse2 = tl.load(LSE_row + offs_m, mask=row_ok, other=float("inf")) * 1.4426950408889634
        delta = tl.load(Delta_row + offs_m, mask=row_ok, other=0.0)  # (BLOCK_M,)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
        if MASKED:  # tile straddles the diagonal: query i sees key j only when j <= i
            s_t = tl.where(offs_m[None, :] >= offs_n[:, None], s_t, float("-inf"))
        p_t = tl.math.exp2(s_t - lse2[None, :])  # (BLOCK_N, BLOCK_M) recomputed probabilities
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=DOT_PRECISION)  # (BLOCK_N, D)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
        ds_t = p_t * (dp_t - delta[None, :])  # (BLOCK_N, BLOCK_M) softmax backward
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=DOT_PRECISION)  # (BLOCK_N, D)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv(
    Q, K, V, DO, DK, DV, LSE, Delta, sm_scale,
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_dob, stride_doh, stride_dot, stride_dod,
    stride_dkb, stride_dkh, stride_dkt, stride_dkd,
    stride_dvb, stride_dvh, stride_dvt, stride_dvd,
    H, T,
    D: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # Key tile fastest in the 1-D grid (as in the forward). For causal the first key tiles have
    # the most query tiles to visit, so the natural order already launches the long ones first.
    num_n = tl.cdiv(T, BLOCK_N)
    pid = tl.program_id(0)
    pid_bh = pid // num_n
    pid_n = pid % num_n
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)
    Q_head = Q + off_b * stride_qb + off_h * stride_qh
    DO_head = DO + off_b * stride_dob + off_h * stride_doh
    LSE_row = LSE + pid_bh.to(tl.int64) * T
    Delta_row = Delta + pid_bh.to(tl.int64) * T

    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    offs_d = tl.arange(0, D)  # (D,)
    col_ok = offs_n < T  # (BLOCK_N,)
    k_ptrs = K + off_b * stride_kb + off_h * stride_kh + offs_n[:, None] * stride_kt \
        + offs_d[None, :] * stride_kd
    v_ptrs = V + off_b * stride_vb + off_h * stride_vh + offs_n[:, None] * stride_vt \
        + offs_d[None, :] * stride_vd
    # Keys past T load as zeros; their rows of dK/dV are garbage but independent of the valid
    # rows (each output row only sees its own row of P^T / dS^T) and are never stored.
    k = tl.load(k_ptrs, mask=col_ok[:, None], other=0.0)  # (BLOCK_N, D)
    v = tl.load(v_ptrs, mask=col_ok[:, None], other=0.0)  # (BLOCK_N, D)
    dk = tl.zeros([BLOCK_N, D], dtype=tl.float32)  # (BLOCK_N, D)
    dv = tl.zeros([BLOCK_N, D], dtype=tl.float32)  # (BLOCK_N, D)
    qk_scale = sm_scale * 1.4426950408889634

    if CAUSAL:
        # Query tiles ending before start_n see none of these keys: skipped. Tiles from the one
        # holding start_n up to the first tile starting at or after the last key straddle the
        # diagonal and are masked; all later query tiles see every key of the tile.
        m_lo = (start_n // BLOCK_M) * BLOCK_M
        m_mid = tl.minimum(tl.cdiv(start_n + BLOCK_N, BLOCK_M) * BLOCK_M, T)
        dk, dv = _attn_bwd_dkdv_inner(
            dk, dv, k, v, Q_head, DO_head, LSE_row, Delta_row,
            stride_qt, stride_qd, stride_dot, stride_dod,
            offs_n, offs_d, m_lo, m_mid, T, qk_scale,
            BLOCK_M, True, DOT_PRECISION,
        )
        dk, dv = _attn_bwd_dkdv_inner(
            dk, dv, k, v, Q_head, DO_head, LSE_row, Delta_row,
            stride_qt, stride_qd, stride_dot, stride_dod,
            offs_n, offs_d, m_mid, T, T, qk_scale,
            BLOCK_M, False, DOT_PRECISION,
        )
    else:
        dk, dv = _attn_bwd_dkdv_inner(
            dk, dv, k, v, Q_head, DO_head, LSE_row, Delta_row,
            stride_qt, stride_qd, stride_dot, stride_dod,
            offs_n, offs_d, 0, T, T, qk_scale,
            BLOCK_M, False, DOT_PRECISION,
        )

    # S = scale * Q K^T, so dK = scale * dS^T Q; the scale is applied once here, not per tile.
    dk = dk * sm_scale
    dk_ptrs = DK + off_b * stride_dkb + off_h * stride_dkh + offs_n[:, None] * stride_dkt \
        + offs_d[None, :] * stride_dkd
    dv_ptrs = DV + off_b * stride_dvb + off_h * stride_dvh + offs_n[:, None] * stride_dvt \
        + offs_d[None, :] * stride_dvd
    tl.store(dk_ptrs, dk.to(DK.dtype.element_ty), mask=col_ok[:, None])
    tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=col_ok[:, None])


@triton.jit
def _attn_bwd_dq_inner(
    dq, q, do, lse2, delta,  # dq: (BLOCK_M, D) f32; q, do: (BLOCK_M, D); lse2, delta: (BLOCK_M,)
    K_head, V_head, stride_kt, stride_kd, stride_vt, stride_vd,
    offs_m, offs_d, lo, hi, T, qk_scale,
    BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Accumulate dQ of one query tile over the key tiles starting in [lo, hi); the masking
    rules are those of _attn_fwd_inner."""
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0  # (BLOCK_N,)
        k_ptrs = K_head + offs_n[:, None] * stride_kt + offs_d[None, :] * stride_kd
        v_ptrs = V_head + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd
        if MASKED:
            k = tl.load(k_ptrs, mask=offs_n[:, None] < T, other=0.0)  # (BLOCK_N, D)
            v = tl.load(v_ptrs, mask=offs_n[:, None] < T, other=0.0)  # (BLOCK_N, D)
        else:
            k = tl.load(k_ptrs)  # (BLOCK_N, D)
            v = tl.load(v_ptrs)  # (BLOCK_N, D)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        if MASKED:
            # Zero-filled keys past T score 0, not -inf, so they must be masked explicitly here.
            keep = offs_n[None, :] < T
            if CAUSAL:
                keep = keep & (offs_n[None, :] <= offs_m[:, None])
            s = tl.where(keep, s, float("-inf"))
        p = tl.math.exp2(s - lse2[:, None])  # (BLOCK_M, BLOCK_N)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N)
        ds = p * (dp - delta[:, None])  # (BLOCK_M, BLOCK_N)
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PRECISION)  # (BLOCK_M, D)
    return dq


@triton.jit
def _attn_bwd_dq(
    Q, K, V, DO, DQ, LSE, Delta, sm_scale,
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_dob, stride_doh, stride_dot, stride_dod,
    stride_dqb, stride_dqh, stride_dqt, stride_dqd,
    H, T,
    D: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    num_m = tl.cdiv(T, BLOCK_M)
    pid = tl.program_id(0)
    pid_bh = pid // num_m
    pid_m = pid % num_m
    if CAUSAL:
        pid_m = num_m - 1 - pid_m  # longest tiles first, as in the forward
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)
    K_head = K + off_b * stride_kb + off_h * stride_kh
    V_head = V + off_b * stride_vb + off_h * stride_vh

    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)  # (BLOCK_M,)
    offs_d = tl.arange(0, D)  # (D,)
    row_ok = offs_m < T
    q_ptrs = Q + off_b * stride_qb + off_h * stride_qh + offs_m[:, None] * stride_qt \
        + offs_d[None, :] * stride_qd
    do_ptrs = DO + off_b * stride_dob + off_h * stride_doh + offs_m[:, None] * stride_dot \
        + offs_d[None, :] * stride_dod
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)  # (BLOCK_M, D)
    do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0)  # (BLOCK_M, D)
    # Rows past T: lse = +inf makes their probabilities zero (they are not stored anyway).
    lse2 = tl.load(LSE + pid_bh.to(tl.int64) * T + offs_m, mask=row_ok, other=float("inf"))
    lse2 = lse2 * 1.4426950408889634  # (BLOCK_M,) natural log -> log2 units
    delta = tl.load(Delta + pid_bh.to(tl.int64) * T + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, D], dtype=tl.float32)  # (BLOCK_M, D)
    qk_scale = sm_scale * 1.4426950408889634

    # Same split of the key range as in _attn_fwd.
    if CAUSAL:
        n_full = (start_m // BLOCK_N) * BLOCK_N
        n_end = tl.minimum(start_m + BLOCK_M, T)
    else:
        n_full = (T // BLOCK_N) * BLOCK_N
        n_end = T
    dq = _attn_bwd_dq_inner(
        dq, q, do, lse2, delta, K_head, V_head, stride_kt, stride_kd, stride_vt, stride_vd,
        offs_m, offs_d, 0, n_full, T, qk_scale,
        BLOCK_N, False, CAUSAL, DOT_PRECISION,
    )
    dq = _attn_bwd_dq_inner(
        dq, q, do, lse2, delta, K_head, V_head, stride_kt, stride_kd, stride_vt, stride_vd,
        offs_m, offs_d, n_full, n_end, T, qk_scale,
        BLOCK_N, True, CAUSAL, DOT_PRECISION,
    )

    dq = dq * sm_scale  # dQ = scale * dS K
    dq_ptrs = DQ + off_b * stride_dqb + off_h * stride_dqh + offs_m[:, None] * stride_dqt \
        + offs_d[None, :] * stride_dqd
    tl.store(dq_ptrs, dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])


# True when the decorators above produced interpreter objects, i.e. TRITON_INTERPRET was on when
# this module was imported. That, not the environment now, decides how the kernels run.
_INTERPRETED = type(_attn_fwd).__name__ == "InterpretedFunction"


# ----------------------------------------------------------------------------------------------
# Launch configuration (GPU): autotune config lists per GPU generation, built lazily
# ----------------------------------------------------------------------------------------------

# (BLOCK_M, BLOCK_N, num_warps, num_stages). For the forward and dQ kernels BLOCK_M is the resident
# query tile and BLOCK_N the streamed key tile; for dK/dV the key tile (BLOCK_N) is resident and
# the query tile (BLOCK_M) is streamed, hence the mirrored shapes.
_CONFIGS = {
    # Hopper (H100/H200) and newer: up to 227 KB of shared memory per block, big tiles with 8
    # warps pay off. (The pruner reads the real limit from the device, e.g. for sm_120.)
    "sm90": {
        "fwd": [
            (128, 128, 8, 3), (128, 64, 8, 3), (128, 64, 4, 3), (128, 128, 8, 2),
            (128, 32, 4, 4), (64, 64, 4, 3), (64, 128, 4, 3), (64, 32, 4, 4),
        ],
        "dkdv": [
            (32, 128, 4, 3), (64, 128, 8, 3), (32, 128, 8, 4), (64, 64, 4, 3),
            (32, 64, 4, 4), (16, 128, 4, 4), (64, 128, 4, 2),
        ],
        "dq": [
            (128, 32, 4, 3), (128, 64, 8, 3), (128, 32, 8, 4), (64, 64, 4, 3),
            (64, 32, 4, 4), (128, 16, 4, 4), (128, 64, 4, 2),
        ],
    },
    # Ampere data-centre (A100): 164 KB of shared memory per SM.
    "sm80": {
        "fwd": [
            (128, 64, 4, 3), (128, 64, 8, 3), (128, 32, 4, 3), (128, 128, 8, 2),
            (64, 64, 4, 3), (64, 32, 4, 4), (64, 64, 4, 2),
        ],
        "dkdv": [
            (32, 128, 4, 3), (32, 64, 4, 3), (64, 64, 4, 2), (64, 128, 8, 2),
            (16, 64, 4, 4), (32, 128, 8, 2),
        ],
        "dq": [
            (128, 32, 4, 3), (64, 32, 4, 3), (64, 64, 4, 2), (128, 64, 8, 2),
            (64, 16, 4, 4), (128, 32, 8, 2),
        ],
    },
    # Consumer Ampere/Ada (sm86/sm89, ~100 KB), Turing and anything unknown (incl. ROCm): small
    # tiles and shallow pipelines.
    "generic": {
        "fwd": [(64, 64, 4, 2), (64, 32, 4, 3), (128, 32, 4, 2), (32, 32, 4, 2), (128, 64, 8, 2)],
        "dkdv": [(32, 64, 4, 2), (16, 64, 4, 3), (32, 32, 4, 2), (64, 64, 4, 2)],
        "dq": [(64, 32, 4, 2), (64, 16, 4, 3), (32, 32, 4, 2), (64, 64, 4, 2)],
    },
}

_SMEM_BY_CAPABILITY = {(9, 0): 227 * 1024, (8, 0): 163 * 1024, (8, 7): 163 * 1024}
_SMEM_DEFAULT = 99 * 1024


def _generation(capability: tuple[int, int]) -> str:
    if torch.version.hip is not None:
        return "generic"
    if capability[0] >= 9:
        return "sm90"
    if capability == (8, 0):
        return "sm80"
    return "generic"


def _smem_limit(device_index: int, capability: tuple[int, int]) -> int:
    props = torch.cuda.get_device_properties(device_index)
    limit = getattr(props, "shared_memory_per_block_optin", 0)
    return int(limit) or _SMEM_BY_CAPABILITY.get(capability, _SMEM_DEFAULT)


# Per-thread register budget (in 32-bit values) above which a config spills heavily.
_REG_BUDGET = {"fwd": 240, "dkdv": 256, "dq": 240}


def _config_cost(kernel: str, bm: int, bn: int, warps: int, stages: int, head_dim: int,
                 elt: int, hopper: bool) -> tuple[int, int]:
    """Rough (shared memory bytes, 32-bit registers per thread) of one launch config.

    Calibrated against the shared memory Triton 3.9 allocates and the spills ptxas reports when
    compiling these kernels for sm_80, sm_86 and sm_90: the streamed tiles get one buffer per
    pipeline stage on Hopper and one fewer before it, resident tiles one buffer; before Hopper a
    (BLOCK_M, BLOCK_N) tile of P / dS also passes through shared memory for the layout change
    into the second GEMM. Registers count the float32 accumulators, the resident tiles and the
    (BLOCK_M, BLOCK_N) float32 score tiles, spread over the threads.
    """
    buffers = stages if hopper else max(1, stages - 1)
    threads = 32 * warps
    if kernel == "fwd":  # resident Q; streamed K, V; accumulator O; scores S, P
        smem = elt * (bm * head_dim + buffers * 2 * bn * head_dim)
        regs = (bm * head_dim + bm * head_dim * elt // 4 + 2 * bm * bn) // threads
    elif kernel == "dkdv":  # resident K, V; streamed Q, dO (+ lse, delta); accumulators dK, dV
        smem = elt * (2 * bn * head_dim + buffers * 2 * bm * head_dim) + buffers * 2 * bm * 4
        regs = (2 * bn * head_dim + 2 * bn * head_dim * elt // 4 + 2 * bm * bn) // threads
    else:  # dq: resident Q, dO; streamed K, V; accumulator dQ
        smem = elt * (2 * bm * head_dim + buffers * 2 * bn * head_dim)
        regs = (bm * head_dim + 2 * bm * head_dim * elt // 4 + 2 * bm * bn) // threads
    if not hopper:
        smem += elt * bm * bn
    return smem, regs


def _make_pruner(kernel: str, smem_limit: int, hopper: bool):
    """Build the early_config_prune hook for one kernel.

    Drops configs that cannot be good for this call: tiles larger than the (power-of-two rounded)
    sequence, and configs whose estimated shared memory exceeds the GPU's limit or whose
    estimated register need would spill (see _config_cost). Whatever still fails to compile is
    skipped by the autotuner itself. At least one config always survives.
    """

    def prune(configs, named_args, **kwargs):
        args = {**named_args, **kwargs}
        seq, head_dim = int(args["T"]), int(args["D"])
        elt = 4 if args["Q"].dtype == torch.float32 else 2
        seq_cap = max(16, triton.next_power_of_2(seq))
        kept = []
        for cfg in configs:
            bm, bn = cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"]
            if bm > seq_cap or bn > seq_cap:
                continue
            smem, regs = _config_cost(kernel, bm, bn, cfg.num_warps, cfg.num_stages, head_dim,
                                      elt, hopper)
            if smem <= smem_limit and regs <= _REG_BUDGET[kernel]:
                kept.append(cfg)
        if not kept:
            kept = [min(configs, key=lambda c: (c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"],
                                                c.num_stages))]
        return kept

    return prune


@functools.cache
def _autotuned(kernel: str, device_index: int):
    """triton.autotune wrapper of one kernel for the GPU at device_index (built on first use)."""
    capability = torch.cuda.get_device_capability(device_index)
    configs = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
        for bm, bn, w, s in _CONFIGS[_generation(capability)][kernel]
    ]
    raw = {"fwd": _attn_fwd, "dkdv": _attn_bwd_dkdv, "dq": _attn_bwd_dq}[kernel]
    # The kernels only write their outputs (no accumulation into them), so re-running a config
    # while tuning is harmless and needs no reset_to_zero / restore_value.
    return triton.autotune(
        configs=configs,
        key=["T", "D", "CAUSAL", "DOT_PRECISION"],  # the autotuner adds the tensors' dtypes
        prune_configs_by={"early_config_prune": _make_pruner(
            kernel, _smem_limit(device_index, capability), hopper=capability[0] >= 9)},
    )(raw)


def _launch(kernel: str, device: torch.device, tiles, args):
    """Launch `kernel` over a 1-D grid of (B*H) * cdiv(T, tile) programs.

    `tiles(block_m, block_n)` gives the number of programs for a tile shape. Under the interpreter
    the raw kernel runs with the fixed tile of _INTERPRET_TILES; on a GPU the autotuned wrapper
    picks one. `args` holds every argument but the tile sizes, positionally: Triton versions
    before 3.0 hand only positional arguments to early_config_prune, so D, CAUSAL and
    DOT_PRECISION must be among them for the pruner to see them.
    """
    if _INTERPRETED:
        raw = {"fwd": _attn_fwd, "dkdv": _attn_bwd_dkdv, "dq": _attn_bwd_dq}[kernel]
        bm, bn = _INTERPRET_TILES[kernel]
        raw[(tiles(bm, bn),)](*args, BLOCK_M=bm, BLOCK_N=bn)
        return
    tuned = _autotuned(kernel, device.index if device.index is not None else 0)
    tuned[lambda cfg: (tiles(cfg["BLOCK_M"], cfg["BLOCK_N"]),)](*args)


def _dot_precision(dtype: torch.dtype) -> str:
    # float32 inputs: exact fp32 products unless the user opted into TF32 the PyTorch way, so
    # float32 results agree with eager PyTorch. For 16-bit inputs the setting is moot (they run
    # on fp16/bf16 tensor cores either way).
    if (dtype == torch.float32 and torch.version.hip is None
            and torch.backends.cuda.matmul.allow_tf32):
        return "tf32"
    return "ieee"


# ----------------------------------------------------------------------------------------------
# Host-side entry points
# ----------------------------------------------------------------------------------------------


def triton_available() -> tuple[bool, str]:
    """(True, "") when the kernel can run in this process, else (False, one-line reason)."""
    if _TRITON_IMPORT_ERROR:
        return False, f"triton is not importable ({_TRITON_IMPORT_ERROR}); install triton (Linux)"
    if _INTERPRETED:
        return _interpreter_works()
    if torch.cuda.is_available():
        return True, ""
    import os

    if os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on", "y"):
        return False, ("TRITON_INTERPRET=1 was set after variants.kernels.flash_attn was imported; "
                       "set it before Python starts")
    return False, ("the triton attention kernel needs a CUDA GPU; on CPU run it under Triton's "
                   "interpreter with TRITON_INTERPRET=1 set before Python starts")


@triton.jit
def _loop_bound_probe(Out):
    # A loop whose bound is computed from program_id, as in every kernel above.
    acc = 0
    for i in range(0, tl.program_id(0) + 2):
        acc += i
    tl.store(Out, acc)


@functools.cache
def _interpreter_works() -> tuple[bool, str]:
    """Triton's interpreter before 3.9 turns loop bounds into ints with int() on one-element numpy
    arrays, which numpy 2.4 made an error; every kernel here has such bounds. Probe it once."""
    out = torch.zeros(1, dtype=torch.int32)
    try:
        _loop_bound_probe[(1,)](out)
    except Exception as e:  # the interpreter wraps the TypeError in its own error types
        import numpy as np

        return False, (
            f"Triton {triton.__version__}'s interpreter cannot run loops with computed bounds "
            f"under numpy {np.__version__} ({' '.join(str(e).split())[:80]}); install "
            f"'numpy<2.4' or triton>=3.9"
        )
    return True, ""


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    ok, reason = triton_available()
    if not ok:
        raise RuntimeError(reason)
    if q.dim() != 4:
        raise ValueError(f"flash_attention expects (B, H, T, D) tensors, got q of shape "
                         f"{tuple(q.shape)}")
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must have the same shape, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"flash_attention supports head dims {SUPPORTED_HEAD_DIMS}, "
                         f"got D={q.shape[-1]}")
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"flash_attention supports float32, float16 and bfloat16, got {q.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError("q, k, v must be on the same device")
    if not q.is_cuda and not _INTERPRETED:
        raise ValueError("flash_attention needs CUDA tensors (CPU tensors only run under "
                         "TRITON_INTERPRET=1)")


def _device_guard(t: torch.Tensor):
    # Triton launches on the current CUDA device; make it the tensors' device.
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    sm_scale: float,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the forward kernel. Returns (out, lse) with lse float32 of shape (B*H, T), natural log.

    `out`, if given, is the (B, H, T, D) buffer to write (any strides, q's dtype); the tests pass
    one pre-filled with NaN to check that every element is written.
    """
    _check_inputs(q, k, v)
    B, H, T, D = q.shape
    if out is None:
        # empty_like keeps q's memory layout: for the usual (B, T, H, D)-transposed q, the output
        # transposed back is contiguous and folds into (B, T, H*D) without a copy.
        out = torch.empty_like(q)
    elif out.shape != q.shape or out.dtype != q.dtype or out.device != q.device:
        raise ValueError("out must match q in shape, dtype and device")
    lse = torch.empty((B * H, T), device=q.device, dtype=torch.float32)
    if q.numel() == 0:
        return out, lse
    args = (q, k, v, out, lse, float(sm_scale), *q.stride(), *k.stride(), *v.stride(),
            *out.stride(), H, T, D, bool(causal), _dot_precision(q.dtype))
    with _device_guard(q):
        _launch("fwd", q.device, lambda bm, bn: B * H * triton.cdiv(T, bm), args)
    return out, lse


def _backward(q, k, v, out, lse, do, causal: bool, sm_scale: float):
    """Gradients (dq, dk, dv) from the saved forward state; each has its input's layout."""
    B, H, T, D = q.shape
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    if q.numel() == 0:
        return dq, dk, dv
    if do.dtype != q.dtype:
        do = do.to(q.dtype)
    delta = torch.empty_like(lse)  # (B*H, T) float32
    consts = (D, bool(causal), _dot_precision(q.dtype))  # D, CAUSAL, DOT_PRECISION
    with _device_guard(q):
        # Memory-bound row reduction: ~8K elements per program keeps two float32 tiles in
        # registers without spilling.
        pre_block = _INTERPRET_BLOCK if _INTERPRETED else max(16, 8192 // D)
        _attn_bwd_preprocess[(B * H * triton.cdiv(T, pre_block),)](
            out, do, delta, *out.stride(), *do.stride(), H, T, D=D, BLOCK_M=pre_block,
        )
        dkdv_args = (q, k, v, do, dk, dv, lse, delta, float(sm_scale), *q.stride(), *k.stride(),
                     *v.stride(), *do.stride(), *dk.stride(), *dv.stride(), H, T, *consts)
        _launch("dkdv", q.device, lambda bm, bn: B * H * triton.cdiv(T, bn), dkdv_args)
        dq_args = (q, k, v, do, dq, lse, delta, float(sm_scale), *q.stride(), *k.stride(),
                   *v.stride(), *do.stride(), *dq.stride(), H, T, *consts)
        _launch("dq", q.device, lambda bm, bn: B * H * triton.cdiv(T, bm), dq_args)
    return dq, dk, dv


class _FlashAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, sm_scale):
        out, lse = _forward(q, k, v, causal, sm_scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal = causal
        ctx.sm_scale = sm_scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _backward(q, k, v, out, lse, do, ctx.causal, ctx.sm_scale)
        return dq, dk, dv, None, None


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """softmax(q k^T * sm_scale [+ causal mask]) v with the fused Triton kernels.

    q, k, v: (B, H, T, D) tensors of one dtype (float32, float16 or bfloat16), any strides,
    D in (16, 32, 64, 128). sm_scale defaults to 1/sqrt(D). Returns (B, H, T, D) in q's dtype and
    memory layout. Differentiable with respect to q, k and v (first order).
    """
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(q.shape[-1])
    return _FlashAttentionFunction.apply(q, k, v, bool(causal), float(sm_scale))
