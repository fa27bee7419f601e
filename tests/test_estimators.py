"""pass_at_k against exact enumeration and exact rational arithmetic."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from trl_passk.estimators import pass_at_k, pass_at_k_groups


def enumerate_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (the first c correct) that contain a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_matches_subset_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            expected = enumerate_pass_at_k(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
            assert pass_at_k(torch.tensor(n), torch.tensor(c), k).item() == pytest.approx(expected, abs=1e-12)


def test_worked_example():
    # Chen et al. 2021 (arXiv 2107.03374) by hand: rho(4, 1, 2) = 1 - C(3, 2) / C(4, 2) = 1 - 3/6.
    assert pass_at_k(4, 1, 2) == 0.5


@pytest.mark.parametrize("n,c,k", [(1000, 1, 1), (2000, 3, 100), (5000, 10, 50), (4096, 4000, 64), (3000, 1, 2999)])
def test_stable_for_large_n(n, c, k):
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    for value in (pass_at_k(n, c, k), pass_at_k(torch.tensor([n]), torch.tensor([c]), k).item()):
        assert math.isfinite(value)
        assert value == pytest.approx(float(exact), rel=1e-9, abs=1e-15)


def test_edge_cases():
    for n in (1, 7, 64):
        assert pass_at_k(n, 0, 1) == 0.0
        assert pass_at_k(n, n, n) == 1.0
        assert pass_at_k(n, 1, n) == 1.0  # k = n: 1[c >= 1]
        assert pass_at_k(n, 3 % (n + 1), 1) == pytest.approx((3 % (n + 1)) / n)  # k = 1: c / n


def test_tensor_broadcasting_and_numpy():
    n = torch.tensor([[8], [16]])
    c = torch.tensor([[0, 1, 4, 8]])
    out = pass_at_k(n, c, 4)
    assert out.shape == (2, 4) and out.dtype == torch.float64
    for i, j in itertools.product(range(2), range(4)):
        assert out[i, j].item() == pytest.approx(enumerate_pass_at_k(int(n[i, 0]), int(c[0, j]), 4))
    arr = pass_at_k(np.array([8, 8]), np.array([2, 0]), 2)
    assert isinstance(arr, np.ndarray) and arr[1] == 0.0


@pytest.mark.parametrize("args,match", [((4, 1, 5), "k <= n"), ((4, 5, 2), "0 <= c <= n"), ((4, 1, 0), "k >= 1")])
def test_invalid_inputs_raise(args, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(*args)
    with pytest.raises(ValueError, match=match):
        pass_at_k(*(torch.tensor(a) for a in args))


def test_groups_ignore_unscored_samples():
    nan = math.nan
    success = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, nan, nan, 0.0], [nan, nan, nan, 1.0]])
    out = pass_at_k_groups(success, 2)
    assert out[0].item() == pytest.approx(0.5)
    assert out[1].item() == pytest.approx(1.0)  # n = 2, c = 1, k = 2
    assert math.isnan(out[2].item())  # one scored sample: no unbiased pass@2
