"""Prompt interference between pass@k and pass@1 (Barakat et al. 2026, arXiv 2602.21189): pure functions.

For a prompt ``x`` with success probability ``p(x)``, pass@k is ``J_k = E_x[1 - (1 - p(x))^k]`` with gradient
``sum_x w_k(p(x)) grad p(x)``, ``w_k(p) = k (1 - p)^(k - 1)``: pass@k up-weights low-success prompts. With the kernel
``K[x, x'] = <grad p(x), grad p(x')>``:

- agreement of ``x`` with the pass@1 direction: ``a(x) = <grad p(x), grad J_1> = sum_x' K[x, x']``; prompts with
  ``a(x) < 0`` interfere negatively (pushing them up moves the model against pass@1);
- batch diagnostic: ``cos(grad J_k, grad J_1) = w^T K 1 / sqrt(w^T K w * 1^T K 1)``.

The gradients are estimated per prompt group inside the trainer and compressed with :class:`CountSketch`; everything
here works on the resulting ``(P, D)`` sketches or ``(P, P)`` kernels and imports only torch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import torch

__all__ = [
    "CountSketch",
    "InterferenceMemory",
    "filter_advantages",
    "interference_stats",
    "interference_stats_from_sketches",
    "loo_coefficients",
    "pass1_gradient",
    "passk_prompt_weights",
]


class CountSketch:
    """Seeded count-sketch of a list of tensors (e.g. the gradients of the trainable parameters) into ``dim`` floats.

    Coordinate ``j`` of the concatenated, flattened tensors goes to bucket ``h(j)`` with sign ``s(j)``, both drawn once
    from ``seed`` and the tensor's position and cached (5 bytes per coordinate: an int32 bucket and an int8 sign).
    Inner products are preserved in expectation, ``E[<S u, S v>] = <u, v>``, with standard deviation at most
    ``sqrt(2 / dim) * |u| |v|``: a 4096-dimensional sketch estimates a cosine to about +-0.02.

    Example:
    ```python
    >>> sketch = CountSketch(dim=4096, seed=0)
    >>> u, v = torch.randn(50_000), torch.randn(50_000)
    >>> z = sketch([u[:30_000].view(100, 300), u[30_000:]])  # a list of tensors, like a model's gradients
    >>> z.shape, torch.equal(sketch([2 * u]), 2 * sketch([u]))  # linear
    (torch.Size([4096]), True)

    ```
    """

    def __init__(self, dim: int, seed: int = 0):
        if dim < 1:
            raise ValueError(f"CountSketch dim must be >= 1, got {dim}.")
        self.dim, self.seed = int(dim), int(seed)
        self._hashes: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def _hash(self, position: int, numel: int, device: torch.device):
        key = (position, numel, str(device))
        if key not in self._hashes:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + position)
            buckets = torch.randint(0, self.dim, (numel,), generator=gen, dtype=torch.int32)
            signs = (torch.randint(0, 2, (numel,), generator=gen, dtype=torch.int8) * 2 - 1).to(torch.int8)
            self._hashes[key] = (buckets.to(device), signs.to(device))
        return self._hashes[key]

    def __call__(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Sketch of the concatenation of ``tensors`` (``None`` entries count as zeros) as a float32 `(dim,)` tensor."""
        out = None
        for position, t in enumerate(tensors):
            if t is None:
                continue
            if out is None:
                out = torch.zeros(self.dim, dtype=torch.float32, device=t.device)
            buckets, signs = self._hash(position, t.numel(), t.device)
            out.index_add_(0, buckets, t.detach().reshape(-1).float() * signs)
        return out if out is not None else torch.zeros(self.dim)


def loo_coefficients(success: torch.Tensor) -> torch.Tensor:
    """Leave-one-out centred success ``s_i - mean_{j != i} s_j``, the weights of an unbiased estimate
    ``grad p(x) ~ (1/G) sum_i c_i grad log pi(y_i | x)`` (no std scaling, unlike GRPO's advantages).

    Args:
        success (`torch.Tensor` of shape `(P, G)`): 0/1, NaN = unscored (weight 0; groups with fewer than 2 scored
            samples get 0 everywhere).

    Returns:
        `torch.Tensor` of shape `(P, G)`.
    """
    valid = ~torch.isnan(success)
    n = valid.sum(dim=1, keepdim=True)
    s = success.nan_to_num(0.0)
    others_mean = (s.sum(dim=1, keepdim=True) - s) / (n - 1).clamp(min=1)
    return torch.where(valid & (n > 1), s - others_mean, torch.zeros_like(s))


