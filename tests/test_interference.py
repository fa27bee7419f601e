"""Interference diagnostic and filter: exact gradients as the reference for the sketches, a constructed opposing
prompt, the trainer's per-group gradients against gradients computed here, and 2 processes against 1."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAIN_ARGS, make_prompt_dataset, odd_a_reward

from trl_passk import PassKGRPOConfig, PassKGRPOTrainer
from trl_passk.advantages import ADVANTAGE_ESTIMATORS, mix_objectives
from trl_passk.interference import (
    CountSketch,
    InterferenceMemory,
    filter_advantages,
    interference_stats,
    interference_stats_from_sketches,
    pass1_gradient,
    passk_prompt_weights,
)


def sketch_tolerance(dim, gi, gj, sigmas=5.0):
    """Count-sketch inner products have std <= sqrt(2/dim) |u| |v|; allow `sigmas` of them."""
    return sigmas * math.sqrt(2.0 / dim) * gi.norm() * gj.norm()


def softmax_policy_gradients(num_prompts=16, actions=2, features=1200, seed=0):
    """Exact grad p(x) of a shared-parameter softmax policy pi(a|x) = softmax(theta phi_x), p(x) = pi(a*_x | x).

    Prompts share most of their features; the last eighth wants action 1 where the others want action 0, so their
    gradients oppose the majority's (negative interference) and the rest agree.
    """
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(actions, features, generator=gen, dtype=torch.float64) * 0.1
    theta.requires_grad_(True)
    shared = torch.randn(features, generator=gen, dtype=torch.float64)
    phi = shared + 0.5 * torch.randn(num_prompts, features, generator=gen, dtype=torch.float64)
    target = (torch.arange(num_prompts) >= num_prompts - max(num_prompts // 8, 1)).long()
    grads, ps = [], []
    for x in range(num_prompts):
        p = torch.softmax(theta @ phi[x], dim=0)[target[x]]
        (g,) = torch.autograd.grad(p, theta)
        grads.append(g)
        ps.append(p.item())
    return grads, torch.tensor(ps, dtype=torch.float64)


def test_sketched_kernel_matches_exact_within_promised_tolerance():
    grads, p = softmax_policy_gradients()
    flat = torch.stack([g.reshape(-1) for g in grads])  # (P, 2400)
    exact = flat @ flat.T
    dim = 1024
    sketch = CountSketch(dim, seed=3)
    z = torch.stack([sketch([g[:4], g[4:]]) for g in grads]).double()  # split: several tensors, like a model
    approx = z @ z.T
    for i in range(len(grads)):
        for j in range(len(grads)):
            assert abs(approx[i, j] - exact[i, j]) <= sketch_tolerance(dim, flat[i], flat[j]), (i, j)
    s_exact = interference_stats(exact, p, k=4)
    s_approx = interference_stats(approx, p, k=4)
    # Flags agree wherever the exact score is clear of the threshold by more than the sketch's error.
    clear = s_exact["agreement_cos"].abs() > 0.25
    assert clear.sum() >= 8 and s_exact["flagged"][clear].any() and not s_exact["flagged"][clear].all()
    assert torch.equal(s_exact["flagged"][clear], s_approx["flagged"][clear])
    assert s_approx["alignment_cos"] == pytest.approx(s_exact["alignment_cos"], abs=0.15)


def test_stats_against_explicit_gradient_vectors():
    grads, p = softmax_policy_gradients(num_prompts=10, seed=1)
    flat = torch.stack([g.reshape(-1) for g in grads])
    stats = interference_stats(flat @ flat.T, p, k=4, exclude_self=False)
    w = 4 * (1 - p) ** 3
    grad_j1, grad_jk = flat.sum(0), (w[:, None] * flat).sum(0)
    assert torch.allclose(stats["weights"], w)
    assert torch.allclose(stats["agreement"], flat @ grad_j1)
    assert stats["alignment_cos"] == pytest.approx(torch.nn.functional.cosine_similarity(grad_jk, grad_j1, 0).item())
    cos_self = torch.nn.functional.cosine_similarity(flat, grad_j1[None, :], dim=1)
    assert torch.allclose(stats["agreement_cos"], cos_self)
    # exclude_self: cosine with the other prompts' summed gradient
    loo = interference_stats(flat @ flat.T, p, k=4)["agreement_cos"]
    rest = grad_j1[None, :] - flat
    assert torch.allclose(loo, torch.nn.functional.cosine_similarity(flat, rest, dim=1))


@pytest.mark.parametrize("exclude_self", [True, False])
def test_stats_from_sketches_equal_kernel_stats(exclude_self):
    z = torch.randn(20, 64, dtype=torch.float64)
    p = torch.rand(20, dtype=torch.float64)
    a = interference_stats(z @ z.T, p, k=4, exclude_self=exclude_self, threshold=0.1)
    b = interference_stats_from_sketches(z, p, k=4, exclude_self=exclude_self, threshold=0.1)
    assert a["alignment_cos"] == pytest.approx(b["alignment_cos"])
    for key in ("agreement", "agreement_cos", "weights"):
        assert torch.allclose(a[key], b[key])
    assert torch.equal(a["flagged"], b["flagged"])


def test_undefined_cases_are_finite_zero():
    stats = interference_stats(torch.zeros(3, 3), torch.tensor([0.1, 0.5, 1.0]), k=4)
    assert stats["alignment_cos"] == 0.0 and not stats["flagged"].any()
    assert torch.equal(stats["agreement_cos"], torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(passk_prompt_weights(torch.tensor([0.0, 1.0]), 4), torch.tensor([4.0, 0.0]))


def test_constructed_opposing_prompt_is_flagged_and_filtered():
    # Prompt 0 is hard (p = 0.05) and its gradient opposes the shared direction u of the five others.
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(500, generator=gen, dtype=torch.float64)
    grads = [-2.0 * u] + [u + 0.3 * torch.randn(500, generator=gen, dtype=torch.float64) for _ in range(5)]
    flat = torch.stack(grads)
    p = torch.tensor([0.05, 0.5, 0.5, 0.6, 0.4, 0.5], dtype=torch.float64)
    stats = interference_stats(flat @ flat.T, p, k=8)
    assert stats["flagged"].tolist() == [True, False, False, False, False, False]
    assert stats["alignment_cos"] < 0  # pass@k's up-weighting of the hard prompt turns its gradient against pass@1

    success = (torch.rand(6, 8, generator=gen) < p[:, None].float()).float()
    success[0, :2] = torch.tensor([1.0, 0.0])
    pass1 = ADVANTAGE_ESTIMATORS["grpo"](success, 1)
    passk = ADVANTAGE_ESTIMATORS["analytic"](success, 4)
    adv, w = mix_objectives("hybrid", pass1, passk, hybrid_lambda=0.7)
    filtered = filter_advantages(adv, pass1, w, stats["flagged"], "filter")
    assert torch.allclose(filtered[0], 0.7 * pass1[0])  # pass@k share removed, pass@1 share kept
    assert torch.equal(filtered[1:], adv[1:])  # others untouched
    dropped = filter_advantages(adv, pass1, w, stats["flagged"], "drop")
    assert (dropped[0] == 0).all() and torch.equal(dropped[1:], adv[1:])
    assert torch.equal(filter_advantages(adv, pass1, w, stats["flagged"], "diagnose"), adv)


def test_memory_round_trip(tmp_path):
    memory = InterferenceMemory()
    memory.update(["a", "b"], torch.tensor([-0.4, 0.3]), torch.tensor([True, False]), step=5)
    memory.update(["a"], torch.tensor([-0.2]), torch.tensor([True]), step=6)
    path = str(tmp_path / "memory.json")
    memory.save(path)
    loaded = InterferenceMemory.load(path)
    assert loaded.flagged(["a", "b", "never-seen"]).tolist() == [True, False, False]
    assert loaded.entries["a"]["seen"] == 2 and loaded.entries["a"]["step"] == 6


# ---------------------------------------------------------------------------------------------------------------------
# trainer glue


def exact_group_gradients(model, batch, success, G):
    """Per-group grad of (1/G) sum_i c_i log pi(y_i | x), c_i = s_i - mean_{-i}(s), computed here from logits."""
    params = [p for p in model.parameters() if p.requires_grad]
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    T = batch["completion_ids"].shape[1]
    out = []
    for g in range(success.shape[0]):
        rows = slice(g * G, (g + 1) * G)
        s = success[g]
        coef = s - (s.sum() - s) / (G - 1)
        logits = model(input_ids=ids[rows], attention_mask=mask[rows]).logits[:, -T - 1 : -1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, batch["completion_ids"][rows, :, None]).squeeze(-1)
        objective = (coef * (logp * batch["completion_mask"][rows]).sum(1)).sum() / G
        grads = torch.autograd.grad(objective, params, allow_unused=True)
        out.append(torch.cat([g_.reshape(-1) for g_ in grads if g_ is not None]))
    return torch.stack(out).double()


def test_trainer_sketches_match_exact_per_group_gradients(tiny_model_path, tmp_path):
    G, N = 4, 16
    args = PassKGRPOConfig(
        str(tmp_path),
        num_generations=G,
        k=2,
        per_device_train_batch_size=N,
        interference="diagnose",
        interference_sketch_dim=4096,
        report_to="none",
        use_cpu=True,
        bf16=False,
    )
    trainer = PassKGRPOTrainer(
        model=tiny_model_path, reward_funcs=odd_a_reward, args=args, train_dataset=make_prompt_dataset(8)
    )
    gen = torch.Generator().manual_seed(1)
    vocab = trainer.model.config.vocab_size
    batch = {
        "prompt_ids": torch.randint(5, vocab, (N, 5), generator=gen),
        "prompt_mask": torch.ones(N, 5, dtype=torch.long),
        "completion_ids": torch.randint(5, vocab, (N, 6), generator=gen),
        "completion_mask": torch.ones(N, 6, dtype=torch.long),
    }
    success = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    z = trainer._prompt_gradient_sketches(batch, success, G).double()
    exact = exact_group_gradients(trainer.model, batch, success, G)
    assert torch.all(exact[3] == 0) and torch.all(z[3] == 0)  # all-correct group: zero estimate, no backward
    approx, kernel = z @ z.T, exact @ exact.T
    for i in range(4):
        for j in range(4):
            assert abs(approx[i, j] - kernel[i, j]) <= sketch_tolerance(4096, exact[i], exact[j]) + 1e-9

    # Memory bounded: in chunks of a micro-batch (2 rows here) the diagnostic never runs the model on more rows at once,
    # and the chunks' sketches add up to the whole group's.
    sizes = []
    forward = trainer._get_per_token_logps_and_entropies

    def observed(model, ids, *args, **kwargs):
        sizes.append(ids.shape[0])
        return forward(model, ids, *args, **kwargs)

    trainer._get_per_token_logps_and_entropies = observed
    chunked = trainer._prompt_gradient_sketches(batch, success, G, chunk_size=2).double()
    assert sizes and max(sizes) == 2
    torch.testing.assert_close(chunked, z, rtol=1e-4, atol=1e-6)
    sizes.clear()
    trainer.args.per_device_train_batch_size = 3  # the default chunk is the training micro-batch
    trainer._prompt_gradient_sketches(batch, success, G)
    assert max(sizes) == 3


def test_filter_end_to_end_with_memory(tiny_model_path, tmp_path):
    # Four prompts, four per step: every step sees the same prompts, so off-steps reuse the remembered flags.
    # threshold = 1 flags every prompt whose gradient estimate is non-zero.
    args = PassKGRPOConfig(
        str(tmp_path),
        **TINY_TRAIN_ARGS,
        objective="hybrid",
        k=2,
        interference="filter",
        interference_every=2,
        interference_threshold=1.0,
        interference_sketch_dim=512,
    )
    trainer = PassKGRPOTrainer(
        model=tiny_model_path, reward_funcs=odd_a_reward, args=args, train_dataset=make_prompt_dataset(4)
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "interference/filtered_frac" in h]
    assert len(logs) == 3
    assert "interference/alignment_cos" in logs[0] and "interference/alignment_cos" not in logs[1]
    assert -1.0 <= logs[0]["interference/alignment_cos"] <= 1.0
    assert logs[1]["interference/filtered_frac"] == logs[0]["interference/flagged_frac"] > 0  # from memory
    saved = json.loads((tmp_path / "interference_memory.json").read_text())
    assert len(saved) == 4
    # a new trainer on the same output_dir starts from the saved memory
    again = PassKGRPOTrainer(
        model=tiny_model_path, reward_funcs=odd_a_reward, args=args, train_dataset=make_prompt_dataset(4)
    )
    assert len(again.interference_memory) == 4


@pytest.mark.parametrize("lora_dropout", [0.0, 0.2])
def test_diagnose_mode_is_observational(tiny_model_path, tmp_path, lora_dropout):
    """`interference="diagnose"` must not change training: same generations, same advantages, same trained weights
    as `"off"` (also with LoRA dropout, whose masks would otherwise consume the sampling RNG)."""
    from peft import LoraConfig

    def train(mode):
        args = PassKGRPOConfig(
            str(tmp_path / mode), **TINY_TRAIN_ARGS, objective="hybrid", k=2, interference=mode, interference_every=1
        )
        trainer = PassKGRPOTrainer(
            model=tiny_model_path,
            reward_funcs=odd_a_reward,
            args=args,
            train_dataset=make_prompt_dataset(8),
            peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=lora_dropout, target_modules="all-linear"),
        )
        trainer.train()
        rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
        weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        return trainer, rewards, weights

    _, rewards_off, weights_off = train("off")
    diagnosed, rewards_diag, weights_diag = train("diagnose")
    assert any("interference/alignment_cos" in h for h in diagnosed.state.log_history)
    assert rewards_diag == rewards_off
    assert all(torch.equal(weights_diag[name], weights_off[name]) for name in weights_off)


# ---------------------------------------------------------------------------------------------------------------------
# two processes


def launch(model_path, out_dir, nproc):
    os.makedirs(out_dir, exist_ok=True)
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    script = Path(__file__).parent / "scripts" / "dist_interference.py"
    cmd = [torchrun, "--nproc_per_node", str(nproc), "--master_port", str(29650 + nproc), str(script)]
    proc = subprocess.run([*cmd, model_path, str(out_dir)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slow
def test_two_processes_give_the_same_statistics(tiny_model_path, tmp_path):
    launch(tiny_model_path, tmp_path / "one", 1)
    launch(tiny_model_path, tmp_path / "two", 2)
    single = torch.load(tmp_path / "one" / "sketches_rank0.pt")
    assert single.abs().sum() > 0
    for rank in (0, 1):
        assert torch.allclose(torch.load(tmp_path / "two" / f"sketches_rank{rank}.pt"), single, atol=1e-5)
        stats = json.loads((tmp_path / "two" / f"stats_rank{rank}.json").read_text())
        ref = json.loads((tmp_path / "one" / "stats_rank0.json").read_text())
        assert stats["alignment_cos"] == pytest.approx(ref["alignment_cos"], abs=1e-5)
        assert stats["agreement_cos"] == pytest.approx(ref["agreement_cos"], abs=1e-5)


def test_pass1_gradient_matches_closed_form_and_adds_up_across_a_split_group():
    # Softmax policy over 3 actions, logits theta: grad log pi(a) = e_a - pi. So (1/G) sum_i c_i grad log pi(y_i) is
    # (1/G) sum_i c_i (e_{y_i} - pi), written out here.
    theta = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64, requires_grad=True)
    actions = torch.tensor([0, 2, 2, 1])
    coef = torch.tensor([1.0, -0.5, 0.25, -0.75], dtype=torch.float64)
    logps = torch.log_softmax(theta, 0)[actions]  # (G,) sequence log-probs
    (grad,) = pass1_gradient(logps, coef, [theta], num_generations=4, retain_graph=True)
    pi = torch.softmax(theta.detach(), 0)
    expected = (coef[:, None] * (torch.nn.functional.one_hot(actions, 3) - pi)).sum(0) / 4
    torch.testing.assert_close(grad, expected)
    # Per-token form with a mask gives the same, and the halves of a group split across processes add up to it.
    tokens = torch.stack([logps, torch.zeros_like(logps)], dim=1)  # (G, 2): second token masked out
    mask = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64)
    halves = [
        pass1_gradient(tokens[s], coef[s], [theta], num_generations=4, mask=mask[s], retain_graph=True)[0]
        for s in (slice(0, 2), slice(2, 4))
    ]
    torch.testing.assert_close(halves[0] + halves[1], expected)
