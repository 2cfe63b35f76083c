"""The attention seams (score changes, k/v head groups, the q/k hook, per-choice checks, default
init) and the blocks added through them, each against a reference written out here."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from variants import GPT, SLOTS, VARIANTS, ModelConfig, build_model, preset, register
from variants.attention import (
    Attend,
    FusedHeads,
    QKTransform,
    ScoreMods,
    naive_attention,
    sdpa_attention,
)
from variants.block import ParallelBlock
from variants.mlp import GeluMLP, ReLU2MLP
from variants.norm import LayerNorm
from variants.position import AlibiBias, RotaryEmbedding, alibi_slopes
from variants.qk_norm import NoQKNorm, QKRMSNorm
from variants.registry import register_variant

VOCAB = 17
ROOT = Path(__file__).resolve().parents[1]


def micro(name: str = "baseline", **overrides) -> GPT:
    return build_model(name, preset("micro", vocab_size=VOCAB), **overrides)


def same_seed_logits(seed: int, a: dict, b: dict):
    """Logits of two micro models built from the same seed (the same init draws), one batch."""
    torch.manual_seed(seed)
    ma = micro(**a)
    torch.manual_seed(seed)
    mb = micro(**b)
    idx = torch.randint(0, VOCAB, (2, 32))
    return ma(idx)[0], mb(idx)[0]


def reference_attention(q, k, v, bias=None, window=0, softcap=0.0):
    """Attention one query at a time, in plain loops: the reference for every score change.
    q (B, nh, T, hs); k, v (B, nkv, T, hs); bias (nh, T, T) or None."""
    B, nh, T, hs = q.shape
    rep = nh // k.size(1)
    out = torch.zeros_like(q)
    for h in range(nh):
        kh, vh = k[:, h // rep], v[:, h // rep]  # the k/v head this query head reads
        for i in range(T):
            lo = max(0, i - window + 1) if window else 0
            s = (kh[:, lo : i + 1] @ q[:, h, i, :, None]).squeeze(-1) / math.sqrt(hs)  # (B, n)
            if softcap:
                s = softcap * torch.tanh(s / softcap)
            if bias is not None:
                s = s + bias[h, i, lo : i + 1]
            out[:, h, i] = (s.softmax(-1)[:, :, None] * vh[:, lo : i + 1]).sum(1)
    return out


def qkv(B=2, nh=4, nkv=4, T=12, hs=8):
    q = torch.randn(B, nh, T, hs, dtype=torch.float64)
    k, v = (torch.randn(B, nkv, T, hs, dtype=torch.float64) for _ in range(2))
    return q, k, v


# ---------------------------------------------------------------------------------------------
# kernels with score changes


@pytest.mark.parametrize("kernel", [naive_attention, sdpa_attention])
@pytest.mark.parametrize(
    "mods",
    [
        dict(window=5),
        dict(softcap=2.0),
        dict(bias="alibi"),
        dict(bias="alibi", window=3, softcap=1.5),
    ],
)
@pytest.mark.parametrize("nkv", [4, 2, 1])
def test_kernels_with_score_changes_match_the_loop_reference(kernel, mods, nkv):
    q, k, v = qkv(nkv=nkv)
    q = q * 3  # large scores, so that the cap really bends them
    mods = dict(mods)
    if mods.get("bias") == "alibi":
        mods["bias"] = AlibiBias(ModelConfig(n_head=4, n_embd=32))(12).double()
    y = kernel(q, k, v, 0.0, ScoreMods(**mods))
    torch.testing.assert_close(y, reference_attention(q, k, v, **mods))


@pytest.mark.parametrize("nkv", [4, 2, 1])
def test_plain_kernels_with_grouped_kv_match_the_loop_reference(nkv):
    q, k, v = qkv(nkv=nkv)
    for kernel in (naive_attention, sdpa_attention):
        torch.testing.assert_close(kernel(q, k, v), reference_attention(q, k, v))


def test_window_hides_keys_older_than_the_window():
    q, k, v = qkv(nkv=4, T=16)
    y = sdpa_attention(q, k, v, 0.0, ScoreMods(window=4))
    k2, v2 = k.clone(), v.clone()
    k2[:, :, :8] += 1.0  # keys 0..7: outside the window of queries 11.. (they see 8..i)
    v2[:, :, :8] += 1.0
    y2 = sdpa_attention(q, k2, v2, 0.0, ScoreMods(window=4))
    torch.testing.assert_close(y2[:, :, 11:], y[:, :, 11:])
    assert not torch.allclose(y2[:, :, 10], y[:, :, 10])  # query 10 still sees key 7


def test_attend_is_the_bare_kernel_call_without_score_changes():
    calls = []

    def spy(q, k, v, dropout_p=0.0, mods=None):
        calls.append(mods)
        return q

    cfg = ModelConfig()
    q = torch.randn(1, 4, 5, 32)
    Attend(cfg, spy)(q, q, q)
    Attend(cfg.replace(attn_window=3), spy)(q, q, q)
    assert calls[0] is None and calls[1] == ScoreMods(window=3)


# ---------------------------------------------------------------------------------------------
# qk-norm


def test_qk_rmsnorm_formula_on_a_hand_built_batch():
    cfg = ModelConfig(n_embd=8, n_head=2)  # head size 4
    norm = QKRMSNorm(cfg, eps=0.0)
    with torch.no_grad():
        norm.q_weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
    q = torch.tensor([[[[3.0, 4.0, 0.0, 0.0]], [[1.0, 1.0, 1.0, 1.0]]]])  # (1, 2, 1, 4)
    k = torch.tensor([[[[2.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, -6.0]]]])
    qn, kn = norm(q, k)
    rms = math.sqrt((9 + 16) / 4)  # 2.5
    expect_q = torch.tensor([[[[3 / rms, 8 / rms, 0.0, 0.0]], [[1.0, 2.0, 0.5, -1.0]]]])
    expect_k = torch.tensor([[[[2.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, -2.0]]]])  # rms 1 and 3
    torch.testing.assert_close(qn, expect_q)
    torch.testing.assert_close(kn, expect_k)


def test_qk_norm_runs_before_rope_in_either_head_layout():
    cfg = ModelConfig(n_embd=32, n_head=4, block_size=16, qk_norm="rmsnorm", position="rope")
    norm, rot = QKRMSNorm(cfg), RotaryEmbedding(cfg)
    with torch.no_grad():
        norm.k_weight.normal_()
    qk = QKTransform(norm, rot)
    x = torch.randn(2, 16, 32)
    for heads_cls in (SLOTS["heads"]["fused"], SLOTS["heads"]["separate"]):
        heads = heads_cls(cfg, sdpa_attention, qk)
        w = heads.to_fused_qkv()[0]
        q, k, v = (t.view(2, 16, 4, 8).transpose(1, 2) for t in (x @ w.T).split(32, dim=-1))
        q, k = norm(q, k)
        y = F.scaled_dot_product_attention(rot.rotate(q), rot.rotate(k), v, is_causal=True)
        expect = heads.c_proj(y.transpose(1, 2).reshape(2, 16, 32))
        torch.testing.assert_close(heads(x), expect, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# relu2, parallel block, zero init, soft-capping


def test_relu2_formula_and_parameters():
    cfg = ModelConfig(n_embd=16)
    m = ReLU2MLP(cfg)
    x = torch.randn(3, 5, 16)
    h = x @ m.c_fc.weight.T
    torch.testing.assert_close(m(x), (torch.clamp(h, min=0) ** 2) @ m.c_proj.weight.T)
    n = sum(p.numel() for p in m.parameters())
    assert n == sum(p.numel() for p in GeluMLP(cfg).parameters())


def test_parallel_block_formula():
    cfg = ModelConfig(n_embd=32, n_head=4)
    attn = FusedHeads(cfg, sdpa_attention, NoQKNorm())
    blk = ParallelBlock(cfg, attn, GeluMLP(cfg), LayerNorm, SLOTS["residual"]["on"])
    with torch.no_grad():
        blk.ln_1.weight.normal_()
    x = torch.randn(2, 9, 32)
    h = F.layer_norm(x, (32,), blk.ln_1.weight)
    torch.testing.assert_close(blk(x), x + attn(h) + blk.mlp(h))


def test_zero_init_model_is_embeddings_then_head():
    m = micro("zero-init")
    idx = torch.randint(0, VOCAB, (2, 32))
    x = m.wte(idx) + m.pos_emb.wpe(torch.arange(32))
    assert torch.equal(m(idx)[0], m.lm_head(m.ln_f(x)))
    for blk in m.blocks:
        assert not blk.attn.c_proj.weight.any() and not blk.mlp.c_proj.weight.any()
    assert micro("baseline").blocks[0].attn.c_proj.weight.any()  # the baseline does not


def test_logit_softcap_bounds_logits_and_vanishes_as_the_cap_grows():
    base, huge = same_seed_logits(3, {}, dict(logit_softcap=1e9))
    torch.testing.assert_close(huge, base, atol=1e-5, rtol=1e-5)
    idx = torch.randint(0, VOCAB, (2, 32))
    capped = micro(logit_softcap=0.5)
    with torch.no_grad():
        capped.wte.weight.mul_(1e3)  # logits far beyond the cap without it
    assert capped(idx)[0].abs().max() <= 0.5


def test_attention_softcap_in_the_model():
    base, huge = same_seed_logits(5, dict(attention="naive"), dict(attn_softcap=1e9))
    torch.testing.assert_close(huge, base, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# GQA / MQA, ALiBi, sliding window: against the baseline and their references


def test_as_many_kv_heads_as_query_heads_is_the_baseline_bit_for_bit():
    base, kv = same_seed_logits(9, {}, dict(n_kv_head=2))  # micro has 2 heads
    assert torch.equal(kv, base)
    names = [[n for n, _ in micro(n_kv_head=k).named_parameters()] for k in (0, 2)]
    assert names[0] == names[1]


@pytest.mark.parametrize("n_kv_head", [2, 1])
def test_grouped_kv_heads_equal_mha_with_repeated_kv_weights(n_kv_head):
    cfg = ModelConfig(n_embd=32, n_head=4, block_size=16)
    gqa = FusedHeads(cfg.replace(n_kv_head=n_kv_head), sdpa_attention, NoQKNorm())
    mha = FusedHeads(cfg, sdpa_attention, NoQKNorm())
    wq, wk, wv = gqa.c_attn.weight.split(gqa.split, dim=0)
    rep = 4 // n_kv_head
    # MHA head h gets the k/v rows of the group head h // rep
    wk, wv = (w.view(n_kv_head, 8, 32).repeat_interleave(rep, 0).reshape(32, 32) for w in (wk, wv))
    mha.load_fused_qkv(torch.cat([wq, wk, wv]).detach())
    mha.c_proj.load_state_dict(gqa.c_proj.state_dict())
    x = torch.randn(3, 16, 32)
    torch.testing.assert_close(gqa(x), mha(x), atol=1e-5, rtol=1e-5)
    assert gqa.c_attn.weight.shape == (32 + 2 * 8 * n_kv_head, 32)


def test_alibi_slopes_are_the_papers():
    assert alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]
    assert alibi_slopes(4).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]
    # 6 heads: the 4-head slopes, then every other slope of 8 heads (2^-1, 2^-3)
    assert alibi_slopes(6).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]


def test_alibi_model_equals_naive_masked_softmax_with_the_slopes():
    """The whole alibi model's first attention layer against the loop reference."""
    m = micro("alibi")
    heads = m.blocks[0].attn
    x = torch.randn(2, 20, 32)
    w = heads.c_attn.weight
    q, k, v = (t.view(2, 20, 2, 16).transpose(1, 2) for t in (x @ w.T).split(32, dim=-1))
    slopes = alibi_slopes(2)
    i, j = torch.arange(20)[:, None], torch.arange(20)[None, :]
    bias = -slopes[:, None, None] * (i - j)  # (nh, T, T): -slope · distance
    y = reference_attention(q, k, v, bias=bias)
    expect = heads.c_proj(y.transpose(1, 2).reshape(2, 20, 32))
    torch.testing.assert_close(heads(x), expect, atol=1e-5, rtol=1e-5)


