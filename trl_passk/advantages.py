"""Pure advantage estimators for pass@1 and pass@k objectives, and the objectives that mix them.

Every estimator maps grouped rewards to per-sample advantages of the same shape:

    fn(rewards: Tensor[P, G], k: int, **options) -> Tensor[P, G]

``P`` prompts, ``G`` completions per prompt (``num_generations``). A NaN reward marks an unscorable completion (every
reward function returned ``None``): it is left out of its group (the group then has ``n < G`` samples) and gets
advantage 0, as in TRL. A group with fewer than ``k`` scored samples has no unbiased pass@k estimate and gets 0.
Outputs are finite on every input. All estimators run under ``torch.no_grad()``, compute their formulas in float64
(``grpo`` in float32, as TRL) and return the input dtype; none loops over groups in Python. They are independent of
the distributed setup: the trainer calls them on the rewards gathered from every process.

Papers:
- ``grpo``: Shao et al. 2024, DeepSeekMath (https://huggingface.co/papers/2402.03300), TRL's normalisation.
- ``analytic``, ``full``, ``bootstrap``, exceeding pass@k, ``combination``: Chen et al. 2025, "Pass@k Training for
  Adaptively Balancing Exploration and Exploitation of Large Reasoning Models"
  (https://huggingface.co/papers/2508.10751).
- ``pkpo``: Walder & Karkhanis 2025, "Pass@K Policy Optimization" (https://huggingface.co/papers/2505.15201), v3+.
- ``hybrid``: Barakat et al. 2026 (https://huggingface.co/papers/2602.21189).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import torch

from .estimators import log_binom
from .passk_fields import HYBRID_ADAPTIVE, OBJECTIVES

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "BINARY_ONLY_ESTIMATORS",
    "K_FREE_ESTIMATORS",
    "HYBRID_ADAPTIVE",
    "OBJECTIVES",
    "RANDOM_ESTIMATORS",
    "adaptive_hybrid_parts",
    "exceeding_passk_scale",
    "get_advantage_estimator",
    "mix_objectives",
    "register_advantage_estimator",
]

AdvantageEstimator = Callable[..., torch.Tensor]
"""``fn(rewards: Tensor[P, G], k: int, **options) -> Tensor[P, G]``."""

ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {}
BINARY_ONLY_ESTIMATORS: set[str] = set()
RANDOM_ESTIMATORS: set[str] = set()
K_FREE_ESTIMATORS: set[str] = set()
"""Estimators that ignore ``k`` (pass@1-type and MaxRL, whose order is set by the group size)."""


def register_advantage_estimator(
    name: str, *, binary_only: bool = False, random: bool = False, uses_k: bool = True, float64: bool = True
):
    """Decorator that adds an estimator to :data:`ADVANTAGE_ESTIMATORS` under ``name``.

    Registering a different function under a name already taken raises. ``binary_only`` estimators reject rewards other
    than 0/1 unless called with ``binarize=<threshold>``; ``random`` estimators accept ``generator=``; estimators with
    ``uses_k=False`` ignore ``k`` (it is still checked, for the common signature). The function receives the rewards
    in float64 unless ``float64=False`` (then as given: for estimators that only compare rewards, or that reproduce
    TRL's float32 arithmetic); its output is returned in the rewards' dtype with NaN and infinities set to 0.
    """

    def decorator(fn: AdvantageEstimator) -> AdvantageEstimator:
        if name != name.lower() or not name.isidentifier():
            raise ValueError(f"Estimator names are lowercase identifiers, got {name!r}.")
        existing = ADVANTAGE_ESTIMATORS.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"An advantage estimator is already registered as {name!r}: {existing.__qualname__}.")

        @functools.wraps(fn)
        @torch.no_grad()
        def wrapper(rewards: torch.Tensor, k: int = 1, **options) -> torch.Tensor:
            _check_inputs(name, rewards, k)
            out = fn(rewards.to(torch.float64) if float64 else rewards, int(k), **options)
            return torch.nan_to_num(out.to(rewards.dtype), nan=0.0, posinf=0.0, neginf=0.0)

        ADVANTAGE_ESTIMATORS[name] = wrapper
        if binary_only:
            BINARY_ONLY_ESTIMATORS.add(name)
        if random:
            RANDOM_ESTIMATORS.add(name)
        if not uses_k:
            K_FREE_ESTIMATORS.add(name)
        return wrapper

    return decorator


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """Look an estimator up by name; the error lists the valid names."""
    try:
        return ADVANTAGE_ESTIMATORS[name]
    except KeyError:
        raise ValueError(
            f"Unknown advantage estimator {name!r}. Valid names: {', '.join(sorted(ADVANTAGE_ESTIMATORS))}."
        ) from None


def estimator_options(name: str) -> list[str]:
    """Names of the keyword options an estimator accepts (for validating configs before training)."""
    params = inspect.signature(get_advantage_estimator(name).__wrapped__).parameters
    return [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]


def _check_inputs(name: str, rewards: torch.Tensor, k: int) -> None:
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 2:
        shape = tuple(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
        raise ValueError(f"{name}: rewards must be a 2-D tensor of shape (num_prompts, num_generations), got {shape}.")
    if not rewards.is_floating_point():
        raise ValueError(f"{name}: rewards must be a floating-point tensor, got {rewards.dtype}.")
    if not 1 <= int(k) <= rewards.shape[1]:
        raise ValueError(
            f"{name}: k must satisfy 1 <= k <= num_generations ({rewards.shape[1]}), got k={k}. "
            "Lower k or raise num_generations."
        )


# ----------------------------------------------------------------------------------------------------------------------
# helpers


def _valid_counts(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``valid[P, G]`` (scored samples) and ``n[P]`` (their count per group)."""
    valid = ~torch.isnan(rewards)
    return valid, valid.sum(dim=1)


def _binary(name: str, rewards: torch.Tensor, binarize: float | None) -> torch.Tensor:
    """0/1 rewards with NaN kept: thresholded if ``binarize`` is set, else checked to be 0/1 already."""
    if binarize is not None:
        return torch.where(torch.isnan(rewards), rewards, (rewards >= binarize).to(rewards.dtype))
    bad = (rewards != 0) & (rewards != 1) & ~torch.isnan(rewards)
    if bad.any():
        raise ValueError(
            f"Estimator {name!r} needs binary 0/1 rewards, got e.g. {rewards[bad][0].item():g}. Pass binarize=<threshold> "
            "(PassKGRPOConfig: passk_reward='success', the default, thresholds with success_threshold), or use "
            "'pkpo', 'full' or 'bootstrap', which handle continuous rewards."
        )
    return rewards


def _nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    # Bessel-corrected std ignoring NaN, NaN where fewer than 2 values: the same op sequence as TRL's `nanstd`, so the
    # `grpo` estimator reproduces TRL's advantages bit for bit.
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    variance = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(x), dim=dim, keepdim=True)
    correction = torch.where(count > 1, count / (count - 1), torch.full_like(variance, math.nan))
    return torch.sqrt(variance * correction)


