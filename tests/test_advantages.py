"""Advantage estimators against independent references: brute force over all k-subsets, Monte Carlo loops written
here in plain Python, exact expectations over every outcome of a Bernoulli policy, and TRL's own helpers."""

import itertools
import math
import random
from math import comb

import pytest
import torch

from trl_passk.advantages import (
    ADVANTAGE_ESTIMATORS,
    BINARY_ONLY_ESTIMATORS,
    OBJECTIVES,
    RANDOM_ESTIMATORS,
    exceeding_passk_scale,
    get_advantage_estimator,
    mix_objectives,
    register_advantage_estimator,
)

NAN = math.nan


# ---------------------------------------------------------------------------------------------------------------------
# brute-force references (one group, plain Python)


def subsets_containing(n, k, i):
    return [s for s in itertools.combinations(range(n), k) if i in s]


def brute_analytic(g, k):
    """Mean over k-subsets containing i of (max - mean_max) / std_max (population std over all k-subsets)."""
    n = len(g)
    maxima = {s: max(g[j] for j in s) for s in itertools.combinations(range(n), k)}
    mean = sum(maxima.values()) / len(maxima)
    std = math.sqrt(sum((m - mean) ** 2 for m in maxima.values()) / len(maxima))
    if std < 1e-12:
        return [0.0] * n
    return [sum((maxima[s] - mean) / std for s in subsets_containing(n, k, i)) / comb(n - 1, k - 1) for i in range(n)]


def brute_s(g, k):
    """PKPO Eq. 27: s_i = (1 / C(n, k)) * sum over k-subsets containing i of their max."""
    n = len(g)
    return [sum(max(g[j] for j in s) for s in subsets_containing(n, k, i)) / comb(n, k) for i in range(n)]


def brute_loo_minus_one(g, k):
    """PKPO Eq. 33: (1 / C(n, k)) * sum over subsets I containing i of [max_I g - max_{I minus i} g]."""
    n = len(g)
    out = []
    for i in range(n):
        total = 0.0
        for s in subsets_containing(n, k, i):
            total += max(g[j] for j in s) - max(g[j] for j in s if j != i)
        out.append(total / comb(n, k))
    return out


def brute_loo(g, k):
    """PKPO Eqs. 29–32: s_i - (1 / (n - 1)) * sum_{j != i} S(j, k, [n] minus i)."""
    n = len(g)
    s = brute_s(g, k)
    if k > n - 1:
        return s
    out = []
    for i in range(n):
        rest = [g[j] for j in range(n) if j != i]
        out.append(s[i] - sum(brute_s(rest, k)) / (n - 1))
    return out