def pass1_gradient(
    logps: torch.Tensor,
    coef: torch.Tensor,
    params: Sequence[torch.Tensor],
    *,
    num_generations: int,
    mask: torch.Tensor | None = None,
    retain_graph: bool = False,
) -> tuple[torch.Tensor | None, ...]:
    """One prompt's pass@1 gradient estimate ``grad p(x) ~ (1/G) sum_i c_i grad log pi(y_i | x)``.

    The one helper behind the trainer's diagnostic, ``trl-passk diagnose`` and the bandit benchmark; each computes the
    log-probabilities its own way and passes them here with the graph attached.

    Args:
        logps (`torch.Tensor` of shape `(n, T)` or `(n,)`): per-token log-probabilities (summed over ``mask``) or
            per-sequence log-probabilities of ``n`` completions of the prompt. ``n < G`` when the group is split
            across processes: the partial gradients then add up to the group's.
        coef (`torch.Tensor` of shape `(n,)`): per-sample weights ``c_i``, e.g. :func:`loo_coefficients`; the product
            is taken in the promoted dtype of ``coef`` and the log-probabilities.
        params (`Sequence[torch.Tensor]`): the parameters to differentiate (e.g. the trainable ones).
        num_generations (`int`): ``G``, the group size the estimate averages over.
        mask (`torch.Tensor` of shape `(n, T)`, *optional*): completion mask for per-token ``logps``.
        retain_graph (`bool`): keep the graph (several prompts sharing one forward pass).

    Returns:
        `tuple` of one gradient per parameter (``None`` for parameters the log-probabilities do not depend on).
    """
    if logps.dim() == 2:
        logps = (logps if mask is None else logps * mask).sum(dim=1)  # (n,): sequence log-probabilities
    objective = (coef.to(logps.device) * logps).sum() / num_generations
    return torch.autograd.grad(objective, list(params), allow_unused=True, retain_graph=retain_graph)


def passk_prompt_weights(p: torch.Tensor, k: int) -> torch.Tensor:
    """``w_k(p) = k (1 - p)^(k - 1)``: the weight of ``grad p(x)`` in ``grad pass@k``.

    Args:
        p (`torch.Tensor` of shape `(P,)`): success probability of each prompt.
    """
    return k * (1.0 - p.clamp(0.0, 1.0)) ** (k - 1)


def interference_stats(
    kernel: torch.Tensor, p: torch.Tensor, k: int, threshold: float = 0.0, exclude_self: bool = True
) -> dict:
    """Gradient-alignment diagnostic of a batch of prompts.

    Args:
        kernel (`torch.Tensor` of shape `(P, P)`): ``K[x, x'] = <grad p(x), grad p(x')>`` (symmetric PSD).
        p (`torch.Tensor` of shape `(P,)`): success probability of each prompt (NaN = unknown, weight 0).
        k (`int`): the k of pass@k.
        threshold (`float`, defaults to `0.0`): a prompt is flagged when its normalised agreement (a cosine in
            [-1, 1]) is below it.
        exclude_self (`bool`, defaults to `True`): normalise and flag with the agreement of ``x`` with the *other*
            prompts, ``sum_{x' != x} K[x, x']`` (cosine with ``grad J_1 - grad p(x)``). With estimated gradients the
            diagonal ``K[x, x]`` carries the estimate's noise, which would push every prompt of a small batch towards
            agreement; without the self term the score asks whether pushing ``x`` helps the rest of the batch.

    Returns:
        `dict` with
        - ``agreement`` (`(P,)`): ``a(x) = (K 1)[x] = <grad p(x), grad J_1>``;
        - ``agreement_cos`` (`(P,)`): the normalised agreement used for flags, 0 where undefined;
        - ``alignment_cos`` (`float`): ``cos(grad J_k, grad J_1) = w^T K 1 / sqrt(w^T K w 1^T K 1)``, 0 where undefined;
        - ``weights`` (`(P,)`): ``w_k(p) = k (1 - p)^(k - 1)``;
        - ``flagged`` (`(P,)`, bool): ``agreement_cos < threshold`` (never where it is undefined, e.g. zero gradient);
        - ``negative_frac`` (`float`): fraction of prompts whose (self-excluded if ``exclude_self``) agreement is < 0.
    """
    K = kernel.to(torch.float64)
    K = 0.5 * (K + K.T)
    w = torch.nan_to_num(passk_prompt_weights(p.to(K), k), nan=0.0)
    a = K.sum(dim=1)
    return _stats(a, K.diagonal(), a.sum(), w, w @ a, w @ K @ w, threshold, exclude_self)


def interference_stats_from_sketches(
    sketches: torch.Tensor, p: torch.Tensor, k: int, threshold: float = 0.0, exclude_self: bool = True
) -> dict:
    """:func:`interference_stats` of the kernel ``Z Z^T`` of gradient sketches, without forming the `(P, P)` matrix.

    For a whole dataset (``trl-passk diagnose``): O(P D) time and memory instead of O(P^2).

    Args:
        sketches (`torch.Tensor` of shape `(P, D)`): one gradient sketch per prompt.
        p, k, threshold, exclude_self: as in :func:`interference_stats`.
    """
    Z = sketches.to(torch.float64)
    w = torch.nan_to_num(passk_prompt_weights(p.to(Z), k), nan=0.0)
    g1, gk = Z.sum(dim=0), Z.T @ w  # (D,): sketches of grad J_1 and grad J_k
    a = Z @ g1
    return _stats(a, (Z * Z).sum(dim=1), g1 @ g1, w, gk @ g1, gk @ gk, threshold, exclude_self)


