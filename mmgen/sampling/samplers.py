"""Samplers that turn a partly masked token grid into a full one in ``num_steps`` model calls.

One interface (like diffusers' schedulers, but for masked tokens); the pipeline owns the loop::

    sampler = MaskGITSampler("cosine")
    sampler.set_steps(8)
    tokens = torch.full((B, N), mask_id); is_masked = torch.ones(B, N, dtype=torch.bool)   # or partly given
    sampler.begin(is_masked)
    for t in sampler.timesteps:
        logits = model(tokens, ...)                          # [B, N, V], V = codebook_size
        out = sampler.step(t, logits, tokens, is_masked, generator=generator)
        tokens, is_masked = out.tokens, out.is_masked        # still-masked positions keep their input value

Rules every sampler keeps: positions that are not masked on input are never changed; each step unmasks at least
one token of every sample that still has masked ones; after step ``T - 1`` nothing is masked. After step t, exactly
``num_to_keep_masked(t)[b]`` positions of sample b stay masked: ``⌊γ((t+1)/T) · N0_b⌋`` where N0_b is the number
masked when :meth:`TokenSampler.begin` ran (editing starts partly unmasked, so N0 may differ per sample), lowered
where needed so each step unmasks >= 1 token, and 0 at the last step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

from mmgen.errors import InvalidArgumentError, check_positive_int
from mmgen.sampling.categorical import check_sampling_options, gumbel_noise, sample_categorical, uniform_noise
from mmgen.sampling.masking import lowest_k_mask
from mmgen.sampling.schedules import MaskSchedule, ScheduleLike, get_schedule

TemperatureLike = Union[float, tuple[float, float]]


@dataclass
class SamplerOutput:
    """What :meth:`TokenSampler.step` returns.

    Attributes:
        tokens: Long ``[B, N]``: newly unmasked positions filled; still-masked ones keep their input value (the
            mask id, when the caller put it there); positions unmasked on input unchanged.
        is_masked: Bool ``[B, N]``, the positions still masked after this step (a subset of the input's).
        confidence: float64 ``[B, N]``, the score that chose what to unmask (higher = unmasked first);
            +inf at positions that were not masked on input.
        sampled: Long ``[B, N]`` or None: the draw at *every* position masked on input (others unchanged), the
            sampler's current guess of the final grid, for previews (None when the sampler draws only the
            positions it unmasks).
    """

    tokens: Tensor
    is_masked: Tensor
    confidence: Tensor
    sampled: Tensor | None = None


def _check_temperature(name: str, value: TemperatureLike) -> TemperatureLike:
    pair = value if isinstance(value, (tuple, list)) else (value,)
    if len(pair) not in (1, 2) or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 for v in pair):
        raise InvalidArgumentError(name, "a number >= 0 or a (start, end) pair of them", value)
    return (float(pair[0]), float(pair[1])) if len(pair) == 2 else float(pair[0])


def anneal(value: TemperatureLike, step_index: int, num_steps: int) -> float:
    """``value`` at a step: a float is constant, ``(start, end)`` goes linearly from start (step 0) to end (T−1)."""
    if not isinstance(value, tuple):
        return float(value)
    start, end = value
    return start if num_steps == 1 else start + (end - start) * step_index / (num_steps - 1)


class TokenSampler:
    """Base class: step count, the per-step masked counts and the shared checks; subclasses define :meth:`_fill`.

    Args:
        schedule: mask schedule name or object deciding how many tokens stay masked after each step.
        temperature: sampling temperature, or ``(start, end)`` annealed linearly over the steps.
        top_k, top_p: filtering of each categorical (see :func:`~mmgen.sampling.categorical.sample_categorical`).
        num_steps: optional, the same as calling :meth:`set_steps`.

    A sampler holds only its settings, the step count and what :meth:`begin` recorded, so one object serves any
    number of calls (``step(0, ...)`` re-records from its ``is_masked``).
    """

    def __init__(self, schedule: ScheduleLike = "cosine", temperature: TemperatureLike = 1.0,
                 top_k: int | None = None, top_p: float | None = None, *, num_steps: int | None = None):
        self.schedule: MaskSchedule = get_schedule(schedule)
        self.temperature = _check_temperature("temperature", temperature)
        check_sampling_options(1.0, top_k, top_p)
        self.top_k, self.top_p = top_k, top_p
        self._num_steps: int | None = None
        self._initial_masked: Tensor | None = None
        if num_steps is not None:
            self.set_steps(num_steps)

    def set_steps(self, num_steps: int) -> None:
        """Use ``num_steps`` (> 0) model calls per generation."""
        self._num_steps = check_positive_int("num_steps", num_steps)

    @property
    def num_steps(self) -> int:
        """T, the number of steps (set by :meth:`set_steps`)."""
        if self._num_steps is None:
            raise RuntimeError(f"{type(self).__name__}: call set_steps(num_steps) before sampling")
        return self._num_steps

    @property
    def timesteps(self) -> list[int]:
        """The step indices to pass to :meth:`step`, in order: ``[0, 1, ..., T - 1]``."""
        return list(range(self.num_steps))

    @property
    def initial_masked(self) -> Tensor:
        """Long ``[B]``, N0 per sample as recorded by :meth:`begin`."""
        if self._initial_masked is None:
            raise RuntimeError(f"{type(self).__name__}: call begin(is_masked) (or step 0) first")
        return self._initial_masked

    def begin(self, is_masked: Tensor) -> None:
        """Record N0, the number of masked positions per sample, from Bool ``is_masked [B, N]``."""
        if is_masked.dtype != torch.bool or is_masked.ndim != 2:
            raise InvalidArgumentError("is_masked", "a bool [B, N] tensor", f"{is_masked.dtype} "
                                       f"{tuple(is_masked.shape)}")
        self._initial_masked = is_masked.sum(dim=1)

    def temperature_at(self, step_index: int) -> float:
        """The sampling temperature used at ``step_index``."""
        return anneal(self.temperature, step_index, self.num_steps)

    def keep_masked_table(self) -> Tensor:
        """Long ``[T, B]``: row t is :meth:`num_to_keep_masked` (t) for every sample.

        n_t = min(⌊γ((t+1)/T)·N0 + 1e-9⌋, n_{t−1} − 1) clamped at 0, with n_{−1} = N0 and n_{T−1} = 0
        (closed form: a running minimum of f_s + s, minus t). The 1e-9 guards against γ·N0 landing a rounding
        error below an integer.
        """
        steps, n0 = self.num_steps, self.initial_masked.to(torch.float64)
        progress = torch.arange(1, steps + 1, dtype=torch.float64, device=n0.device) / steps
        target = torch.floor(self.schedule(progress)[:, None] * n0[None, :] + 1e-9)
        offsets = torch.arange(-1, steps, dtype=torch.float64, device=n0.device)[:, None]
        bounded = torch.cat([n0[None, :], target], dim=0) + offsets
        table = bounded.cummin(dim=0).values[1:] - offsets[1:]
        table[-1] = 0
        return table.clamp(min=0).long()

    def num_to_keep_masked(self, step_index: int) -> Tensor:
        """Long ``[B]``, how many positions of each sample stay masked after step ``step_index``."""
        self._check_step_index(step_index)
        return self.keep_masked_table()[step_index]

    def _check_step_index(self, step_index: int) -> None:
        if isinstance(step_index, bool) or not isinstance(step_index, int) or not 0 <= step_index < self.num_steps:
            raise InvalidArgumentError("step_index", f"an integer in [0, {self.num_steps - 1}]", step_index)

    def _check_step_inputs(self, logits: Tensor, tokens: Tensor, is_masked: Tensor) -> None:
        if tokens.ndim != 2 or is_masked.shape != tokens.shape or is_masked.dtype != torch.bool:
            raise InvalidArgumentError("is_masked", f"a bool tensor shaped like tokens {tuple(tokens.shape)}",
                                       f"{is_masked.dtype} {tuple(is_masked.shape)}")
        if logits.ndim != 3 or logits.shape[:2] != tokens.shape:
            raise InvalidArgumentError("logits", f"a [B, N, V] tensor with [B, N] = {list(tokens.shape)}",
                                       tuple(logits.shape))

    def step(self, step_index: int, logits: Tensor, tokens: Tensor, is_masked: Tensor,
             generator: torch.Generator | None = None) -> SamplerOutput:
        """Unmask some positions of ``tokens`` using the model's ``logits``.

        Args:
            step_index: t in ``[0, T)``; step 0 (re)records N0 from ``is_masked`` like :meth:`begin`.
            logits: ``[B, N, V]`` model scores for every position (only masked positions are read).
            tokens: Long ``[B, N]``; masked positions may hold anything (usually the mask id).
            is_masked: Bool ``[B, N]``, True where the token is still to be generated.
            generator: the random stream; the same seed gives the same output.

        Returns:
            :class:`SamplerOutput` with ``is_masked.sum(1) == min(num_to_keep_masked(t), input count − 1)``.
        """
        self._check_step_index(step_index)
        self._check_step_inputs(logits, tokens, is_masked)
        if step_index == 0:
            self.begin(is_masked)
        elif self.initial_masked.shape[0] != tokens.shape[0]:
            raise InvalidArgumentError("tokens", f"the batch size given to begin ({self.initial_masked.shape[0]})",
                                       tokens.shape[0])
        current = is_masked.sum(dim=1)
        keep = torch.minimum(self.num_to_keep_masked(step_index).to(current.device), current - 1).clamp(min=0)
        return self._fill(step_index, logits, tokens, is_masked, keep, generator)

    def _draw(self, step_index: int, logits: Tensor, where: Tensor,
              generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Sample ids and their log-probs (float64) at the True positions of Bool ``where [B, N]`` → ``[M]``."""
        return sample_categorical(logits[where], self.temperature_at(step_index), self.top_k, self.top_p, generator)

    def _fill(self, step_index: int, logits: Tensor, tokens: Tensor, is_masked: Tensor, keep: Tensor,
              generator: torch.Generator | None) -> SamplerOutput:
        """Unmask all but ``keep[b]`` masked positions per sample (Long ``[B]``, each < the masked count or 0)."""
        raise NotImplementedError

    def _settings(self) -> str:
        return f"schedule={self.schedule.name!r}, temperature={self.temperature}, top_k={self.top_k}, " \
               f"top_p={self.top_p}, num_steps={self._num_steps}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._settings()})"