def as_row(g):
    return torch.tensor([g], dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------------------------
# analytic


@pytest.mark.parametrize("n", [2, 3, 4, 6, 8])
def test_analytic_matches_subset_enumeration(n):
    for c in range(n + 1):
        g = [1.0] * c + [0.0] * (n - c)
        for k in range(1, n + 1):
            got = ADVANTAGE_ESTIMATORS["analytic"](as_row(g), k)[0].tolist()
            assert got == pytest.approx(brute_analytic(g, k), abs=1e-9), (n, c, k)


def test_analytic_worked_example_and_label_signs():
    # Chen et al. 2025 (arXiv 2508.10751) §2.4 worked by hand: n=4, c=1, k=2 -> R = 1/2, sigma = 1/2, A_pos = 1,
    # A_neg = (1 - 1/2 - C(2,1)/C(3,1)) / (1/2) = -1/3.
    got = ADVANTAGE_ESTIMATORS["analytic"](torch.tensor([[0.0, 1.0, 0.0, 0.0]]), 2)
    assert got[0].tolist() == pytest.approx([-1 / 3, 1.0, -1 / 3, -1 / 3])
    # Reference-code bug 2: n=64, k=32, c=31; positives must never get the (negative) value of negatives.
    g = torch.tensor([[1.0] * 31 + [0.0] * 33])
    adv = ADVANTAGE_ESTIMATORS["analytic"](g, 32)
    assert (adv[0, :31] >= 0).all() and (adv[0, 31:] <= 0).all()


def test_analytic_rejects_continuous_rewards_unless_binarised():
    r = torch.tensor([[0.2, 0.9, 1.0, 0.0]])
    with pytest.raises(ValueError, match="binarize"):
        ADVANTAGE_ESTIMATORS["analytic"](r, 2)
    got = ADVANTAGE_ESTIMATORS["analytic"](r, 2, binarize=0.5)
    assert got[0].tolist() == pytest.approx(brute_analytic([0.0, 1.0, 1.0, 0.0], 2))
    assert "analytic" in BINARY_ONLY_ESTIMATORS


# ---------------------------------------------------------------------------------------------------------------------
# pkpo


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_pkpo_matches_brute_force_on_continuous_rewards_with_ties(n, seed):
    rng = random.Random(seed)
    g = [rng.choice([0.0, 0.25, 0.5, 1.0, rng.random()]) for _ in range(n)]  # ties on purpose
    refs = {"none": brute_s, "loo": brute_loo, "loo_minus_one": brute_loo_minus_one}
    for k in range(1, n + 1):
        for baseline, ref in refs.items():
            if baseline == "loo_minus_one" and k == 1:
                continue  # undefined in the paper; see test_pkpo_k1_uses_simple_loo
            got = ADVANTAGE_ESTIMATORS["pkpo"](as_row(g), k, baseline=baseline, reduction="sum")[0].tolist()
            assert got == pytest.approx(ref(g, k), abs=1e-10), (baseline, k, g)
            got_mean = ADVANTAGE_ESTIMATORS["pkpo"](as_row(g), k, baseline=baseline)[0].tolist()
            assert got_mean == pytest.approx([n * v for v in ref(g, k)], abs=1e-9)


def test_pkpo_worked_example():
    # PKPO (arXiv 2505.15201) worked by hand: n=4, c=1, k=2, g=[1,0,0,0].
    g = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    est = ADVANTAGE_ESTIMATORS["pkpo"]
    assert est(g, 2, baseline="none", reduction="sum")[0].tolist() == pytest.approx([1 / 2, 1 / 6, 1 / 6, 1 / 6])
    assert est(g, 2, baseline="loo", reduction="sum")[0].tolist() == pytest.approx([1 / 2] + [-5 / 18] * 3)
    assert est(g, 2, reduction="sum")[0].tolist() == pytest.approx([1 / 2, 0, 0, 0])


def test_pkpo_binary_closed_forms():
    # PKPO §4 (arXiv 2505.15201), derived by hand: s^(loo-1) gives C(n-c, k-1)/C(n, k) to correct samples, 0 to wrong ones.
    for n, c, k in [(8, 3, 4), (16, 1, 8), (6, 5, 2)]:
        g = torch.tensor([[1.0] * c + [0.0] * (n - c)])
        got = ADVANTAGE_ESTIMATORS["pkpo"](g, k, reduction="sum")[0]
        assert got[:c].tolist() == pytest.approx([comb(n - c, k - 1) / comb(n, k)] * c)
        assert got[c:].abs().max().item() < 1e-12


def test_pkpo_k1_uses_simple_loo():
    g = [1.0, 0.0, 0.5, 0.25]
    got = ADVANTAGE_ESTIMATORS["pkpo"](as_row(g), 1)[0].tolist()  # reduction="mean": Eq. 26 itself
    assert got == pytest.approx([gi - (sum(g) - gi) / 3 for gi in g])


@pytest.mark.parametrize("baseline", ["none", "loo", "loo_minus_one"])
def test_pkpo_is_unbiased_for_grad_pass_at_k(baseline):
    """Thm 2, checked exactly: for a Bernoulli(p) policy with p = sigmoid(theta), the expectation over all 2^n outcomes
    of sum_i s_i d/dtheta log pi(x_i) equals d/dtheta pass@k = k (1 - p)^(k - 1) p (1 - p)."""
    n, k, p = 6, 3, 0.3
    total = 0.0
    for outcome in itertools.product([0.0, 1.0], repeat=n):
        prob = math.prod(p if x else 1 - p for x in outcome)
        s = ADVANTAGE_ESTIMATORS["pkpo"](as_row(list(outcome)), k, baseline=baseline, reduction="sum")[0]
        score = [(1 - p) if x else -p for x in outcome]  # d/dtheta log pi(x) for a sigmoid policy
        total += prob * sum(si * sc for si, sc in zip(s.tolist(), score))
    assert total == pytest.approx(k * (1 - p) ** (k - 1) * p * (1 - p), rel=1e-9)


# ---------------------------------------------------------------------------------------------------------------------
# full and bootstrap sampling


def test_full_consecutive_groups_by_hand():
    # k=2, groups (0,1) (2,3) (4,5) (6,7) with maxima 1, 0, 1, 0 -> standardised +1, -1, +1, -1.
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    got = ADVANTAGE_ESTIMATORS["full"](r, 2, shuffle=False)
    assert got.tolist() == [[1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0]]
    # n=7, k=3: two groups, remainder sample 6 gets 0.
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    assert ADVANTAGE_ESTIMATORS["full"](r, 3, shuffle=False).tolist() == [[1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 0.0]]


def loop_full(g, k, rng):
    """Alg. 1 of Chen et al., written as a plain loop over one random partition."""
    idx = list(range(len(g)))
    rng.shuffle(idx)
    groups = [idx[j * k : (j + 1) * k] for j in range(len(g) // k)]
    maxima = [max(g[i] for i in grp) for grp in groups]
    mean = sum(maxima) / len(maxima)
    std = math.sqrt(sum((m - mean) ** 2 for m in maxima) / len(maxima))
    adv = [0.0] * len(g)
    for grp, m in zip(groups, maxima):
        for i in grp:
            adv[i] = (m - mean) / std if std > 1e-12 else 0.0
    return adv


def loop_bootstrap(g, k, m_subsets, rng):
    """Alg. 2 / Eq. 6 of Chen et al. as a plain loop: sum of standardised subset maxima over subsets containing i."""
    subsets = [rng.sample(range(len(g)), k) for _ in range(m_subsets)]
    maxima = [max(g[i] for i in s) for s in subsets]
    mean = sum(maxima) / len(maxima)
    std = math.sqrt(sum((m - mean) ** 2 for m in maxima) / len(maxima))
    adv = [0.0] * len(g)
    for s, m in zip(subsets, maxima):
        for i in s:
            adv[i] += (m - mean) / std if std > 1e-12 else 0.0
    return adv


# The Python-loop reference of each random estimator: a new random estimator fails here until it has one.
RANDOM_LOOPS = {"full": loop_full, "bootstrap": lambda g, k, rng: loop_bootstrap(g, k, len(g), rng)}


@pytest.mark.parametrize("name", sorted(RANDOM_ESTIMATORS))
def test_random_estimators_match_python_loop_in_expectation(name):
    g = [1.0, 0.0, 0.0, 0.5, 0.0, 1.0, 0.0, 0.0]
    k, trials = 2, 4000
    rng = random.Random(0)
    ref = [sum(v) / trials for v in zip(*(RANDOM_LOOPS[name](g, k, rng) for _ in range(trials)))]
    gen = torch.Generator().manual_seed(0)
    batch = torch.tensor([g] * trials)  # one draw per row, all rows in one call
    got = ADVANTAGE_ESTIMATORS[name](batch, k, generator=gen).mean(dim=0).tolist()
    assert got == pytest.approx(ref, abs=0.06)


@pytest.mark.parametrize("sampling", ["independent", "balanced"])
def test_bootstrap_mean_converges_to_analytic(sampling):
    g = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    gen = torch.Generator().manual_seed(1)
    got = ADVANTAGE_ESTIMATORS["bootstrap"](
        g, 3, num_subsets=20000, reduction="mean", sampling=sampling, generator=gen
    )
    assert got[0].tolist() == pytest.approx(brute_analytic(g[0].tolist(), 3), abs=0.03)


def test_bootstrap_balanced_gives_every_sample_equal_exposure():
    # 16 subsets of k=2 from G=8: two permutations of four disjoint pairs each -> every sample in exactly 4 subsets.
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])

    def draw(reduction):
        gen = torch.Generator().manual_seed(5)  # the same subsets for both reductions
        return ADVANTAGE_ESTIMATORS["bootstrap"](
            r, 2, num_subsets=16, sampling="balanced", reduction=reduction, generator=gen
        )

    assert torch.allclose(draw("sum"), 4 * draw("mean"))
    assert draw("sum")[0, 0] > 0  # the correct sample is in 4 winning subsets


def test_bootstrap_subsets_hold_k_distinct_scored_samples():
    # With a NaN sample and k = n_scored, every subset is exactly the scored samples: all get the same value.
    g = torch.tensor([[1.0, NAN, 0.0, 0.0]])
    got = ADVANTAGE_ESTIMATORS["bootstrap"](g, 3, generator=torch.Generator().manual_seed(0))
    assert got[0, 1] == 0 and torch.all(got[0] == 0)  # one possible subset -> std 0 -> no signal


def test_random_estimators_reproducible_with_generator():
    r = torch.randint(0, 2, (5, 8)).float()
    for name in sorted(RANDOM_ESTIMATORS):
        a = ADVANTAGE_ESTIMATORS[name](r, 2, generator=torch.Generator().manual_seed(3))
        b = ADVANTAGE_ESTIMATORS[name](r, 2, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------------------------------
# grpo is TRL's computation


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_equals_trl_formula(scale):
    from trl.trainer.utils import nanstd

    r = torch.rand(6, 4)
    r[1, 2] = NAN
    r[3] = 1.0
    got = ADVANTAGE_ESTIMATORS["grpo"](r, 1, scale_rewards=scale)
    flat = r.view(-1)
    mean = torch.nanmean(r, dim=1).repeat_interleave(4)
    std = nanstd(r, dim=1).repeat_interleave(4) if scale == "group" else nanstd(flat).expand_as(flat)
    expected = flat - mean
    if scale != "none":
        expected = expected / (std + 1e-4)
    assert torch.equal(got.view(-1), torch.nan_to_num(expected, nan=0.0))


# ---------------------------------------------------------------------------------------------------------------------
# every registered estimator on edge cases


EDGE_CASES = {
    "all_zero": torch.zeros(3, 8),
    "all_one": torch.ones(3, 8),
    "g2": torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]),
    "nan_rows": torch.tensor([[NAN] * 4, [1.0, NAN, 0.0, NAN], [NAN, 0.0, 1.0, 1.0]]),
    "large_g": (torch.rand(4, 512) < 0.05).float(),
}


