"""The optimizer axis: Muon's update against a Newton–Schulz orthogonalisation written here, which
parameters each optimizer gets, AdamW unchanged to the bit, the schedule on both groups, and
the optimizer comparison as arms of one table."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from bench.analysis import tables
from bench.core import optim
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.core.train import lr_at, run
from bench.tasks import build_task
from variants import preset

LR, WD, MOMENTUM = 2e-3, 0.1, 0.95
TASK = {"name": "shakespeare", "data": None}


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Reference: the quintic Newton–Schulz iteration X <- aX + (bXXᵀ + c(XXᵀ)²)X on g scaled
    to unit Frobenius norm (so every singular value is <= 1), with Keller Jordan's
    coefficients, in float64 on the wide orientation (rows <= cols)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / x.norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).float()


def _model(vocab=65):
    torch.manual_seed(0)
    from variants.model import GPT

    return GPT(preset("micro", vocab_size=vocab))


def _one_step(model, cfg, grads):
    opt = optim.make_optimizer(model, cfg)
    for p in model.parameters():
        p.grad = grads[p].clone()
    opt.step()
    return opt


def _random_grads(model):
    gen = torch.Generator().manual_seed(1)
    return {p: torch.randn(p.shape, generator=gen) for p in model.parameters()}


def test_muon_update_is_the_newton_schulz_orthogonalisation():
    """One Muon step on a block matrix W (rows x cols) moves it to
    W·(1 - lr·wd) - lr·0.2·sqrt(max(rows, cols))·NS(g): the orthogonalised gradient (the first
    Nesterov step is a multiple of g, and NS normalises the scale away), at AdamW's update RMS."""
    model = _model()
    cfg = TrainConfig(lr=LR, weight_decay=WD, optimizer="muon")
    grads = _random_grads(model)
    before = {p: p.detach().clone() for p in model.parameters()}
    _one_step(model, cfg, grads)
    w = model.blocks[0].mlp.c_fc.weight  # tall (128 x 32): NS runs on its transpose
    rows, cols = w.shape
    scale = LR * 0.2 * math.sqrt(max(rows, cols))
    step = w.detach() - before[w] * (1 - LR * WD)  # the update, decoupled decay taken out
    expected = -scale * newton_schulz(grads[w])

    def off(ref):  # relative Frobenius distance of the update from a reference
        return float((step - ref).norm() / ref.norm())

    # torch runs the iteration in bf16 (fp32 accumulation), which the quintic amplifies near
    # small singular values: 1-2% from the float64 reference
    assert off(expected) < 0.03, off(expected)
    # the check can fail: 3, 4 or 6 iterations, or the gradient merely normalised, are >= 7% off
    for k in (3, 4, 6):
        assert off(-scale * newton_schulz(grads[w], steps=k)) > 0.05, k
    raw = -scale * grads[w] / grads[w].norm() * math.sqrt(min(rows, cols))
    assert off(raw) > 0.2
    # the reference itself orthogonalises: singular values near 1 (NS's band is about 0.7-1.2)
    sv = torch.linalg.svdvals(newton_schulz(grads[w]))
    assert 0.5 < float(sv.min()) and float(sv.max()) < 1.3


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = _model()
    matrices = {id(p) for p in optim.muon_params(model)}
    names = {n for n, p in model.named_parameters() if id(p) in matrices}
    assert names and all(n.startswith("blocks.") and n.endswith("weight") for n in names)
    assert all(p.dim() == 2 for p in optim.muon_params(model))
    outside = {n for n, p in model.named_parameters() if id(p) not in matrices}
    assert "wte.weight" in outside and any("ln" in n or "norm" in n for n in outside)
    opt = optim.make_optimizer(model, TrainConfig(optimizer="muon"))
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    in_adamw = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert in_muon == matrices and not in_muon & in_adamw
    assert in_muon | in_adamw == {id(p) for p in model.parameters()}


def test_embedding_steps_like_adamw_under_muon():
    """The parameters Muon leaves out take exactly the AdamW step they would take alone."""
    model, twin = _model(), _model()
    grads = _random_grads(model)
    _one_step(model, TrainConfig(optimizer="muon"), grads)
    pairs = zip(model.parameters(), twin.parameters(), strict=True)
    _one_step(twin, TrainConfig(), {q: grads[p] for p, q in pairs})
    assert torch.equal(model.wte.weight, twin.wte.weight)