class MaskGITSampler(TokenSampler):
    """MaskGIT's confidence-based decoding (Chang et al. 2022), with aMUSEd's temperature annealing as an option.

    At step t every masked token is drawn from its categorical (float64); its confidence is
    ``log p(drawn) + τ_t · Gumbel`` (float64, p the model's temperature-1 probability), and the
    ``num_to_keep_masked(t)`` least confident positions are re-masked.

    Args:
        schedule: mask schedule (MaskGIT: cosine).
        temperature: sampling temperature, or ``(start, end)`` annealed linearly over the steps.
        choice_temperature: τ of the Gumbel noise on confidences: a float is annealed as
            ``τ_t = choice_temperature · (1 − (t+1)/T)`` (MaskGIT, 4.5); a ``(start, end)`` pair goes linearly
            from start at step 0 to end at step T−1 (aMUSEd's ``temperature=(2, 0)`` is this pair).
        top_k, top_p: filtering of each categorical.
        num_steps: optional, the same as calling :meth:`set_steps`.
    """

    def __init__(self, schedule: ScheduleLike = "cosine", temperature: TemperatureLike = 1.0,
                 choice_temperature: TemperatureLike = 4.5, top_k: int | None = None, top_p: float | None = None,
                 *, num_steps: int | None = None):
        super().__init__(schedule, temperature, top_k, top_p, num_steps=num_steps)
        self.choice_temperature = _check_temperature("choice_temperature", choice_temperature)

    def choice_temperature_at(self, step_index: int) -> float:
        """τ_t, the scale of the Gumbel noise added to confidences at ``step_index``."""
        if isinstance(self.choice_temperature, tuple):
            return anneal(self.choice_temperature, step_index, self.num_steps)
        return self.choice_temperature * (1.0 - (step_index + 1) / self.num_steps)

    def _fill(self, step_index: int, logits: Tensor, tokens: Tensor, is_masked: Tensor, keep: Tensor,
              generator: torch.Generator | None) -> SamplerOutput:
        ids, log_probs = self._draw(step_index, logits, is_masked, generator)
        tau = self.choice_temperature_at(step_index)
        if tau > 0 and ids.numel() > 0:
            log_probs = log_probs + tau * gumbel_noise(log_probs.shape, generator, device=log_probs.device)
        sampled = tokens.masked_scatter(is_masked, ids.to(tokens.dtype))
        confidence = torch.full(tokens.shape, math.inf, dtype=torch.float64, device=tokens.device)
        confidence = confidence.masked_scatter(is_masked, log_probs)
        still_masked = lowest_k_mask(confidence, keep)
        return SamplerOutput(torch.where(still_masked, tokens, sampled), still_masked, confidence, sampled)

    def _settings(self) -> str:
        return f"{super()._settings()}, choice_temperature={self.choice_temperature}"