def _masked_standardise(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(values - mean) / std`` along dim -1 over ``mask``, population std; 0 where std is 0 or masked.

    Args:
        values (`torch.Tensor` of shape `(P, M)`).
        mask (`torch.Tensor` of shape `(P, M)`, or `(P, 1)` to take whole rows or none, bool).
    """
    if mask.shape[-1] == 1 < values.shape[-1]:
        std, mean = torch.std_mean(values, dim=-1, correction=0, keepdim=True)
    else:
        count = mask.sum(dim=-1, keepdim=True).clamp(min=1)
        mean = (values * mask).sum(dim=-1, keepdim=True) / count
        std = ((((values - mean) ** 2) * mask).sum(dim=-1, keepdim=True) / count).sqrt()
    ok = mask & (std > 1e-12)
    return torch.where(ok, (values - mean) / torch.where(ok, std, torch.ones_like(std)), torch.zeros_like(values))


# ----------------------------------------------------------------------------------------------------------------------
# pass@1


@register_advantage_estimator("grpo", uses_k=False, float64=False)
def grpo_advantages(rewards: torch.Tensor, k: int = 1, *, scale_rewards: str = "group", eps: float = 1e-4):
    """GRPO (pass@1) advantages, exactly as TRL computes them: ``(r - mean_group(r)) / (std + eps)``.

    Args:
        rewards (`torch.Tensor` of shape `(P, G)`): combined reward per completion, NaN for unscorable ones.
        k (`int`): ignored (pass@1); present for the common signature.
        scale_rewards (`str`, defaults to `"group"`): TRL's option: ``"group"`` divides by each group's std,
            ``"batch"`` by the std over all ``P * G`` rewards, ``"none"`` only centres (Dr. GRPO).
        eps (`float`, defaults to `1e-4`): TRL's constant added to the std.

    Returns:
        `torch.Tensor` of shape `(P, G)`.
    """
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale_rewards!r}.")
    # TRL computes in the reward dtype (float32) with nanmean/nanstd; the same operations (nanmean is nansum / count,
    # the count taken once here) give the same bits.
    r = rewards.to(torch.float32)
    count = (~torch.isnan(r)).sum(dim=1, keepdim=True)  # (P, 1)
    advantages = r - r.nansum(dim=1, keepdim=True).div(count)
    if scale_rewards == "group":
        variance = (advantages**2).nansum(dim=1, keepdim=True).div(count)
        std = torch.sqrt(variance * torch.where(count > 1, count / (count - 1), math.nan))  # NaN below 2 samples
        advantages = advantages / (std + eps)
    elif scale_rewards == "batch":
        advantages = advantages / (_nanstd(r) + eps)
    return advantages


# ----------------------------------------------------------------------------------------------------------------------
# Chen et al. 2025: analytic, full sampling, bootstrap sampling


@register_advantage_estimator("analytic", binary_only=True, float64=False)
def analytic_advantages(rewards: torch.Tensor, k: int, *, binarize: float | None = None):
    """Analytic pass@k advantages (Chen et al. 2025, §2.4, Eqs. 11–15; arXiv 2508.10751).

    With ``n`` scored samples, ``c`` correct and ``q = C(n - c, k) / C(n, k)`` (so the expected group reward is
    ``R = 1 - q`` and ``sigma = sqrt(q (1 - q))``):

    - correct samples: ``A_pos = (1 - R) / sigma = sqrt(q / (1 - q))``;
    - wrong samples: ``A_neg = (1 - R - C(n - c - 1, k - 1) / C(n - 1, k - 1)) / sigma``, computed as
      ``-(c / n) * C(n - c - 1, k - 1) / C(n - 1, k - 1) / sigma`` (the same value without the cancellation).

    Each value is the mean, over all k-subsets containing the sample, of the normalised subset reward
    ``(max - R) / sigma``. Groups with ``sigma = 0`` (all wrong, or fewer than ``k`` wrong so every subset succeeds)
    get 0. At ``k = 1`` this is GRPO with a population std; at ``k = n`` every group gets 0. Unlike the reference
    code (which rewrites every zero entry, so a correct sample whose advantage underflows to 0 gets the negative
    value), the sign comes from the label, never from the value.

    Args:
        rewards (`torch.Tensor` of shape `(P, G)`): 0/1 rewards (NaN = unscored).
        k (`int`): ``1 <= k <= G``.
        binarize (`float`, *optional*): threshold turning continuous rewards into ``reward >= binarize``. Without
            it, rewards other than 0/1 raise.

    Returns:
        `torch.Tensor` of shape `(P, G)`.
    """
    if binarize is not None:
        rewards = torch.where(torch.isnan(rewards), rewards, (rewards >= binarize).to(rewards.dtype))
    correct, wrong = rewards == 1, rewards == 0  # (P, G); unscored (NaN) samples are neither
    c, n = correct.sum(dim=1), wrong.sum(dim=1)
    n += c  # scored samples
    if not bool((n + torch.isnan(rewards).sum(dim=1) == rewards.shape[1]).all()):
        _binary("analytic", rewards, None)  # raises, quoting a reward that is neither 0 nor 1
    n, c = n.to(torch.float64), c.to(torch.float64)  # the formula in float64, (P,)
    ok = n >= k
    n_ = torch.where(ok, n, torch.full_like(n, k))
    q = torch.exp(log_binom(n_ - c, k) - log_binom(n_, k))  # P(random k-subset has no correct sample), (P,)
    miss = torch.exp(log_binom(n_ - c - 1, k - 1) - log_binom(n_ - 1, k - 1))  # same, given one wrong sample, (P,)
    sigma = torch.sqrt(q * (1 - q))
    has_signal = ok & (sigma > 0)
    sigma = torch.where(has_signal, sigma, torch.ones_like(sigma))
    a_pos = torch.sqrt(q / torch.where(has_signal, 1 - q, torch.ones_like(q)))
    a_neg = -(c / n_) * miss / sigma
    a_pos, a_neg = (torch.where(has_signal, a, 0.0).to(rewards.dtype)[:, None] for a in (a_pos, a_neg))
    return torch.where(correct, a_pos, a_neg * wrong)


def _random_words(count: int, generator, device) -> torch.Tensor:
    """``count`` uniform random 64-bit words (int64)."""
    return torch.empty(count, dtype=torch.int64, device=device).random_(-(2**63), None, generator=generator)


def _random_keys(shape, valid: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform random 64-bit keys of ``shape`` (last dim G), the largest value where a sample is unscored so that it
    sorts last. Two keys tie with probability about ``G**2 / 2**65``, so sorting them gives a uniform permutation."""
    keys = _random_words(math.prod(shape), generator, valid.device).view(shape)
    if bool(valid.all()):
        return keys
    return keys.masked_fill(~valid.view(valid.shape[0], *([1] * (len(shape) - 2)), valid.shape[1]), 2**63 - 1)


def _popcount(x: torch.Tensor) -> torch.Tensor:
    """Number of set bits of each int64 (SWAR; the arithmetic wraps modulo 2**64 as two's complement does)."""
    x = x - ((x >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    return (x * 0x0101010101010101) >> 56


def _draw_positions(n: torch.Tensor, shape: tuple[int, ...], generator, words: int):
    """One attempt at ``shape[1]`` positions per subset along dim 1, each uniform in ``[0, n)``, independently.

    When every ``n`` is the same power of two a position is the low bits of a random byte (``n <= 256``) or 16-bit
    chunk; otherwise it is Lemire's multiply-shift ``floor(u n / 2**16)`` of a random 16-bit ``u``, made exact by
    rejecting the subset when a product's low half falls below ``2**16 mod n`` (the surplus of the uneven division).
    A subset is also rejected when two of its positions coincide: as bits of ``words`` 64-bit words its positions then
    set fewer than ``k`` bits.

    Args:
        n (`torch.Tensor`, int64): positions per subset, broadcastable to ``shape`` with size 1 in dim 1, ``<= 2**15``.
        shape (`tuple`): ``(R, k)`` or ``(R, k, M)``.
        words (`int`): ``ceil(max(n) / 64)``.

    Returns:
        ``positions`` (int64, ``shape``) and ``rejected`` (bool, ``shape`` without dim 1).
    """
    k, numel, device = shape[1], math.prod(shape), n.device
    n_max = int(n.max())
    rejected = None
    if (n_max & (n_max - 1)) == 0 and bool((n == n_max).all()):
        per_word, dtype = (8, torch.uint8) if n_max <= 256 else (4, torch.int16)
        chunks = _random_words(-(-numel // per_word), generator, device).view(dtype)[:numel]  # a chunk per position
        positions = chunks.view(shape).bitwise_and_(n_max - 1).to(torch.int64)
    else:
        chunks = _random_words(-(-numel // 4), generator, device).view(torch.int16)[:numel]  # 16 bits per position
        product = chunks.view(shape).to(torch.int32).bitwise_and_(0xFFFF).mul_(n.to(torch.int32))  # u * n < 2**31
        rejected = (product & 0xFFFF).amin(dim=1) < ((1 << 16) % n).squeeze(1)
        positions = product.bitwise_right_shift_(16).to(torch.int64)
    if words == 1:
        counts = _popcount((1 << positions).sum(dim=1))
    else:
        bitsets = torch.zeros(shape[:1] + (words,) + shape[2:], dtype=torch.int64, device=device)
        counts = _popcount(bitsets.scatter_add_(1, positions >> 6, 1 << (positions & 63))).sum(dim=1)
    return positions, counts != k if rejected is None else rejected | (counts != k)


def _distinct_positions(n: torch.Tensor, M: int, k: int, generator) -> torch.Tensor:
    """``M`` independent uniform k-subsets of ``range(n[r])`` per row: ``k`` positions drawn with replacement, and
    every subset that repeats one drawn again (what is kept is uniform over k-subsets: each is as likely as any other).

    Args:
        n (`torch.Tensor` of shape `(R,)`, int64): ``k <= n <= 2**15``.

    Returns:
        `torch.Tensor` of shape `(R, k, M)` (int64).
    """
    R = n.shape[0]
    words = -(-int(n.max()) // 64)
    positions, rejected = _draw_positions(n.view(R, 1, 1), (R, k, M), generator, words)
    pending = rejected.view(-1).nonzero().squeeze(1)  # (Q,): r * M + c of the rejected subsets
    same_n = bool((n == n[0]).all())
    done, drawn = [], []  # flat ids and positions (k, A) of the accepted redraws, written back once at the end
    while pending.numel():  # in all about 1 / P(no repeat) - 1 redraws per subset, in a few shrinking rounds
        Q = pending.numel()
        tries = 1 if Q > 4096 else 8  # the last few subsets get several candidates each, so that the rounds end soon
        n_pending = n[:1] if same_n else n[pending.div(M, rounding_mode="floor")].repeat(tries)
        redrawn, rejected = _draw_positions(n_pending.view(1, 1, -1), (1, k, tries * Q), generator, words)
        redrawn, accepted = redrawn.view(k, tries, Q), ~rejected.view(tries, Q)
        if tries > 1:  # keep the first accepted candidate of each subset: distributed as any accepted one
            first = accepted.to(torch.uint8).argmax(dim=0)  # (Q,)
            redrawn = redrawn.gather(1, first.view(1, 1, Q).expand(k, 1, Q))
            accepted = accepted.any(dim=0, keepdim=True)
        done.append(pending[accepted[0]])
        drawn.append(redrawn[:, 0, accepted[0]])
        pending = pending[~accepted[0]]
    if done:
        done = torch.cat(done)
        flat = done + done.div(M, rounding_mode="floor") * ((k - 1) * M)  # positions.view(-1) index of [r, 0, c]
        flat = flat + torch.arange(0, k * M, M, device=n.device)[:, None]  # (k, A): ... of [r, j, c]
        positions.view(-1).scatter_(0, flat.view(-1), torch.cat(drawn, dim=1).view(-1))
    return positions


def _uniform_subsets(valid: torch.Tensor, n: torch.Tensor, M: int, k: int, generator) -> torch.Tensor:
    """``M`` independent uniform k-subsets of each row's scored samples, as column indices.

    Two exact samplers, chosen per row by the chance ``q = n! / ((n - k)! n**k)`` that ``k`` positions drawn with
    replacement are distinct:

    - ``q >= 1/2`` (about ``k (k - 1) < 1.4 n``: ``k <= 9`` of 64, ``k <= 26`` of 512): draw ``k`` positions with
      replacement and redraw the subsets that repeat one (:func:`_distinct_positions`), ``O(M k)`` tensor work and no
      loop over ``k``;
    - otherwise: a random 64-bit key per sample and subset, the ``k`` smallest kept: ``O(M G)``, at most about
      ``k / 1.4`` times the first on these rows (taken in blocks of at most ``2**20`` keys).

    Rows with ``n = k`` take every scored sample in every subset; rows with ``n < k`` get arbitrary indices that the
    caller masks out.

    Args:
        valid (`torch.Tensor` of shape `(P, G)`, bool), n (`torch.Tensor` of shape `(P,)`): scored samples and their
            count per row; M (`int`): subsets per row; k (`int`).

    Returns:
        `torch.Tensor` of shape `(P, k, M)` (int64): column indices into the `(P, G)` rewards.
    """
    P, G = valid.shape
    nf = n.to(torch.float64).clamp(min=k)
    log_distinct = torch.lgamma(nf + 1) - torch.lgamma(nf - k + 1) - k * torch.log(nf)  # log P(k draws distinct)
    by_draws = (n > k) & (log_distinct >= -math.log(2)) & (n <= 1 << 15)
    if bool(by_draws.all()):
        return _scored_columns(valid, _distinct_positions(n, M, k, generator))
    subsets = torch.zeros(P, k, M, dtype=torch.long, device=valid.device)
    if by_draws.any():
        rows = by_draws.nonzero().squeeze(1)
        subsets[rows] = _scored_columns(valid[rows], _distinct_positions(n[rows], M, k, generator))
    rows = (n == k).nonzero().squeeze(1)  # every subset is all the scored samples: nothing to draw
    if rows.numel():
        every = torch.arange(k, device=valid.device)[None, :, None].expand(rows.numel(), k, M)
        subsets[rows] = _scored_columns(valid[rows], every)
    rows = ((n > k) & ~by_draws).nonzero().squeeze(1)
    block = max(1, (1 << 20) // (M * G))  # rows at a time: at most 2**20 keys (8 MiB)
    for start in range(0, rows.numel(), block):
        some = rows[start : start + block]
        keys = _random_keys((some.numel(), M, G), valid[some], generator)  # unscored: never among the k smallest
        subsets[some] = keys.topk(k, dim=-1, largest=False, sorted=False).indices.transpose(1, 2)
    return subsets


def _scored_columns(valid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Columns of the scored samples at ``positions`` (counted among each row's scored samples), `(R, k, M)`."""
    if bool(valid.all()):
        return positions
    scored_first = (~valid).to(torch.int8).argsort(dim=1, stable=True)  # (R, G): scored samples' columns first
    return scored_first.gather(1, positions.reshape(positions.shape[0], -1)).view(positions.shape)


@register_advantage_estimator("full", random=True, float64=False)
def full_sampling_advantages(
    rewards: torch.Tensor, k: int, *, shuffle: bool = True, generator: torch.Generator | None = None
):
    """Full-sampling pass@k advantages (Chen et al. 2025, §2.2, Alg. 1).

    The scored samples of a group are split into ``floor(n / k)`` disjoint groups of ``k`` (random groups when
    ``shuffle``, else consecutive ones as in Alg. 1; the remainder gets 0). A group's reward is its max; group rewards are
    standardised across the groups of the prompt (population std, as DAPO/GRPO); every member gets its group's value.
    With a single group (``k > n / 2``) the std is 0 and the prompt gets no signal. Works for continuous rewards.

    Args:
        rewards (`torch.Tensor` of shape `(P, G)`).
        k (`int`): ``1 <= k <= G``.
        shuffle (`bool`, defaults to `True`): draw the partition at random (completions are i.i.d., so this only
            matters for reproducibility tests).
        generator (`torch.Generator`, *optional*): source of randomness for the partition.

    Returns:
        `torch.Tensor` of shape `(P, G)`.
    """
    P, G = rewards.shape
    valid, n = _valid_counts(rewards)
    if shuffle:
        perm = _random_keys((P, G), valid, generator).argsort(dim=1)  # (P, G): scored samples first, shuffled
    else:
        keys = torch.arange(G, device=rewards.device).expand(P, G).masked_fill(~valid, G)
        perm = keys.argsort(dim=1, stable=True)  # (P, G): scored samples first, in order
    m = G // k
    perm = perm[:, : m * k]  # the remainder gets 0
    group_reward = rewards.nan_to_num(0.0).gather(1, perm).view(P, m, k).amax(dim=-1).to(torch.float64)  # (P, m)
    group_ok = (torch.arange(1, m + 1, device=rewards.device) * k)[None, :] <= n[:, None]  # (P, m)
    group_adv = _masked_standardise(group_reward, group_ok[:, :1] if bool(group_ok.all()) else group_ok)  # (P, m)
    group_adv = group_adv.to(rewards.dtype)[:, :, None].expand(P, m, k).reshape(P, m * k)
    return torch.zeros_like(rewards).scatter_(1, perm, group_adv)


@register_advantage_estimator("bootstrap", random=True)
def bootstrap_advantages(
    rewards: torch.Tensor,
    k: int,
    *,
    num_subsets: int | None = None,
    reduction: str = "sum",
    sampling: str = "independent",
    generator: torch.Generator | None = None,
):
    """Bootstrap-sampling pass@k advantages (Chen et al. 2025, §2.3, Alg. 2, Eq. 6).

    Draw ``M`` subsets of ``k`` distinct scored samples per prompt, take each subset's max reward, standardise those
    ``M`` values (population std), and give each sample the **sum** (Eq. 6; ``reduction="sum"``) or the **mean**
    (``reduction="mean"``) of the standardised values of the subsets that contain it. The sum is about
    ``M k / n`` times the mean; as ``M`` grows the mean converges to the ``analytic`` advantage. Works for continuous
    rewards.

    Args:
        rewards (`torch.Tensor` of shape `(P, G)`).
        k (`int`): ``1 <= k <= G``.
        num_subsets (`int`, *optional*): ``M``; defaults to ``G`` as in the paper.
        reduction (`str`, defaults to `"sum"`): ``"sum"`` (the paper) or ``"mean"``.
        sampling (`str`, defaults to `"independent"`): ``"independent"`` draws every subset independently (Alg. 2),
            in ``O(M k)`` work when ``k (k - 1) < 1.4 n`` (else ``O(M G)``; see :func:`_uniform_subsets`);
            ``"balanced"`` cuts random permutations into ``floor(n / k)`` disjoint subsets each, so every sample lies
            in the same number of subsets (each subset is still a uniform random k-subset; lower variance, but a sort
            of ``G`` random keys per permutation makes it slower). Groups with unscored samples use only the subsets
            made of scored ones.
        generator (`torch.Generator`, *optional*): source of randomness for the subsets.

    Returns:
        `torch.Tensor` of shape `(P, G)`.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"bootstrap: reduction must be 'sum' or 'mean', got {reduction!r}.")
    if sampling not in ("independent", "balanced"):
        raise ValueError(f"bootstrap: sampling must be 'independent' or 'balanced', got {sampling!r}.")
    P, G = rewards.shape
    M = G if num_subsets is None else int(num_subsets)
    if M < 1:
        raise ValueError(f"bootstrap: num_subsets must be >= 1, got {M}.")
    valid, n = _valid_counts(rewards)
    if bool((n <= k).all()):  # each group has one possible subset (all equal maxima, standardised to 0) or none
        return torch.zeros_like(rewards)
    if sampling == "independent":
        idx = _uniform_subsets(valid, n, M, k, generator)  # (P, k, M): k distinct scored samples per subset
        ok = (n >= k)[:, None]  # (P, 1): every subset of a row, or none
    else:
        per_perm = G // k
        num_perms = -(-M // per_perm)
        keys = _random_keys((P, num_perms, G), valid, generator)
        perm = keys.argsort(dim=-1)[..., : per_perm * k]  # (P, R, per_perm * k): scored samples first
        idx = perm.reshape(P, num_perms * per_perm, k)[:, :M].transpose(1, 2).contiguous()  # (P, k, M)
        chunk = torch.arange(num_perms * per_perm, device=rewards.device)[:M] % per_perm  # chunk index in its perm
        ok = (chunk[None, :] + 1) * k <= n[:, None]  # (P, M): chunk made of scored samples only
    flat_idx = idx.view(P, k * M)
    entries = rewards.nan_to_num(0.0).gather(1, flat_idx)  # (P, k * M), reused below for the subset values
    subset_adv = _masked_standardise(entries.view(P, k, M).amax(dim=1), ok)  # (P, M), 0 where not ok
    entries.view(P, k, M).copy_(subset_adv[:, None, :].expand(P, k, M))
    adv = torch.zeros_like(rewards).scatter_add_(1, flat_idx, entries)
    if reduction == "mean":
        entries.view(P, k, M).copy_(ok[:, None, :].expand(P, k, M))
        adv = adv / torch.zeros_like(rewards).scatter_add_(1, flat_idx, entries).clamp(min=1)
    return adv.masked_fill(~valid, 0.0)


# ----------------------------------------------------------------------------------------------------------------------
# Walder & Karkhanis 2025: PKPO


def _sorted_groups(rewards: torch.Tensor):
    """Sort each group ascending with unscored samples last.

    Returns ``g[P, G]`` (sorted rewards, 0 in the unscored tail), ``order[P, G]`` (sorted position -> original index),
    ``n[P]`` (scored samples) and ``tail[P, G]`` (True at sorted positions ``>= n``).
    """
    valid, n = _valid_counts(rewards)
    g, order = rewards.masked_fill(~valid, math.inf).sort(dim=1, stable=True)
    tail = torch.arange(rewards.shape[1], device=rewards.device)[None, :] >= n[:, None]
    return g.masked_fill(tail, 0.0), order, n, tail


def _rank_weights(log_col: torch.Tensor, log_norm: torch.Tensor, tail: torch.Tensor | None = None) -> torch.Tensor:
    """``exp(log_col - log_norm)``, zero in the unscored ``tail`` if given.

    ``log_col`` `(1, G)` depends on the rank only and ``log_norm`` `(P, 1)` (or `(1, 1)`) on the group only, so when
    both exponents are safely inside float64's range the product of two small ``exp`` s replaces a `(P, G)` one (the
    common case: groups of up to several hundred); otherwise the ratio is formed in log space. The tail is zeroed so
    that an overflow there can never leak into the cumulative sums of the scored positions.
    """
    finite_norm = log_norm[torch.isfinite(log_norm)]
    if log_col.max() < 600 and (finite_norm.numel() == 0 or finite_norm.abs().max() < 600):
        weights = torch.exp(log_col) * torch.exp(-log_norm)
    else:
        weights = torch.exp(log_col - log_norm)
    return weights.masked_fill(tail, 0.0) if tail is not None and tail.any() else weights


def _loo_value(g: torch.Tensor, n: torch.Tensor, tail: torch.Tensor, kk: int) -> torch.Tensor:
    """``rho^(g)(g_{-i}, kk)`` for every sorted position ``i``: the unbiased max@kk of the group without sample ``i``.

    PKPO Eqs. 12–13 applied to the ``n - 1`` remaining samples: samples below ``i`` keep their rank ``t``, samples above
    move down one rank, so the sum splits into a prefix over ``t < i`` with weights ``C(t-1, kk-1)`` and a suffix over
    ``j > i`` with weights ``C(j-2, kk-1)``, both over ``C(n-1, kk)``.

    Args:
        g (`torch.Tensor` of shape `(P, G)`): sorted rewards; n (`torch.Tensor` of shape `(P,)`);
        tail (`torch.Tensor` of shape `(P, G)`); kk (`int`) ``>= 1``.

    Returns:
        `torch.Tensor` of shape `(P, G)`.
    """
    pos = torch.arange(1, g.shape[1] + 1, dtype=torch.float64, device=g.device)[None, :]  # (1, G)
    log_norm = log_binom(n.to(torch.float64) - 1, kk)[:, None]  # (P, 1)
    below = _rank_weights(log_binom(pos - 1, kk - 1), log_norm, tail) * g  # weight of sample t when i > t
    above = _rank_weights(log_binom(pos - 2, kk - 1), log_norm, tail) * g  # weight of sample j when i < j
    prefix = below.cumsum(dim=1) - below  # sum over t < i
    suffix = above.flip(1).cumsum(dim=1).flip(1) - above  # sum over j > i
    return prefix + suffix


def _pkpo_loo_minus_one(rewards: torch.Tensor, k: int, reduction: str) -> torch.Tensor:
    """PKPO's default ``s^(loo-1)`` (Eq. 33) in closed form: one sort and one cumulative sum.

    Of the k-subsets ``I`` containing sample ``i``, only those where ``i`` ranks highest have
    ``max_I g != max_{I minus i} g``; the rest of such a subset is a (k-1)-subset of the ranks below ``i``, whose top
    is rank ``t`` in ``C(t - 1, k - 2)`` of them. With rewards sorted ascending (ranks ``1..n``, ties in any order):

        s_i = [C(i - 1, k - 1) g_(i) - sum_{t < i} C(t - 1, k - 2) g_(t)] / C(n, k)

    (so ``s_i = sum_{t < i} C(t - 1, k - 2) (g_(i) - g_(t)) / C(n, k)``: never negative, 0 for the lowest reward). At
    ``k = 1``, where the paper's baseline is undefined, Eq. 26's leave-one-out baseline. Unscored samples (NaN) sort
    last and stay NaN, which the registry turns into 0.

    Args:
        rewards (`torch.Tensor` of shape `(P, G)`), k (`int`), reduction (`str`): see :func:`pkpo_advantages`.

    Returns:
        `torch.Tensor` of shape `(P, G)`.
    """
    P, G = rewards.shape
    _, n = _valid_counts(rewards)
    nf = n.to(torch.float64)[:, None]  # (P, 1)
    if k == 1:  # Eq. 26: g_i - mean_{j != i} g_j, at the per-sample-sum scale 1/n unless reduction="mean"
        advantages = rewards - (rewards.nansum(dim=1, keepdim=True) - rewards) / (nf - 1).clamp(min=1)
        return advantages if reduction == "mean" else advantages / nf
    if bool((n == n[0]).all()):
        nf = nf[:1]  # one group size: the weights depend on the rank only, (1, G)
    log_norm = log_binom(nf, k) - (nf.log() if reduction == "mean" else 0.0)  # log(C(n, k) / n) for "mean"
    log_norm = torch.where(nf >= k, log_norm, math.inf)  # fewer than k scored samples: every weight 0
    rank = torch.arange(G, dtype=torch.float64, device=rewards.device)[None, :]  # i - 1 for ranks i = 1..G
    lag = _rank_weights(log_binom(rank, k - 2), log_norm)  # C(t - 1, k - 2) / C(n, k), (P or 1, G)
    lead = _rank_weights(log_binom(rank, k - 1), log_norm) + lag  # [C(i - 1, k - 1) + C(i - 1, k - 2)] / C(n, k)
    g, order = rewards.sort(dim=1)  # (P, G): ascending, NaN last
    weighted = lag * g
    advantages = (lead * g).sub_(weighted.cumsum_(dim=1))  # lead_i g_i - sum_{t <= i} lag_t g_t
    return torch.empty_like(advantages).scatter_(1, order, advantages)


@register_advantage_estimator("pkpo")
def pkpo_advantages(rewards: torch.Tensor, k: int, *, baseline: str = "loo_minus_one", reduction: str = "mean"):
    """PKPO pass@k / max@k advantages (Walder & Karkhanis 2025, §2–4, Eqs. 19–34; arXiv 2505.15201 v3+).

    Unbiased per-sample weights whose sum ``sum_i s_i grad log p(x_i)`` estimates ``grad max_g@k`` (Thm 4; pass@k for
    0/1 rewards, Thm 2). With rewards sorted ascending ``g_(1) <= ... <= g_(n)``:
    ``s_i = [C(i-1, k-1) g_(i) + sum_{j>i} C(j-2, k-2) g_(j)] / C(n, k)``, i.e. the mean over all k-subsets containing
    the sample of the subset's max (Eq. 27), computed in O(n log n) with log-space binomials.

    Baselines (§4), each keeping the estimate unbiased:

    - ``"loo_minus_one"`` (default; the paper's PKPO): ``s_i - (k / n) rho^(g)(g_{-i}, k - 1)``, i.e. the mean over
      subsets containing ``i`` of ``max_I g - max_{I \\ i} g``. Undefined at ``k = 1``, where the simple leave-one-out
      baseline of Eq. 26 (``g_i - mean_{j != i} g_j``, scaled by ``1/n``) is used instead, as the paper does for
      ``k_opt = 1``.
    - ``"loo"``: ``s_i - (k / (n - 1)) rho^(g)(g_{-i}, k)`` (Eqs. 29–32); at ``k = n`` there is no baseline set and
      plain ``s`` is returned, as in Listing 1.
    - ``"none"``: plain ``s``.

    Args:
        rewards (`torch.Tensor` of shape `(P, G)`): any real rewards (NaN = unscored).
        k (`int`): ``1 <= k <= G``.
        baseline (`str`, defaults to `"loo_minus_one"`).
        reduction (`str`, defaults to `"mean"`): ``"sum"`` returns the paper's weights. ``"mean"`` multiplies them by
            ``n``: TRL averages the loss over samples, so with ``"mean"`` the policy gradient of a group equals the
            paper's per-prompt sum (Thms 2/4) and the scale matches GRPO's (at ``k = 1``, ``s_i * n = g_i``).

    Returns:
        `torch.Tensor` of shape `(P, G)`.
    """
    if baseline not in ("loo_minus_one", "loo", "none"):
        raise ValueError(f"pkpo: baseline must be 'loo_minus_one', 'loo' or 'none', got {baseline!r}.")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"pkpo: reduction must be 'sum' or 'mean', got {reduction!r}.")
    if baseline == "loo_minus_one":
        return _pkpo_loo_minus_one(rewards, k, reduction)
    g, order, n, tail = _sorted_groups(rewards)  # (P, G), (P, G), (P,), (P, G)
    tail = tail | (n < k)[:, None]  # groups with fewer than k scored samples get no weights at all
    nf = n.to(torch.float64)[:, None]  # (P, 1)
    pos = torch.arange(1, g.shape[1] + 1, dtype=torch.float64, device=g.device)[None, :]  # (1, G)
    log_norm = log_binom(nf, k)  # (P, 1)
    diag = _rank_weights(log_binom(pos - 1, k - 1), log_norm, tail) * g  # m_ii g_(i) / C(n, k)
    off = _rank_weights(log_binom(pos - 2, k - 2), log_norm, tail) * g  # m_ij g_(j) / C(n, k), any i < j
    s = diag + (off.flip(1).cumsum(dim=1).flip(1) - off)  # (P, G)

    if baseline == "loo":
        has_baseline = nf > k  # k <= n - 1; at k = n Listing 1 returns plain s
        s = torch.where(has_baseline, s - (k / (nf - 1).clamp(min=1)) * _loo_value(g, n, tail, k), s)

    if reduction == "mean":
        s = s * nf
    if tail.any():
        s = s.masked_fill(tail, 0.0)
    return torch.zeros_like(s).scatter(1, order, s)


# ----------------------------------------------------------------------------------------------------------------------
# Unbiased, un-normalised pass@1 (RLOO) and maximum likelihood (MaxRL)


@register_advantage_estimator("rloo", uses_k=False)
def rloo_advantages(rewards: torch.Tensor, k: int = 1):
    """Leave-one-out (RLOO) advantages ``r_i - mean_{j != i} r_j`` over each group's scored samples.

    Unbiased and un-normalised: with TRL's per-sample mean, ``(1/G) sum_i A_i grad log pi(y_i)`` estimates
    ``grad p(x)`` (the gradient of pass@1, or of the expected reward) exactly, with no std division. This is PKPO's
    Eq. 26 baseline (Walder & Karkhanis 2025, arXiv 2505.15201) and RLOO's advantage (Ahmadian et al. 2024,
    arXiv 2402.14740); it is the pass@1 part of ``hybrid_scale="objective"``. Groups with fewer than 2 scored samples
    get 0. Works for continuous rewards.

    Args:
        rewards (`torch.Tensor` of shape `(P, G)`): NaN = unscored.
        k (`int`): ignored.

    Returns:
        `torch.Tensor` of shape `(P, G)`; each group's advantages sum to 0.
    """
    valid, n = _valid_counts(rewards)
    r = rewards.nan_to_num(0.0)
    n = n.to(rewards.dtype)[:, None]  # (P, 1)
    total = r.sum(dim=1, keepdim=True)
    adv = (n * r - total) / (n - 1).clamp(min=1)
    return torch.where(valid & (n > 1), adv, torch.zeros_like(adv))


@register_advantage_estimator("maxrl", binary_only=True, uses_k=False)
def maxrl_advantages(rewards: torch.Tensor, k: int = 1, *, binarize: float | None = None):
    """MaxRL advantages ``(r_i - mean(r)) / mean(r)`` (Tajwar et al. 2026, "Maximum Likelihood Reinforcement
    Learning", arXiv 2602.02710); 0 for groups with no correct sample.

    MaxRL targets the maximum-likelihood objective ``log p(x) = -sum_{j >= 1} (1 - p)^j / j``, whose gradient is
    ``sum_j (1/j) grad pass@j``: the estimator averages the score of the *correct* samples (it divides by the number of
    successes instead of the group size), which weights low-success prompts by about ``1/p``. Derived here and checked
    by exact enumeration in the tests: with TRL's per-sample mean over ``n`` scored samples, the expected update is
    ``sum_{j=1}^{n-1} (1/j) grad pass@j(x) = (1 - (1 - p)^(n-1)) grad p / p``, the series truncated at ``n - 1``
    (the ``- mean`` baseline is left out of groups with no success, which drops the ``j = n`` term). ``k`` is
    ignored: the group size sets the order.

    Args:
        rewards (`torch.Tensor` of shape `(P, G)`): 0/1 rewards (NaN = unscored).
        k (`int`): ignored.
        binarize (`float`, *optional*): threshold turning continuous rewards into ``reward >= binarize``.

    Returns:
        `torch.Tensor` of shape `(P, G)`; each group's advantages sum to 0.
    """
    s = _binary("maxrl", rewards, binarize)
    valid, n = _valid_counts(s)
    r = s.nan_to_num(0.0)
    mean = r.sum(dim=1, keepdim=True) / n.clamp(min=1).to(r.dtype)[:, None]  # (P, 1): c / n
    solved = mean > 0
    adv = (r - mean) / torch.where(solved, mean, torch.ones_like(mean))
    return torch.where(valid & solved, adv, torch.zeros_like(adv))


# ----------------------------------------------------------------------------------------------------------------------
# objectives


def exceeding_passk_scale(num_correct: torch.Tensor, coef: float = 0.4) -> torch.Tensor:
    """Exceeding-pass@k factor ``f(c) = coef / ln(c + 0.5)`` for groups with ``c >= 1`` correct (1 where ``c = 0``).

    Chen et al. 2025, §4.2.1, Eq. 17 scale the pass@k advantage by a function decreasing in the number of correct
    samples so that the learning signal peaks on nearly-unsolved prompts. The text copy of the paper reads
    "4/(10·log(N_pos+0.5))"; the log base and the exact constant are unconfirmed, hence ``coef``. Any
    ``f`` proportional to ``1 / log(c + 0.5)`` moves the peak of the total signal to ``c = 1``.

    Args:
        num_correct (`torch.Tensor` of shape `(P,)`).

    Returns:
        `torch.Tensor` of shape `(P,)` (float64).
    """
    c = num_correct.to(torch.float64)
    return torch.where(c >= 1, coef / torch.log(c.clamp(min=1) + 0.5), torch.ones_like(c))


@torch.no_grad()
def adaptive_hybrid_parts(
    rewards: torch.Tensor, success: torch.Tensor, k: int, hybrid_lambda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two shares of the success-rate-adaptive hybrid at objective scale, each unbiased, from leave-one-out counts.

    Per prompt the pass@1 weight is ``lambda(x) = lambda + (1 - lambda) p(x)``, so the objective's weight on
    ``grad p(x)`` is ``omega(p) = lambda(x) + (1 - lambda(x)) k (1 - p)^(k-1) = lambda + (1 - lambda) (p + k (1 - p)^k)``,
    the derivative of ``lambda p + (1 - lambda) (p^2 / 2 - k/(k+1) (1 - p)^(k+1))``: a proper objective, increasing
    in p, that is pass@k on unsolved prompts (weight ``k`` at p = 0) and pass@1 on solved ones (weight 1 at p = 1).

    Estimator (derived here, checked by exact enumeration in tests/test_objective.py): with ``c'_i`` the number of
    successes among the *other* ``n - 1`` scored samples and ``A1_i = r_i - mean_{j != i} r_j`` (RLOO), any
    ``h(c'_i) A1_i`` has expected update ``E[h(c')] grad p`` because ``h(c'_i)`` and the baseline do not depend on
    sample i. Unbiased polynomial estimates from ``c' ~ Bin(n - 1, p)``: ``E[c'/(n-1)] = p`` and
    ``E[C(n-1-c', k) / C(n-1, k)] = (1 - p)^k``. So

    - pass@1 share ``(lambda + (1 - lambda) c'/(n-1)) A1_i``: expected update ``lambda(x) grad p``;
    - pass@k share ``(1 - lambda) k C(n-1-c', k) / C(n-1, k) A1_i``: expected update
      ``(1 - lambda(x)) k (1 - p)^(k-1) grad p``.

    Needs ``n - 1 >= k`` scored samples: groups with fewer get 0 in both shares (``(1 - p)^k`` has no unbiased
    estimate from fewer than ``k`` samples). Exact for 0/1 rewards; with continuous ``rewards`` the weights still come
    from ``success`` and multiply ``grad E[r]``.

    Args:
        rewards (`torch.Tensor` of shape `(P, G)`): the rewards of the RLOO factor (NaN = unscored).
        success (`torch.Tensor` of shape `(P, G)`): 0/1 correctness, NaN = unscored.
        k (`int`): the k of pass@k.
        hybrid_lambda (`float`): the lambda at p = 0, in [0, 1].

    Returns:
        ``(pass1_share[P, G], passk_share[P, G])`` in float64; the advantages are their sum.
    """
    if not 0.0 <= hybrid_lambda <= 1.0:
        raise ValueError(f"hybrid_lambda must lie in [0, 1], got {hybrid_lambda}.")
    valid = ~torch.isnan(success)
    n = valid.sum(dim=1, keepdim=True).to(torch.float64)  # (P, 1)
    s = success.nan_to_num(0.0).to(torch.float64)
    others = s.sum(dim=1, keepdim=True) - s  # (P, G): c'_i
    rate = others / (n - 1).clamp(min=1)
    miss_k = torch.exp(log_binom(n - 1 - others, torch.tensor(float(k))) - log_binom(n - 1, torch.tensor(float(k))))
    a1 = rloo_advantages(rewards.to(torch.float64))
    a1 = torch.where(valid & (n - 1 >= k), a1, torch.zeros_like(a1))
    lam = float(hybrid_lambda)
    return (lam + (1 - lam) * rate) * a1, (1 - lam) * k * miss_k.nan_to_num(0.0) * a1


def mix_objectives(
    objective: str,
    pass1: torch.Tensor,
    passk: torch.Tensor,
    *,
    hybrid_lambda: float = 0.7,
    success_rate: torch.Tensor | None = None,
    hybrid_adaptive: str = "off",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine pass@1 and pass@k advantages into the training objective.

    - ``"pass1"``: ``A = A_1``; ``"passk"``: ``A = A_k``.
    - ``"hybrid"`` (Barakat et al. 2026): ``A = lambda A_1 + (1 - lambda) A_k``; with
      ``hybrid_adaptive="success_rate"`` lambda is per prompt, ``lambda(x) = lambda + (1 - lambda) c/n`` (plug-in; the
      objective-scale version with exact expected update is :func:`adaptive_hybrid_parts`).
    - ``"combination"`` (Chen et al. 2025, Eq. 18): ``A = (c/n) A_k + (1 - c/n) A_1`` per prompt: pass@k dominates on
      easy prompts, pass@1 on hard ones.

    Args:
        objective (`str`): one of :data:`OBJECTIVES`.
        pass1, passk (`torch.Tensor` of shape `(P, G)`).
        hybrid_lambda (`float`): weight of pass@1 for ``"hybrid"``.
        success_rate (`torch.Tensor` of shape `(P,)`): ``c / n``, needed for ``"combination"`` and the adaptive hybrid.
        hybrid_adaptive (`str`): one of :data:`HYBRID_ADAPTIVE`.

    Returns:
        ``(advantages[P, G], weight_of_pass1[P])``.
    """
    P = pass1.shape[0]
    if objective == "pass1":
        w = torch.ones(P, dtype=pass1.dtype, device=pass1.device)
    elif objective == "passk":
        w = torch.zeros(P, dtype=pass1.dtype, device=pass1.device)
    elif objective == "hybrid":
        if not 0.0 <= hybrid_lambda <= 1.0:
            raise ValueError(f"hybrid_lambda must lie in [0, 1], got {hybrid_lambda}.")
        w = torch.full((P,), float(hybrid_lambda), dtype=pass1.dtype, device=pass1.device)
        if hybrid_adaptive == "success_rate":
            if success_rate is None:
                raise ValueError("hybrid_adaptive='success_rate' needs success_rate (c / n per prompt).")
            w = w + (1.0 - w) * success_rate.to(pass1.dtype).nan_to_num(0.0)
        elif hybrid_adaptive != "off":
            raise ValueError(f"Unknown hybrid_adaptive {hybrid_adaptive!r}. Valid: {', '.join(HYBRID_ADAPTIVE)}.")
    elif objective == "combination":
        if success_rate is None:
            raise ValueError("objective='combination' needs success_rate (c / n per prompt).")
        w = 1.0 - success_rate.to(pass1.dtype).nan_to_num(0.0)
    else:
        raise ValueError(f"Unknown objective {objective!r}. Valid objectives: {', '.join(OBJECTIVES)}.")
    return w[:, None] * pass1 + (1.0 - w[:, None]) * passk, w