def _old_make_optimizer(model, cfg):
    """AdamW as bench.core.train built it before --optimizer existed (copied as the reference)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def _micro_spec(**train):
    cfg = TrainConfig(batch_size=8, lr=LR, eval_every=10, eval_batches=2, eval_batch_size=16,
                      timing_warmup=2, **train)  # fmt: skip
    return RunSpec("baseline", preset("micro", vocab_size=65), TASK, Budget("steps", 20), cfg)


def test_adamw_trains_bit_identically_to_before(monkeypatch):
    """An adamw spec has the run id it always had and trains to the same losses, to the last
    digit, as the optimizer construction before Muon was added."""
    spec = _micro_spec()
    assert "optimizer" not in spec.to_dict()["train"]
    assert spec == _micro_spec(optimizer="adamw")
    task = build_task("shakespeare", context=32, eval_batches=2, eval_batch_size=16)
    now = run(spec, task=task)
    with monkeypatch.context() as patch:
        patch.setattr("bench.core.train.make_optimizer", _old_make_optimizer)
        before = run(spec, task=task)
    assert now.run_id == before.run_id
    losses = [(p["train_loss"], p["val_loss"]) for p in now.curve]
    assert losses == [(p["train_loss"], p["val_loss"]) for p in before.curve]
    # ... and the check can fail: Muon trains to other losses under another id
    muon = run(_micro_spec(optimizer="muon"), task=task)
    assert muon.run_id != now.run_id and muon.spec["train"]["optimizer"] == "muon"
    assert muon.metrics["val_loss"] != now.metrics["val_loss"]


def test_schedule_sets_every_group_of_both_optimizers():
    """The loop's lr goes to Muon's and AdamW's groups alike (ratio 1, fixed)."""
    model = _model()
    cfg = TrainConfig(optimizer="muon", lr=LR)
    opt = optim.make_optimizer(model, cfg)
    lr = lr_at(0.5, cfg)
    for g in opt.param_groups:
        g["lr"] = lr
    assert len(opt.param_groups) == 3  # muon's one, adamw's decay and no-decay
    assert {g["lr"] for o in opt.optimizers for g in o.param_groups} == {lr}


def test_old_torch_without_muon_fails_in_one_line(monkeypatch):
    monkeypatch.delattr(torch.optim, "Muon")
    with pytest.raises(ValueError, match=r"needs torch >= 2\.9") as err:
        TrainConfig(optimizer="muon").validate()
    assert "\n" not in str(err.value)
    TrainConfig().validate()  # AdamW needs nothing new


def _rec(variant, seed, loss, optimizer=None):
    from test_trust import _record  # a minimal finished record, as the harness writes them

    rec = _record(variant, seed, loss)
    if optimizer:
        rec["spec"]["train"]["optimizer"] = optimizer
        rec["run_id"] += f"-{optimizer}"
    return rec


def test_an_optimizer_comparison_is_arms_of_one_table():
    """AdamW and Muon runs of the same variant and seeds are two arms, the Muon one named
    'baseline · muon' and read against the AdamW baseline, with its verdict and multiplier;
    the footnote names the reference arm. A Muon-only sweep keeps the plain names."""
    recs = [_rec("baseline", s, 2.0 + 0.01 * s) for s in range(3)]
    recs += [_rec("baseline", s, 1.9 + 0.011 * s, "muon") for s in range(3)]
    (meta, df), *rest = tables.summaries(recs)
    assert not rest and list(df["variant"]) == ["baseline", "baseline · muon"]
    row = df.iloc[1]
    assert row["verdict"] == "better" and row["x_steps"] > 1
    text = tables.format_summary(df, meta)
    assert "Reference arm: 'baseline' with AdamW" in text
    (meta, df), *_ = tables.summaries([r for r in recs if r["spec"]["train"].get("optimizer")])
    assert list(df["variant"]) == ["baseline"] and "Every run trained with Muon" in (
        tables.footnote(meta)
    )


@pytest.mark.parametrize("flag", ["sgd", "Muon", ""])
def test_unknown_optimizer_is_one_line(tmp_path, flag):
    from test_harness import cli, one_line_error

    r = cli("--model", "micro", "--steps", "5", "--optimizer", flag, "--out", str(tmp_path))
    one_line_error(r, "error: unknown optimizer", "adamw, muon")


