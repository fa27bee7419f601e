"""Objectives testbed: the pass@1 / pass@k trade-off on a multi-prompt softmax bandit, and the interference filter.

    python benchmarks/bandit.py [--seeds 5] [--steps 150] [--plot docs/bandit.png]

A policy with shared parameters over P prompts: prompt x has a feature vector phi_x, logits = W phi_x over A actions,
one correct action a*_x, so p(x) = pi(a*_x | x), pass@1 = E_x p(x), pass@k = E_x[1 - (1 - p(x))^k] and the
per-prompt gradients grad_W p(x) (torch.func.jacrev) are all exact. Each feature vector is a shared part (the dims
that create interference) plus a private one-hot of scale `private` (a slow per-prompt bias).

Settings (three prompt groups each):
- `interfering`: "easy" prompts (p ~ 0.87 at init) and a minority of "conflict" prompts share the same shared
  feature but need a different action, so raising a conflict prompt's p lowers the easy prompts' p; "benign" hard
  prompts live on their own shared feature. pass@k up-weights the hard (conflict) prompts, so its gradient rotates
  against pass@1: alignment cos < 0 at init and the conflict prompts have negative agreement (checked and printed).
- `benign`: the same, except that the minority's correct action is the majority's, so there is no conflict.

Every objective trains from the same init with sampled groups (G actions per prompt, every prompt every step),
REINFORCE surrogate mean(A * log pi(a|x)) and plain SGD (same lr and step count for all; `--optimizer adam`
for the sensitivity check in docs/results.md): pass1 (TRL's grpo), passk with
each estimator (analytic, full, bootstrap, pkpo), hybrid lambda = 0.7 (analytic), combination (analytic) and hybrid +
filter, where `interference_stats` on the EXACT kernel K = [<grad p(x), grad p(x')>] of the current policy (every
step) flags prompts with negative self-excluded agreement and `filter_advantages(mode="filter")` keeps only their pass@1
share. `hybrid+filter (sampled)` does the same from the trainer's estimate grad p(x) ~ (1/G) sum_i A1_i grad log pi
and p(x) ~ c/G (no sketch: the parameter is tiny).

Reported: exact pass@1 / pass@k at the end, mean and 95 % t-interval over seeds; gaps against pass1 training are paired
by seed. The exact alignment cos(grad J_k, grad J_1) of the current policy is recorded along training.
Last line: `hybrid_filter_pass1_gap: X` (pass@1 of hybrid+filter minus pass@1 of pass1 training, points).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass

import torch
from torch.func import jacrev

from trl_passk.advantages import ADVANTAGE_ESTIMATORS, mix_objectives
from trl_passk.interference import filter_advantages, interference_stats

torch.set_num_threads(1)

# ---------------------------------------------------------------------------------------------------------------------
# the bandit


@dataclass
class Bandit:
    """Softmax policy ``pi(. | x) = softmax(W phi_x)`` over ``A`` actions for ``P`` prompts.

    Attributes:
        phi (`torch.Tensor` of shape `(P, D)`): prompt features.
        correct (`torch.Tensor` of shape `(P,)`, long): the correct action of each prompt.
        init (`torch.Tensor` of shape `(A, D)`): the starting parameter ``W``.
        group (`list[str]`): the group name of each prompt (for reports).
    """

    phi: torch.Tensor
    correct: torch.Tensor
    init: torch.Tensor
    group: list[str]

    @property
    def num_prompts(self) -> int:
        return self.phi.shape[0]

    def log_probs(self, W: torch.Tensor) -> torch.Tensor:
        """`(P, A)` log pi(a | x)."""
        return torch.log_softmax(self.phi @ W.T, dim=-1)

    def success_prob(self, W: torch.Tensor) -> torch.Tensor:
        """`(P,)` exact p(x) = pi(a*_x | x)."""
        return self.log_probs(W).gather(1, self.correct[:, None]).squeeze(1).exp()

    def pass_at_k(self, W: torch.Tensor, k: int) -> float:
        """Exact pass@k = E_x[1 - (1 - p(x))^k] (k = 1: pass@1)."""
        return (1 - (1 - self.success_prob(W)) ** k).mean().item()

    def prompt_grads(self, W: torch.Tensor) -> torch.Tensor:
        """`(P, A * D)` exact grad_W p(x) for every prompt (one vectorised Jacobian)."""
        return jacrev(self.success_prob)(W.detach()).reshape(self.num_prompts, -1)

    def kernel(self, W: torch.Tensor) -> torch.Tensor:
        """`(P, P)` exact K[x, x'] = <grad p(x), grad p(x')>."""
        g = self.prompt_grads(W)
        return g @ g.T

    def sample(self, W: torch.Tensor, G: int, generator: torch.Generator) -> torch.Tensor:
        """`(P, G)` actions drawn from pi(. | x)."""
        probs = self.log_probs(W).exp()
        return torch.multinomial(probs, G, replacement=True, generator=generator)


def make_bandit(setting: str, *, num_easy=16, num_hard=4, num_benign=4, num_actions=4, private=0.3) -> Bandit:
    """The `interfering` or `benign` setting (see the module docstring).

    Features: dim 0 is shared by easy and hard prompts, dim 1 by the benign-hard prompts, dims 2.. are a private
    one-hot per prompt of scale `private`. Init: W[0, 0] = 3 (easy p ~ 0.87), W[2, 1] = -2 (benign p ~ 0.04).
    In `interfering` the hard prompts need action 1 (p ~ 0.04 at init), in `benign` action 0 with a weaker shared
    feature (0.25, p ~ 0.4 at init), so their push agrees with the easy prompts'.
    """
    if setting not in ("interfering", "benign"):
        raise ValueError(f"setting must be 'interfering' or 'benign', got {setting!r}.")
    P = num_easy + num_hard + num_benign
    D = 2 + P
    phi = torch.zeros(P, D, dtype=torch.float64)
    phi[:, 2:] = private * torch.eye(P, dtype=torch.float64)
    group = ["easy"] * num_easy + ["hard"] * num_hard + ["benign"] * num_benign
    correct = torch.zeros(P, dtype=torch.long)
    hard = slice(num_easy, num_easy + num_hard)
    benign = slice(num_easy + num_hard, P)
    phi[:num_easy, 0] = 1.0
    if setting == "interfering":
        phi[hard, 0] = 1.0
        correct[hard] = 1
    else:
        phi[hard, 0] = 0.25
        correct[hard] = 0
    phi[benign, 1] = 1.0
    correct[benign] = 2
    init = torch.zeros(num_actions, D, dtype=torch.float64)
    init[0, 0] = 3.0
    init[2, 1] = -2.0
    return Bandit(phi, correct, init, group)


# ---------------------------------------------------------------------------------------------------------------------
# objectives

# name -> (objective, pass@k estimator, estimator options, interference diagnostic: None | "exact" | "sampled")
OBJECTIVES = {
    "pass1": ("pass1", None, {}, None),
    "passk/analytic": ("passk", "analytic", {}, None),
    "passk/full": ("passk", "full", {}, None),
    "passk/bootstrap": ("passk", "bootstrap", {}, None),
    "passk/pkpo": ("passk", "pkpo", {}, None),
    "hybrid": ("hybrid", "analytic", {}, None),
    "combination": ("combination", "analytic", {}, None),
    "hybrid+filter": ("hybrid", "analytic", {}, "exact"),
    "hybrid+filter(sampled)": ("hybrid", "analytic", {}, "sampled"),
}


def sampled_prompt_grads(bandit: Bandit, W: torch.Tensor, actions: torch.Tensor, pass1: torch.Tensor):
    """`(P, A * D)` the trainer's estimate grad p(x) ~ (1/G) sum_i A1_i grad log pi(y_i | x)."""

    def per_prompt(W_):
        logp = bandit.log_probs(W_).gather(1, actions)  # (P, G)
        return (pass1 * logp).mean(dim=1)  # (P,)

    return jacrev(per_prompt)(W.detach()).reshape(bandit.num_prompts, -1)