class RandomOrderSampler(TokenSampler):
    """Random-order ("first-hitting") sampling from the masked-diffusion literature (MDLM, Zheng et al. 2024).

    At step t a uniformly random subset of the masked positions is unmasked (all but ``num_to_keep_masked(t)``)
    and only those positions are drawn from their categoricals; the order never looks at the model's confidence.
    With ``schedule="linear"`` and ``num_steps == N`` one token is revealed per step, the exact first-hitting
    sampler of a time-agnostic masked model. ``confidence`` in the output is the random priority in (0, 1).

    Args:
        temperature: sampling temperature, or ``(start, end)`` annealed linearly over the steps.
        top_k, top_p: filtering of each categorical.
        schedule: how many positions stay masked after each step (default linear: equal numbers per step).
        num_steps: optional, the same as calling :meth:`set_steps`.
    """

    def __init__(self, temperature: TemperatureLike = 1.0, top_k: int | None = None, top_p: float | None = None,
                 schedule: ScheduleLike = "linear", *, num_steps: int | None = None):
        super().__init__(schedule, temperature, top_k, top_p, num_steps=num_steps)

    def _fill(self, step_index: int, logits: Tensor, tokens: Tensor, is_masked: Tensor, keep: Tensor,
              generator: torch.Generator | None) -> SamplerOutput:
        priority = uniform_noise(tokens.shape, generator, device=tokens.device).masked_fill_(~is_masked, math.inf)
        still_masked = lowest_k_mask(priority, keep)
        reveal = is_masked & ~still_masked
        ids, _ = self._draw(step_index, logits, reveal, generator)
        return SamplerOutput(tokens.masked_scatter(reveal, ids.to(tokens.dtype)), still_masked, priority)