def _stats(a, diag, total, w, num, norm_k, threshold, exclude_self) -> dict:
    """Shared tail of the two entry points, from ``a = K 1``, ``diag(K)``, ``1^T K 1``, ``w^T K 1``, ``w^T K w``."""
    diag = diag.clamp(min=0)
    if exclude_self:
        score = a - diag  # <grad p(x), grad J_1 - grad p(x)>
        rest_sq = (total - 2 * a + diag).clamp(min=0)  # |grad J_1 - grad p(x)|^2
    else:
        score, rest_sq = a, total.clamp(min=0).expand_as(a)
    denom = torch.sqrt(diag * rest_sq)
    defined = (denom > 1e-30) & torch.isfinite(denom)
    agreement_cos = torch.where(defined, score / torch.where(defined, denom, torch.ones_like(denom)), 0.0)
    den = math.sqrt(max(float(norm_k), 0.0) * max(float(total), 0.0))
    alignment = float(num) / den if den > 1e-30 and math.isfinite(den) else 0.0
    return {
        "agreement": a,
        "agreement_cos": agreement_cos.clamp(-1.0, 1.0),
        "alignment_cos": max(-1.0, min(1.0, alignment)),
        "weights": w,
        "flagged": defined & (agreement_cos < threshold),
        "negative_frac": (score < 0).double().mean().item() if a.numel() else 0.0,
    }


def filter_advantages(
    advantages: torch.Tensor,
    pass1: torch.Tensor,
    pass1_weight: torch.Tensor,
    flagged: torch.Tensor,
    mode: str,
) -> torch.Tensor:
    """Remove the pass@k push from flagged prompts.

    Args:
        advantages (`torch.Tensor` of shape `(P, G)`): the objective's advantages ``w A_1 + (1 - w) A_k``.
        pass1 (`torch.Tensor` of shape `(P, G)`): the pass@1 part ``A_1``.
        pass1_weight (`torch.Tensor` of shape `(P,)`): ``w`` per prompt.
        flagged (`torch.Tensor` of shape `(P,)`, bool).
        mode (`str`): ``"diagnose"`` (unchanged), ``"filter"`` (flagged rows become ``w A_1``: the pass@k share is
            removed, the pass@1 share kept) or ``"drop"`` (flagged rows become 0).

    Returns:
        `torch.Tensor` of shape `(P, G)`. If every prompt is flagged under ``"drop"``, the step has no learning signal
        (the loss is 0); ``"filter"`` keeps the pass@1 share, so a hybrid objective still learns.
    """
    if mode in ("off", "diagnose"):
        return advantages
    rows = flagged.to(torch.bool)[:, None]
    if mode == "filter":
        return torch.where(rows, pass1_weight.to(advantages)[:, None] * pass1.to(advantages), advantages)
    if mode == "drop":
        return advantages.masked_fill(rows, 0.0)
    raise ValueError(f"Unknown interference mode {mode!r}. Valid modes: off, diagnose, filter, drop.")


class InterferenceMemory:
    """Per-prompt memory of the diagnostic, so that recurring prompts stay flagged between diagnostics and runs.

    Keys are prompt texts; values hold the last normalised agreement, the flag and the step it was measured at.
    Saved as JSON (``save``/``load``) next to the checkpoints.
    """

    def __init__(self):
        self.entries: dict[str, dict] = {}

    def update(self, keys: Sequence[str], agreement_cos: torch.Tensor, flagged: torch.Tensor, step: int) -> None:
        for key, cos, flag in zip(keys, agreement_cos.tolist(), flagged.tolist()):
            entry = self.entries.setdefault(key, {"seen": 0})
            entry.update(agreement_cos=cos, flagged=bool(flag), step=int(step), seen=entry["seen"] + 1)

    def flagged(self, keys: Sequence[str]) -> torch.Tensor:
        """`(P,)` bool: the remembered flag of each key (False for prompts never diagnosed)."""
        return torch.tensor([bool(self.entries.get(key, {}).get("flagged", False)) for key in keys], dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.entries)

    def save(self, path: str) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.entries, f)
        os.replace(tmp, path)  # atomic: an interrupted save never leaves a truncated file

    @classmethod
    def load(cls, path: str) -> InterferenceMemory:
        """Read a memory saved by `save`; a truncated or corrupt file raises `ValueError` naming it and the fix."""
        memory = cls()
        try:
            with open(path) as f:
                entries = json.load(f)
            if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
                raise ValueError("not a JSON object of per-prompt entries")
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(
                f"interference memory {path} is corrupt or truncated ({error}). Nothing was reset: delete the file "
                "to start with an empty memory (prompts are diagnosed again), restore it from a checkpoint's "
                "trl_passk_state.json, or point interference_memory_path elsewhere."
            ) from None
        memory.entries = entries
        return memory