def test_window_as_long_as_the_context_is_the_baseline():
    base, window = same_seed_logits(2, {}, dict(attn_window=32))
    torch.testing.assert_close(window, base, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# longer than trained


@pytest.mark.parametrize("name", ["rope", "alibi", "no-position"])
def test_extending_schemes_read_longer_sequences_causally(name):
    m = micro(name).eval()
    idx = torch.randint(0, VOCAB, (2, 128))  # 4x the 32-token context
    with torch.no_grad():
        long, short = m(idx)[0], m(idx[:, :32])[0]
    assert long.shape == (2, 128, VOCAB) and torch.isfinite(long).all()
    torch.testing.assert_close(long[:, :32], short, atol=1e-5, rtol=1e-5)


def test_rope_beyond_its_cache_continues_the_same_angles():
    rot = RotaryEmbedding(ModelConfig(n_embd=32, n_head=2, block_size=8))
    cos, sin = rot._cos_sin(0, 24)
    torch.testing.assert_close(cos[:8], rot.cos)
    torch.testing.assert_close(sin[:8], rot.sin)
    torch.testing.assert_close(rot._cos_sin(16, 8)[0], cos[16:])


def test_learned_positions_refuse_longer_sequences_with_one_line():
    with pytest.raises(ValueError, match="block_size=32") as err:
        micro()(torch.zeros(1, 33, dtype=torch.long))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# the seams themselves: checks per choice, config free of the registry, plugins in every slot


@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(heads="separate", n_kv_head=1), ["separate", "n_kv_head"]),
        (dict(heads="separate", position="alibi"), ["separate", "ALiBi"]),
        (dict(attention="triton", position="alibi"), ["triton", "sdpa"]),
        (dict(attention="triton", attn_window=8), ["triton", "window"]),
        (dict(n_kv_head=3), ["n_kv_head=3", "n_head=4"]),
        (dict(attn_window=-1), ["attn_window"]),
        (dict(logit_softcap=float("inf")), ["logit_softcap"]),
        (dict(qk_norm="layernorm"), ["qk_norm", "rmsnorm"]),
        (dict(init="xavier"), ["init", "gpt2", "zero-proj"]),
    ],
)
def test_each_choice_checks_its_config_in_one_line(overrides, words):
    with pytest.raises(ValueError) as err:
        GPT(ModelConfig().replace(**overrides))
    assert "\n" not in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_config_imports_nothing_from_the_registry():
    tree = ast.parse((ROOT / "variants" / "config.py").read_text())
    imported = {
        getattr(node, "module", None) or alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not any("registry" in (name or "") for name in imported), imported


class _PluginMLP(nn.Module):  # no init_weights: the model must give it a default init
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 2 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(2 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(torch.tanh(self.c_fc(x)))


class _PluginHeads(nn.Module):  # no init_weights either; uses the attend and qk seams
    def __init__(self, cfg, attend, qk):
        super().__init__()
        self.nh, self.attend, self.qk = cfg.n_head, attend, qk
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.nh, -1).transpose(1, 2) for t in self.c_attn(x).split(C, -1))
        y = self.attend(*self.qk(q, k), v, 0.0)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class _PluginQKNorm(nn.Module):
    def __init__(self, cfg):
        super().__init__()

    def forward(self, q, k):
        return F.normalize(q, dim=-1) * 4, F.normalize(k, dim=-1) * 4