LogitsFn = Callable[[Tensor, int], Tensor]


def run_sampler(sampler: TokenSampler, logits_fn: LogitsFn, tokens: Tensor, is_masked: Tensor, *,
                num_steps: int | None = None, generator: torch.Generator | None = None,
                callback: Callable[[int, SamplerOutput], None] | None = None) -> Tensor:
    """Run the whole loop: ``logits = logits_fn(tokens, t)`` then ``sampler.step`` for every t.

    Args:
        sampler: any :class:`TokenSampler` (``num_steps`` given here calls ``set_steps`` first).
        logits_fn: ``(tokens [B, N], step_index) -> logits [B, N, V]`` (the model, guidance included).
        tokens: Long ``[B, N]`` with the mask id at masked positions.
        is_masked: Bool ``[B, N]``.
        callback: called after each step with ``(t, output)`` (progress bars, previews).

    Returns:
        Long ``[B, N]``, nothing masked.
    """
    if num_steps is not None:
        sampler.set_steps(num_steps)
    sampler.begin(is_masked)
    for t in sampler.timesteps:
        out = sampler.step(t, logits_fn(tokens, t), tokens, is_masked, generator=generator)
        tokens, is_masked = out.tokens, out.is_masked
        if callback is not None:
            callback(t, out)
    return tokens


SAMPLERS: dict[str, type[TokenSampler]] = {"maskgit": MaskGITSampler, "random": RandomOrderSampler}


def create_sampler(name: str, **kwargs: object) -> TokenSampler:
    """Build a sampler by name (``maskgit`` or ``random``) with its constructor's keyword arguments."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in SAMPLERS:
        raise InvalidArgumentError("sampler", f"one of {sorted(SAMPLERS)}", name)
    return SAMPLERS[key](**kwargs)  # type: ignore[arg-type]


__all__ = ["MaskGITSampler", "RandomOrderSampler", "SamplerOutput", "TokenSampler", "anneal",
           "create_sampler", "run_sampler"]