def test_train_late_fields_leave_committed_ids_alone():
    """Every TrainConfig late field is out of the spec at its default, in it otherwise."""
    from variants.config import late_fields

    base = TrainConfig()
    assert set(late_fields(TrainConfig)) >= {"optimizer", "muon_momentum"}
    assert not set(late_fields(TrainConfig)) & set(base.to_dict())
    for f in dataclasses.fields(TrainConfig):
        if f.name in late_fields(TrainConfig):
            other = "muon" if f.name == "optimizer" else f.default / 2
            assert f.name in dataclasses.replace(base, **{f.name: other}).to_dict()


def _update(model, grads, cfg):
    """The change one optimizer step makes to every parameter."""
    before = {p: p.detach().clone() for p in model.parameters()}
    _one_step(model, cfg, grads)
    return {p: p.detach() - before[p] for p in model.parameters()}


def test_muon_orthogonalises_q_k_and_v_apart():
    """The fused (3C, C) qkv weight moves as three matrices: rows [0, C) by
    -lr·0.2·sqrt(C)·NS(g_q), likewise k and v; orthogonalising the whole (3C, C) gradient (what
    torch's Muon does to a parameter) gives another update, by far."""
    model = _model()
    cfg = TrainConfig(lr=LR, weight_decay=0.0, optimizer="muon")
    grads = _random_grads(model)
    step = _update(model, grads, cfg)
    w = model.blocks[0].attn.c_attn.weight
    C = w.size(1)
    for rows in (slice(0, C), slice(C, 2 * C), slice(2 * C, 3 * C)):
        expected = -LR * 0.2 * math.sqrt(C) * newton_schulz(grads[w][rows])
        off = float((step[w][rows] - expected).norm() / expected.norm())
        assert off < 0.03, (rows, off)
    whole = -LR * 0.2 * math.sqrt(3 * C) * newton_schulz(grads[w])
    assert float((step[w] - whole).norm() / whole.norm()) > 0.3
    # the MLP's matrices stay whole
    fc = model.blocks[0].mlp.c_fc.weight
    expected = -LR * 0.2 * math.sqrt(max(fc.shape)) * newton_schulz(grads[fc])
    assert float((step[fc] - expected).norm() / expected.norm()) < 0.03


def test_muon_steps_fused_and_separate_heads_alike():
    """Separate heads (per-head query/key/value weights) stack into the same Q, K and V as the
    fused weight, so one Muon step from equal weights and gradients gives equal weights."""
    from variants.model import GPT

    models = {}
    for heads in ("fused", "separate"):
        torch.manual_seed(0)
        models[heads] = GPT(preset("micro", vocab_size=65, heads=heads))
    fused, separate = models["fused"], models["separate"]
    x = torch.randint(0, 65, (4, 32), generator=torch.Generator().manual_seed(3))
    for m in (fused, separate):
        m(x, targets=x)[1].backward()
        optim.make_optimizer(m, TrainConfig(lr=LR, optimizer="muon")).step()
    for bf, bs in zip(fused.blocks, separate.blocks, strict=True):
        wf, ws = bf.attn.to_fused_qkv()[0], bs.attn.to_fused_qkv()[0]
        torch.testing.assert_close(ws, wf, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(bs.attn.c_proj.weight, bf.attn.c_proj.weight)
    # the check can fail: the step moved the weights by far more than the tolerance
    w0 = GPT(preset("micro", vocab_size=65)).blocks[0].attn.c_attn.weight
    assert float((fused.blocks[0].attn.c_attn.weight - w0).abs().max()) > 1e-4


def test_an_optimizer_registers_like_a_block():
    """`OPTIMIZERS` is a Registry: a plugin adds a builder, and config validation, the
    unknown-name message and `make_optimizer` all see it."""

    @optim.OPTIMIZERS.register("sgd-test", description="plain SGD (test only)")
    def sgd(model, cfg):
        return torch.optim.SGD(model.parameters(), lr=cfg.lr)

    try:
        cfg = TrainConfig(optimizer="sgd-test").validate()
        assert isinstance(optim.make_optimizer(_model(), cfg), torch.optim.SGD)
        with pytest.raises(ValueError, match="valid optimizers: adamw, muon, sgd-test"):
            optim.check_available("sgd")
    finally:
        optim.OPTIMIZERS.remove("sgd-test")
    with pytest.raises(ValueError, match="unknown optimizer 'sgd-test'"):
        TrainConfig(optimizer="sgd-test").validate()