class _MLPFirstBlock(nn.Module):  # the MLP before attention in each block
    final_norm = True

    def __init__(self, cfg, attn, mlp, make_norm, residual):
        super().__init__()
        self.attn, self.mlp, self.residual = attn, mlp, residual
        self.ln = make_norm(cfg)

    def forward(self, x):
        return self.residual(self.residual(x, self.mlp(self.ln(x))), self.attn(x))


PLUGINS = {
    "heads": _PluginHeads,
    "attention": lambda q, k, v, dropout_p=0.0, mods=None: naive_attention(q, k, v, 0.0, mods),
    "position": SLOTS["position"]["alibi"],
    "qk_norm": _PluginQKNorm,
    "norm": lambda cfg: nn.LayerNorm(cfg.n_embd),
    "norm_placement": _MLPFirstBlock,
    "mlp": _PluginMLP,
    "residual": lambda x, fx: x + 0.5 * fx,
    "init": lambda cfg: (0.01, 0.001),
}


def test_a_plugin_registers_in_every_slot_and_trains():
    assert set(PLUGINS) == set(SLOTS), "a new slot needs a plugin here"
    for slot, builder in PLUGINS.items():
        register(slot, "plugin-test")(builder)
    register_variant("all-plugins-test", "test only", **{s: "plugin-test" for s in PLUGINS})
    try:
        torch.manual_seed(0)
        m = micro("all-plugins-test")
        # default init: plain weights at the init scheme's std, c_proj at its proj_std
        for blk in m.blocks:
            assert 0.005 < blk.mlp.c_fc.weight.std() < 0.02
            assert blk.mlp.c_proj.weight.std() < 0.002 and blk.attn.c_proj.weight.std() < 0.002
        x = torch.randint(0, VOCAB, (4, 32))
        opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
        first = m(x, x)[1].item()
        for _ in range(30):
            opt.zero_grad()
            m(x, x)[1].backward()
            opt.step()
        assert m(x, x)[1].item() < 0.9 * first
    finally:
        for slot in PLUGINS:
            del SLOTS[slot]["plugin-test"]
        del VARIANTS["all-plugins-test"]