def objective_advantages(name, bandit, W, actions, rewards, k, generator, threshold=0.0):
    """`(P, G)` advantages of objective `name` for one step, and the number of prompts the filter flagged."""
    objective, estimator, options, diagnostic = OBJECTIVES[name]
    pass1 = ADVANTAGE_ESTIMATORS["grpo"](rewards, k, scale_rewards="group").double()
    if estimator is None:
        passk = torch.zeros_like(pass1)
    else:
        if estimator in ("full", "bootstrap"):
            options = {**options, "generator": generator}
        passk = ADVANTAGE_ESTIMATORS[estimator](rewards, k, **options).double()
    adv, w = mix_objectives(objective, pass1, passk, hybrid_lambda=0.7, success_rate=rewards.mean(dim=1))
    if diagnostic is None:
        return adv, 0
    if diagnostic == "exact":
        stats = interference_stats(bandit.kernel(W), bandit.success_prob(W).detach(), k, threshold=threshold)
    else:
        g = sampled_prompt_grads(bandit, W, actions, pass1)
        stats = interference_stats(g @ g.T, rewards.mean(dim=1), k, threshold=threshold)
    flagged = stats["flagged"]
    return filter_advantages(adv, pass1, w, flagged, "filter"), int(flagged.sum())


def train(
    bandit: Bandit, name: str, *, steps=150, G=8, k=4, lr=2.0, optimizer="sgd", seed=0, threshold=0.0, record_every=5
) -> dict:
    """Train objective `name` from ``bandit.init``; exact pass@1 / pass@k / alignment cos every `record_every` steps.

    Each step samples `G` actions for every prompt and takes one optimizer step on ``-mean(A * log pi(a | x))``. The
    advantages keep each estimator's own scale (e.g. bootstrap's Eq. 6 sum is about ``M k / G = k`` times the
    analytic value), so under SGD the scale acts as a per-objective learning-rate factor; Adam removes it.
    """
    gen = torch.Generator().manual_seed(seed)
    W = bandit.init.clone().requires_grad_(True)
    opt = torch.optim.Adam([W], lr=lr) if optimizer == "adam" else torch.optim.SGD([W], lr=lr)
    curve = {"step": [], "pass1": [], "passk": [], "cos": []}
    flagged_total = 0

    def record(step):
        with torch.no_grad():
            curve["step"].append(step)
            curve["pass1"].append(bandit.pass_at_k(W, 1))
            curve["passk"].append(bandit.pass_at_k(W, k))
        curve["cos"].append(interference_stats(bandit.kernel(W), bandit.success_prob(W).detach(), k)["alignment_cos"])

    for step in range(steps):
        if step % record_every == 0:
            record(step)
        with torch.no_grad():
            actions = bandit.sample(W, G, gen)  # (P, G)
            rewards = (actions == bandit.correct[:, None]).double()  # (P, G)
        adv, flagged = objective_advantages(name, bandit, W, actions, rewards, k, gen, threshold)
        flagged_total += flagged
        logp = bandit.log_probs(W).gather(1, actions)  # (P, G)
        loss = -(adv.to(logp) * logp).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    record(steps)
    curve["flagged_frac"] = flagged_total / (steps * bandit.num_prompts)
    curve["final_p"] = bandit.success_prob(W).detach()
    return curve