@pytest.mark.parametrize("name", sorted(ADVANTAGE_ESTIMATORS))
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_every_estimator_finite_on_edge_cases(name, case):
    r = EDGE_CASES[case]
    G = r.shape[1]
    for k in sorted({1, 2, G // 2, G}):
        kw = {"generator": torch.Generator().manual_seed(0)} if name in RANDOM_ESTIMATORS else {}
        out = ADVANTAGE_ESTIMATORS[name](r, k, **kw)
        assert out.shape == r.shape and out.dtype == r.dtype
        assert torch.isfinite(out).all(), (name, case, k)
        assert (out[torch.isnan(r)] == 0).all()  # unscored samples never move the policy
        if case == "all_zero":
            assert (out == 0).all()
        if case == "all_one" and name != "pkpo":
            assert (out == 0).all()


def test_pkpo_all_one_matches_paper_table():
    # PKPO edge case worked by hand, constant reward a = 1: s = k/n, s^(loo) = -k/(n(n-1)), s^(loo-1) = 0.
    n, k = 8, 3
    r = torch.ones(1, n)
    est = ADVANTAGE_ESTIMATORS["pkpo"]
    assert est(r, k, baseline="none", reduction="sum")[0].tolist() == pytest.approx([k / n] * n)
    assert est(r, k, baseline="loo", reduction="sum")[0].tolist() == pytest.approx([-k / (n * (n - 1))] * n)
    assert est(r, k, reduction="sum").abs().max().item() < 1e-12


def test_passk_estimators_zero_when_k_exceeds_scored_samples():
    r = torch.tensor([[1.0, 0.0, NAN, NAN]])  # two scored samples, k = 3
    for name in ("analytic", "pkpo", "full", "bootstrap"):
        assert (ADVANTAGE_ESTIMATORS[name](r, 3) == 0).all(), name


def test_vectorised_over_prompts_equals_per_group_calls():
    r = (torch.rand(32, 8) < 0.4).float()
    for name in ("analytic", "pkpo", "grpo"):
        batch = ADVANTAGE_ESTIMATORS[name](r, 3)
        rows = torch.cat([ADVANTAGE_ESTIMATORS[name](r[i : i + 1], 3) for i in range(32)])
        assert torch.allclose(batch, rows, atol=1e-6), name


# ---------------------------------------------------------------------------------------------------------------------
# registry, objectives


def test_registry_rejects_duplicates_and_lists_names():
    with pytest.raises(ValueError, match="already registered"):
        register_advantage_estimator("analytic")(lambda rewards, k: rewards)
    with pytest.raises(ValueError, match=", ".join(sorted(ADVANTAGE_ESTIMATORS))):
        get_advantage_estimator("analytc")
    for name in ("grpo", "analytic", "full", "bootstrap", "pkpo", "rloo", "maxrl"):
        assert name in ADVANTAGE_ESTIMATORS


def test_bad_k_and_shape_raise_clear_errors():
    with pytest.raises(ValueError, match="1 <= k <= num_generations"):
        ADVANTAGE_ESTIMATORS["analytic"](torch.zeros(2, 4), 5)
    with pytest.raises(ValueError, match="2-D"):
        ADVANTAGE_ESTIMATORS["pkpo"](torch.zeros(8), 2)


def test_mix_objectives():
    a1 = torch.tensor([[1.0, -1.0], [0.5, -0.5]])
    ak = torch.tensor([[3.0, -3.0], [0.0, 0.0]])
    assert torch.equal(mix_objectives("pass1", a1, ak)[0], a1)
    assert torch.equal(mix_objectives("passk", a1, ak)[0], ak)
    hybrid, w = mix_objectives("hybrid", a1, ak, hybrid_lambda=0.7)
    assert torch.allclose(hybrid, 0.7 * a1 + 0.3 * ak) and torch.allclose(w, torch.tensor([0.7, 0.7]))
    comb_adv, w = mix_objectives("combination", a1, ak, success_rate=torch.tensor([0.25, 1.0]))
    assert torch.allclose(comb_adv[0], 0.25 * ak[0] + 0.75 * a1[0]) and torch.allclose(comb_adv[1], ak[1])
    with pytest.raises(ValueError, match=", ".join(OBJECTIVES)):
        mix_objectives("pass2", a1, ak)


def test_exceeding_scale_decreases_and_peaks_signal_at_one_correct():
    c = torch.arange(0, 33)
    f = exceeding_passk_scale(c)
    assert f[0] == 1.0 and torch.all(f[2:] < f[1:-1])
    # Chen et al. Eq. 16: eta = c|A_pos| + (N - c)|A_neg|, times f, peaks at c = 1 for N = 32.
    eta = []
    for ci in range(1, 32):
        g = torch.tensor([[1.0] * ci + [0.0] * (32 - ci)])
        adv = ADVANTAGE_ESTIMATORS["analytic"](g, 8)[0].abs().sum().item()
        eta.append(adv * f[ci].item())
    assert max(range(len(eta)), key=eta.__getitem__) == 0


def test_bootstrap_subsets_are_uniform_over_scored_samples():
    # Every 2-subset of the 5 scored samples equally likely; the NaN sample never drawn.
    from collections import Counter

    from trl_passk.advantages import _uniform_subsets, _valid_counts

    rows = torch.tensor([[1.0, 0.0, NAN, 0.0, 1.0, 0.0]]).repeat(20000, 1)
    valid, n = _valid_counts(rows)
    idx = _uniform_subsets(valid, n, 1, 2, torch.Generator().manual_seed(0)).view(-1, 2).sort(dim=1).values
    counts = Counter(map(tuple, idx.tolist()))
    assert set(counts) == set(itertools.combinations([0, 1, 3, 4, 5], 2))
    assert all(abs(c - 2000) < 5 * math.sqrt(2000) for c in counts.values())  # 5 sigma of a binomial count


# ---------------------------------------------------------------------------------------------------------------------
# rloo, maxrl and the objective-scale hybrid: exact expectations over every outcome of a Bernoulli policy


def expected_update(advantages_of, n: int, p: float) -> float:
    """E[(1/n) sum_i A_i d/dtheta log pi(x_i)] over all 2^n outcomes of a Bernoulli(p) policy, p = sigmoid(theta): the
    expected policy-gradient step TRL takes (its loss averages over the group's samples)."""
    total = 0.0
    for outcome in itertools.product([0.0, 1.0], repeat=n):
        prob = math.prod(p if x else 1 - p for x in outcome)
        adv = advantages_of(as_row(list(outcome)))[0].tolist()
        score = [(1 - p) if x else -p for x in outcome]  # d/dtheta log pi(x) for a sigmoid policy
        total += prob * sum(a * sc for a, sc in zip(adv, score)) / n
    return total


def test_rloo_by_hand_and_unbiased_for_grad_pass1():
    g = [1.0, 0.0, 0.5, NAN, 0.25]
    got = ADVANTAGE_ESTIMATORS["rloo"](as_row(g), 1)[0].tolist()
    scored = [x for x in g if not math.isnan(x)]
    want = [0.0 if math.isnan(x) else x - (sum(scored) - x) / (len(scored) - 1) for x in g]
    assert got == pytest.approx(want)
    n, p = 6, 0.3
    assert expected_update(lambda r: ADVANTAGE_ESTIMATORS["rloo"](r, 1), n, p) == pytest.approx(p * (1 - p))


@pytest.mark.parametrize("p", [0.05, 0.3, 0.8])
def test_maxrl_expected_update_is_the_truncated_likelihood_gradient(p):
    """(r - mean)/mean with TRL's per-sample mean: E = sum_{j=1}^{n-1} (1/j) d pass@j/dtheta = (1 - (1-p)^(n-1)) (1-p),
    since d pass@j / dtheta = j (1-p)^(j-1) p (1-p)."""
    n = 6
    got = expected_update(lambda r: ADVANTAGE_ESTIMATORS["maxrl"](r, 1), n, p)
    series = sum((1 / j) * j * (1 - p) ** (j - 1) * p * (1 - p) for j in range(1, n))
    assert got == pytest.approx(series, rel=1e-9)
    assert got == pytest.approx((1 - (1 - p) ** (n - 1)) * (1 - p), rel=1e-9)


def test_maxrl_by_hand():
    # c = 1 of 4: mean 1/4, correct (1 - 1/4) / (1/4) = 3, wrong -1; no success: 0.
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, NAN]])
    got = ADVANTAGE_ESTIMATORS["maxrl"](r, 1)
    assert got[0].tolist() == pytest.approx([3.0, -1.0, -1.0, -1.0])
    assert got[1].tolist() == [0.0] * 4
    assert got[2].tolist() == pytest.approx([0.5, 0.5, -1.0, 0.0])
    with pytest.raises(ValueError, match="binary"):
        ADVANTAGE_ESTIMATORS["maxrl"](torch.tensor([[0.5, 1.0]]), 1)