def test_the_example_plugin_file_trains_a_block_in_every_slot(tmp_path):
    """README's plugin examples (ablations/plugins/example_blocks.py): one block per slot, each
    trained through --plugin in a fresh process (plugins register into global tables)."""
    import subprocess
    import sys

    plugin = ROOT / "ablations" / "plugins" / "example_blocks.py"
    source = plugin.read_text()
    slots = {line.split('"')[1] for line in source.splitlines() if 'register("' in line}
    assert slots == set(SLOTS), slots
    run_py = [sys.executable, str(ROOT / "ablations" / "run.py")]

    def listed(*extra) -> list[str]:  # the variant names --list prints
        out = subprocess.run([*run_py, *extra, "--list"], capture_output=True, text=True).stdout
        section = out.split("tasks (")[0].splitlines()[1:]
        return [line.split()[0] for line in section]

    names = [n for n in listed("--plugin", str(plugin)) if n not in listed()]
    assert len(names) == len(slots), names  # one named variant per block
    args = [*run_py, "--plugin", str(plugin)]
    args += [x for n in names for x in ("--variant", n)]
    args += ["--model", "micro", "--steps", "30", "--seeds", "1", "--out", str(tmp_path), "--quiet"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{len(names) + 1} run(s) trained" in r.stderr
    summary = (tmp_path / "summary.md").read_text()
    for n in names:
        assert f"| {n} |" in summary


def test_a_plain_only_kernel_refuses_any_bias_scheme_not_only_alibi():
    """The check reads the position scheme's bias, so a plugin scheme with one is refused too,
    and the kernel itself never drops score changes silently."""
    register("position", "bias-plugin-test")(SLOTS["position"]["alibi"])
    try:
        with pytest.raises(ValueError, match="plain causal attention only.*bias-plugin-test"):
            ModelConfig(attention="triton", position="bias-plugin-test").validate()
    finally:
        del SLOTS["position"]["bias-plugin-test"]
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="plain causal"):
        SLOTS["attention"]["triton"](q, q, q, 0.0, ScoreMods(window=2))


def test_alibi_bias_is_computed_once_per_length():
    alibi = AlibiBias(ModelConfig(n_head=4, n_embd=32))
    a, b = alibi(12), alibi(12)
    assert a is b and alibi(8).shape == (4, 8, 8) and alibi(12) is not a