# ---------------------------------------------------------------------------------------------------------------------
# statistics and report

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def mean_ci(values) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval."""
    x = torch.tensor(values, dtype=torch.float64)
    n = len(values)
    if n < 2:
        return x.mean().item(), math.nan
    t = T975.get(n - 1, 1.96 + 2.5 / (n - 1))  # df > 10: a close approximation of the t quantile
    return x.mean().item(), t * x.std().item() / math.sqrt(n)


def init_diagnostic(bandit: Bandit, k: int) -> dict:
    W = bandit.init
    stats = interference_stats(bandit.kernel(W), bandit.success_prob(W), k)
    p = bandit.success_prob(W)
    out = {"alignment_cos": stats["alignment_cos"], "pass1": bandit.pass_at_k(W, 1), "passk": bandit.pass_at_k(W, k)}
    for grp in dict.fromkeys(bandit.group):
        idx = torch.tensor([g == grp for g in bandit.group])
        out[grp] = dict(
            p=p[idx].mean().item(),
            agreement_cos=stats["agreement_cos"][idx].mean().item(),
            flagged=int(stats["flagged"][idx].sum()),
            n=int(idx.sum()),
        )
    return out


def run_setting(setting: str, args) -> dict:
    bandit = make_bandit(setting, private=args.private)
    diag = init_diagnostic(bandit, args.k)
    print(f"\n== setting: {setting} (P={bandit.num_prompts}, A={bandit.init.shape[0]}, D={bandit.init.shape[1]}) ==")
    print(
        f"init: pass@1 {100 * diag['pass1']:.1f}, pass@{args.k} {100 * diag['passk']:.1f}, "
        f"alignment cos (exact kernel, pass@{args.k} weights) {diag['alignment_cos']:+.3f}"
    )
    for grp in dict.fromkeys(bandit.group):
        d = diag[grp]
        print(
            f"  {grp:7s} n={d['n']:2d}  p={d['p']:.3f}  mean agreement cos (self-excluded) {d['agreement_cos']:+.3f}  "
            f"flagged {d['flagged']}/{d['n']}"
        )
    runs = {}
    for name in OBJECTIVES:
        runs[name] = [
            train(
                bandit,
                name,
                steps=args.steps,
                G=args.G,
                k=args.k,
                lr=args.lr,
                optimizer=args.optimizer,
                seed=seed,
                threshold=args.threshold,
            )
            for seed in range(args.seeds)
        ]
    return {"bandit": bandit, "init": diag, "runs": runs}


def summarise(result: dict, k: int) -> dict:
    """Per objective: final pass@1 / pass@k (points) with CIs, paired gaps vs pass1, mean cos over training."""
    runs = result["runs"]
    base1 = [r["pass1"][-1] for r in runs["pass1"]]
    basek = [r["passk"][-1] for r in runs["pass1"]]
    rows = {}
    for name, rs in runs.items():
        p1 = [100 * r["pass1"][-1] for r in rs]
        pk = [100 * r["passk"][-1] for r in rs]
        rows[name] = dict(
            pass1=mean_ci(p1),
            passk=mean_ci(pk),
            d_pass1=mean_ci([100 * (r["pass1"][-1] - b) for r, b in zip(rs, base1)]),
            d_passk=mean_ci([100 * (r["passk"][-1] - b) for r, b in zip(rs, basek)]),
            cos_init=rs[0]["cos"][0],
            cos_mean=sum(sum(r["cos"]) / len(r["cos"]) for r in rs) / len(rs),
            cos_final=sum(r["cos"][-1] for r in rs) / len(rs),
            flagged=sum(r["flagged_frac"] for r in rs) / len(rs),
        )
    return rows


def fmt(mc) -> str:
    return f"{mc[0]:6.1f} ± {mc[1]:4.1f}"


def print_table(setting: str, rows: dict, init: dict, k: int) -> None:
    print(f"\n{setting}: exact values at the end (points, mean ± 95 % t-interval over seeds; Δ paired vs pass1)")
    print(f"init: pass@1 {100 * init['pass1']:.1f}, pass@{k} {100 * init['passk']:.1f}")
    header = (
        f"| {'objective':24s} | {'pass@1':>13s} | {f'pass@{k}':>13s} | {'Δpass@1':>13s} | {f'Δpass@{k}':>13s} "
        f"| cos mean | cos end | flagged |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, r in rows.items():
        print(
            f"| {name:24s} | {fmt(r['pass1']):>13s} | {fmt(r['passk']):>13s} | {fmt(r['d_pass1']):>13s} "
            f"| {fmt(r['d_passk']):>13s} | {r['cos_mean']:+8.3f} | {r['cos_final']:+7.3f} | {r['flagged']:7.2f} |"
        )


def plot(results: dict, path: str, k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ["pass1", "passk/analytic", "passk/pkpo", "hybrid", "combination", "hybrid+filter"]
    fig, axes = plt.subplots(len(results), 3, figsize=(15, 4.2 * len(results)), squeeze=False)
    for row, (setting, result) in enumerate(results.items()):
        for col, (key, label) in enumerate([("pass1", "exact pass@1"), ("passk", f"exact pass@{k}"), ("cos", "")]):
            ax = axes[row, col]
            for name in shown:
                rs = result["runs"][name]
                steps = rs[0]["step"]
                ys = torch.tensor([r[key] for r in rs], dtype=torch.float64)
                mean = ys.mean(0)
                ax.plot(steps, mean, label=name)
                if len(rs) > 1:
                    half = T975.get(len(rs) - 1, 2.0) * ys.std(0) / math.sqrt(len(rs))
                    ax.fill_between(steps, mean - half, mean + half, alpha=0.15)
            ax.set_xlabel("step")
            ax.set_ylabel(label or f"cos(∇pass@{k}, ∇pass@1), exact kernel")
            ax.set_title(f"{setting}: {label or 'alignment cos'}")
            if key == "cos":
                ax.axhline(0.0, color="grey", lw=0.8)
            ax.grid(alpha=0.3)
        axes[row, 0].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"\nplot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2.0, help="learning rate (all objectives)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--private", type=float, default=0.3, help="scale of the per-prompt private feature")
    parser.add_argument("--threshold", type=float, default=0.0, help="filter flags agreement cos < threshold")
    parser.add_argument("--settings", nargs="+", default=["interfering", "benign"])
    parser.add_argument("--plot", default="docs/bandit.png", help="'' to skip")
    args = parser.parse_args()

    t0 = time.perf_counter()
    results, tables = {}, {}
    for setting in args.settings:
        results[setting] = run_setting(setting, args)
        tables[setting] = summarise(results[setting], args.k)
        print_table(setting, tables[setting], results[setting]["init"], args.k)
    if args.plot:
        plot(results, args.plot, args.k)

    gap = None
    if "interfering" in tables:
        t, init = tables["interfering"], results["interfering"]["init"]
        pk, hf, p1 = t["passk/analytic"], t["hybrid+filter"], t["pass1"]
        gain_pk = pk["d_passk"][0]
        gap = hf["d_pass1"][0]
        checks = [
            (
                "init alignment cos < 0 under pass@k weights",
                init["alignment_cos"] < 0,
                f"{init['alignment_cos']:+.3f}",
            ),
            (
                "hard prompts have negative agreement at init",
                init["hard"]["flagged"] == init["hard"]["n"] and init["easy"]["flagged"] == 0,
                f"hard flagged {init['hard']['flagged']}/{init['hard']['n']}, mean agreement cos "
                f"{init['hard']['agreement_cos']:+.3f}; easy flagged {init['easy']['flagged']}/{init['easy']['n']}",
            ),
            (
                "passk-only raises pass@k vs pass1 training",
                pk["d_passk"][0] - pk["d_passk"][1] > 0,
                f"Δpass@{args.k} {fmt(pk['d_passk']).strip()} pts",
            ),
            (
                "passk-only lowers pass@1 vs pass1 training",
                pk["d_pass1"][0] + pk["d_pass1"][1] < 0,
                f"Δpass@1 {fmt(pk['d_pass1']).strip()} pts",
            ),
            (
                "passk-only: alignment cos < 0 along training",
                pk["cos_mean"] < 0,
                f"mean {pk['cos_mean']:+.3f}, end {pk['cos_final']:+.3f}",
            ),
            (
                "hybrid+filter pass@1 within 1 pt of pass1 training",
                abs(gap) <= 1.0 or gap > 0,
                f"Δpass@1 {fmt(hf['d_pass1']).strip()} pts",
            ),
            (
                "hybrid+filter reaches >= half of passk-only's pass@k gain",
                gain_pk > 0 and hf["d_passk"][0] >= 0.5 * gain_pk,
                f"Δpass@{args.k} {hf['d_passk'][0]:.1f} vs passk-only {gain_pk:.1f} pts "
                f"({hf['d_passk'][0] / gain_pk:.0%} of it)"
                if gain_pk
                else "passk-only gain is 0",
            ),
        ]
        print("\ngoal checks (interfering setting; gains relative to pass1 training at equal samples):")
        for label, ok, detail in checks:
            print(f"  [{'MET' if ok else 'NOT MET'}] {label}: {detail}")
        print(f"  pass1 training itself: pass@1 {fmt(p1['pass1']).strip()}, pass@{args.k} {fmt(p1['passk']).strip()}")
    print(f"\nruntime: {time.perf_counter() - t0:.1f} s")
    if gap is not None:
        print(f"hybrid_filter_pass1_gap: {gap:.2f}")


if __name__ == "__main__":
    main()