# ---------------------------------------------------------------------------------------------------------------------
# bootstrap's subset sampler: every path, against the uniform distribution


def assert_uniform_subsets(subsets, columns, k):
    """Every k-subset of ``columns`` drawn about equally often (5 sigma of a binomial count), nothing else drawn."""
    from collections import Counter

    counts = Counter(map(tuple, subsets.sort(dim=-1).values.tolist()))
    assert set(counts) == set(itertools.combinations(columns, k))
    expected = subsets.shape[0] / len(counts)
    assert all(abs(c - expected) < 5 * math.sqrt(expected) for c in counts.values()), counts


def draw_subsets(rows, M, k, seed=0):
    """``_uniform_subsets`` of ``rows``, as a `(len(rows) * M, k)` tensor of column indices."""
    from trl_passk.advantages import _uniform_subsets, _valid_counts

    valid, n = _valid_counts(torch.tensor(rows))
    return _uniform_subsets(valid, n, M, k, torch.Generator().manual_seed(seed)).transpose(1, 2).reshape(-1, k)


@pytest.mark.parametrize(
    "row, k",
    [
        ([1.0, 0.0, NAN, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0], 3),  # 8 scored: positions from random bytes, NaN skipped
        ([0.0, 0.0, 0.0, NAN, NAN, 1.0, 1.0, 1.0], 2),  # 6 scored: Lemire's multiply-shift, with its rejections
        ([1.0, 0.0, NAN, 0.0, 1.0, 0.0, 1.0], 5),  # k close to n = 6: random keys
        ([0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0], 6),  # k = n - 1
        ([float(i % 3 == 0) for i in range(72)], 2),  # n > 64: repeats found across two 64-bit words
    ],
)
def test_bootstrap_subsets_uniform_with_unscored_samples_and_k_near_n(row, k):
    columns = [i for i, r in enumerate(row) if not math.isnan(r)]
    draws = 60 * math.comb(len(columns), k)
    assert_uniform_subsets(draw_subsets([row] * (draws // 30), 30, k), columns, k)


def test_bootstrap_subsets_uniform_when_rows_take_different_samplers():
    # One call: rows with 8 scored samples draw positions (P(3 distinct) = 0.66), rows with 4 take random keys (0.38).
    eight, four = [1.0, 0.0] * 4, [1.0, NAN, 0.0, NAN, 0.0, NAN, 1.0, NAN]
    subsets = draw_subsets([eight, four] * 1500, 20, 3).view(1500, 2, 20, 3)
    assert_uniform_subsets(subsets[:, 0].reshape(-1, 3), list(range(8)), 3)
    assert_uniform_subsets(subsets[:, 1].reshape(-1, 3), [0, 2, 4, 6], 3)


def test_bootstrap_subsets_of_64_distinct_with_uniform_pairs():
    # G = 64 uses all 64 bits of the repeat check, sign bit included: no repeat may slip through, and no subset holding
    # sample 63 may be rejected more often than others (each pair of samples is drawn equally often).
    subsets = draw_subsets([[0.0] * 64] * 512, 64, 8)  # (32768, 8)
    ordered = subsets.sort(dim=1).values
    assert (ordered[:, 1:] != ordered[:, :-1]).all()
    pairs = torch.combinations(torch.arange(8), 2)
    pair_ids = (ordered[:, pairs[:, 0]] * 64 + ordered[:, pairs[:, 1]]).view(-1)
    counts = torch.bincount(pair_ids, minlength=64 * 64).view(64, 64)[torch.triu_indices(64, 64, 1).unbind()]
    expected = pair_ids.numel() / counts.numel()
    assert (counts - expected).abs().max() < 5 * math.sqrt(expected)


def test_bootstrap_subsets_of_512_distinct_with_uniform_samples():
    # G = 512, a power of two above 256: positions from 16-bit chunks, repeats found across eight 64-bit words.
    subsets = draw_subsets([[0.0] * 512] * 512, 64, 4)  # (32768, 4)
    ordered = subsets.sort(dim=1).values
    assert (ordered[:, 1:] != ordered[:, :-1]).all()
    counts = torch.bincount(subsets.view(-1), minlength=512)
    expected = subsets.numel() / 512
    assert (counts - expected).abs().max() < 5 * math.sqrt(expected)


def test_pkpo_with_unscored_samples_matches_brute_force_on_the_scored_ones():
    rows = [[0.5, NAN, 1.0, 0.0, 0.25, 1.0], [NAN, 0.2, 0.9, NAN, 0.4, 0.4], [1.0, 0.0, 0.5, 0.75, 0.0, 0.3]]
    refs = {"none": brute_s, "loo": brute_loo, "loo_minus_one": brute_loo_minus_one}
    for k in (1, 2, 3, 4):
        for baseline, ref in refs.items():
            if baseline == "loo_minus_one" and k == 1:
                continue  # Eq. 26 instead; see test_pkpo_k1_uses_simple_loo
            got = ADVANTAGE_ESTIMATORS["pkpo"](torch.tensor(rows, dtype=torch.float64), k, baseline=baseline)
            for row, out in zip(rows, got.tolist()):
                scored = [x for x in row if not math.isnan(x)]
                expected = iter(len(scored) * v for v in ref(scored, k))
                assert out == pytest.approx([0.0 if math.isnan(x) else next(expected) for x in row], abs=1e-10)
