"""Pure pass@k metrics.

Everything here imports only ``torch`` (and ``math``): no trainer, no model. The training metrics and the evaluator
both call :func:`pass_at_k`, so a curve drawn after training uses exactly the estimator that was logged during it.
"""

from __future__ import annotations

import math

import torch

__all__ = ["log_binom", "pass_at_k", "pass_at_k_groups"]


def log_binom(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``log C(n, k)`` in float64 via ``lgamma``, ``-inf`` where ``k < 0`` or ``k > n`` (so ``exp`` gives 0).

    Args:
        n (`torch.Tensor`): any shape, integer-valued.
        k (`torch.Tensor`): broadcastable with ``n``, integer-valued.

    Returns:
        `torch.Tensor` (float64): broadcast shape of ``n`` and ``k``.
    """
    n = torch.as_tensor(n, dtype=torch.float64)
    k = torch.as_tensor(k, dtype=torch.float64, device=n.device)
    valid = (k >= 0) & (k <= n)
    # Clamp inside the invalid region so lgamma never sees a pole; the result there is replaced by -inf.
    n_ = torch.where(valid, n, torch.ones_like(n))
    k_ = torch.where(valid, k, torch.zeros_like(k))
    out = torch.lgamma(n_ + 1) - torch.lgamma(k_ + 1) - torch.lgamma(n_ - k_ + 1)
    return torch.where(valid, out, torch.full_like(out, -math.inf))


def _pass_at_k_scalar(n: int, c: int, k: int) -> float:
    # Product form of Chen et al. (2021), numerically stable for any n: 1 - prod_{i=n-c+1}^{n} (1 - k/i).
    if n - c < k:
        return 1.0
    log_miss = sum(math.log1p(-k / i) for i in range(n - c + 1, n + 1))
    return -math.expm1(log_miss)


def pass_at_k(n, c, k):
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: ``1 - C(n - c, k) / C(n, k)``.

    The estimator of Chen et al. 2021, "Evaluating Large Language Models Trained on Code"
    (https://huggingface.co/papers/2107.03374), computed without raw binomials: the product form for Python
    scalars, ``lgamma`` in float64 with ``expm1`` for tensors. Stable for ``n`` in the thousands.

    Args:
        n (`int` or `torch.Tensor`): number of samples, shape broadcastable with ``c`` and ``k``.
        c (`int` or `torch.Tensor`): number of correct samples, ``0 <= c <= n``.
        k (`int` or `torch.Tensor`): ``1 <= k <= n``. There is no unbiased estimator for ``k > n`` (PKPO, Cor. 2), so
            that raises instead of silently returning 1 as the reference implementation does.

    Returns:
        `float` if all inputs are Python/NumPy scalars, else a float64 `torch.Tensor` of the broadcast shape.

    Example:
    ```python
    >>> pass_at_k(4, 1, 2)  # 1 - C(3, 2) / C(4, 2) = 1 - 3/6
    0.5
    >>> pass_at_k(torch.tensor([8, 8]), torch.tensor([0, 8]), 4)
    tensor([0., 1.], dtype=torch.float64)

    ```
    """
    if not any(isinstance(x, torch.Tensor) for x in (n, c, k)):
        if hasattr(n, "shape") and getattr(n, "shape", ()) != ():  # NumPy arrays: go through torch
            return pass_at_k(torch.as_tensor(n), torch.as_tensor(c), torch.as_tensor(k)).numpy()
        n, c, k = int(n), int(c), int(k)
        _check_nck(n, c, k)
        return _pass_at_k_scalar(n, c, k)

    device = next(x.device for x in (n, c, k) if isinstance(x, torch.Tensor))
    n, c, k = (torch.as_tensor(x, dtype=torch.float64, device=device) for x in (n, c, k))
    n, c, k = torch.broadcast_tensors(n, c, k)
    _check_nck(n, c, k)
    log_miss = log_binom(n - c, k) - log_binom(n, k)  # log of C(n-c, k)/C(n, k); -inf when n - c < k
    return 0.0 - torch.expm1(log_miss)  # 0.0 - x rather than -x: no negative zeros


def _check_nck(n, c, k) -> None:
    def bad(cond):
        return bool(cond.any()) if isinstance(cond, torch.Tensor) else bool(cond)

    if bad(k < 1):
        raise ValueError(f"pass_at_k needs k >= 1, got k={_first(k, k < 1)}.")
    if bad(k > n):
        raise ValueError(
            f"pass_at_k needs k <= n (no unbiased estimator exists when fewer than k samples are drawn), got "
            f"k={_first(k, k > n)} with n={_first(n, k > n)}. Draw more samples or lower k."
        )
    if bad((c < 0) | (c > n)):
        m = (c < 0) | (c > n)
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got c={_first(c, m)} with n={_first(n, m)}.")


def _first(x, mask):
    if isinstance(x, torch.Tensor):
        return x[mask].flatten()[0].item() if mask.any() else x.flatten()[0].item()
    return x


def pass_at_k_groups(success: torch.Tensor, k) -> torch.Tensor:
    """Per-group unbiased pass@k from a success matrix, ignoring NaN (unscored) samples.

    Args:
        success (`torch.Tensor` of shape `(P, G)`): 1 for a correct sample, 0 for a wrong one, NaN for unscored.
        k (`int` or sequence of `int`): one k, or ``K`` of them evaluated in one vectorised call.

    Returns:
        `torch.Tensor` (float64) of shape `(P,)` for an int ``k``, `(P, K)` for a sequence: pass@k of each group, NaN
        for groups with fewer than ``k`` scored samples (no unbiased estimate exists there; average with ``nanmean``).
    """
    ks = torch.as_tensor(k, dtype=torch.float64, device=success.device)
    scalar = ks.dim() == 0
    ks = ks.reshape(1, -1)  # (1, K)
    valid = ~torch.isnan(success)
    n = valid.sum(dim=1, keepdim=True).to(torch.float64)  # (P, 1)
    c = (success.nan_to_num(0.0) > 0.5).logical_and(valid).sum(dim=1, keepdim=True).to(torch.float64)  # (P, 1)
    enough = n >= ks  # (P, K)
    rho = pass_at_k(torch.where(enough, n, ks), torch.where(enough, c, torch.zeros_like(c)), ks)
    out = torch.where(enough, rho, torch.full_like(rho, math.nan))
    return out[:, 0] if scalar else out
