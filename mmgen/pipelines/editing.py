"""Editing with any token pipeline: inpainting, outpainting (canvas extension) and variations (img2img).

All start from the image's tokens, mask some, and let the pipeline's decoding loop fill exactly those; the
tokens outside the mask are never changed, and the original pixels outside the edited region are pasted back
(optionally with a soft seam). ``condition`` is whatever the pipeline conditions on (class ids for a class pipeline,
prompts for a text pipeline; None = unconditional) and ``negative`` the unconditional branch of guidance.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from mmgen.errors import InvalidArgumentError
from mmgen.pipelines.images import to_pil
from mmgen.pipelines.maskgit import GenerationOutput, MaskGITPipeline
from mmgen.sampling.masking import lowest_k_mask

Direction = Literal["left", "right", "up", "down"]


def token_mask_from_pixels(mask: torch.Tensor, factor: int, *, dilate: int = 0, threshold: float = 0.5) -> torch.Tensor:
    """Pixel mask [B, 1, H, W] (1 = edit) → token mask [B, h, w] (True = regenerate).

    A token is masked when any pixel of its ``factor x factor`` cell is at least ``threshold``; ``dilate`` grows
    the token mask by that many tokens in every direction.
    """
    cells = F.max_pool2d((mask >= threshold).float(), factor, ceil_mode=True)
    if dilate > 0:
        cells = F.max_pool2d(cells, 2 * dilate + 1, stride=1, padding=dilate)
    return cells[:, 0] > 0


def blend(original: torch.Tensor, generated: torch.Tensor, pixel_mask: torch.Tensor, softness: int) -> torch.Tensor:
    """Paste ``original`` back outside ``pixel_mask`` [B,1,H,W]; ``softness`` pixels of box-blurred seam."""
    weight = pixel_mask.float()
    if softness > 0:
        weight = F.avg_pool2d(weight, 2 * softness + 1, stride=1, padding=softness, count_include_pad=False)
    return original * (1 - weight) + generated * weight


def _encode(pipe: MaskGITPipeline, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return pipe.image_tokenizer.encode(image.to(pipe.device))


def _finish(pipe: MaskGITPipeline, tokens: torch.Tensor, original: torch.Tensor | None,
            pixel_mask: torch.Tensor | None, softness: int, token_mask: torch.Tensor) -> GenerationOutput:
    pixels = pipe.decode(tokens)
    if original is not None and pixel_mask is not None:
        pixels = blend(original.to(pixels), pixels, pixel_mask.to(pixels), softness)
    return GenerationOutput(to_pil(pixels), tokens, pixels, {"token_mask": token_mask})


def inpaint(pipe: MaskGITPipeline, image: torch.Tensor, mask: torch.Tensor, condition: Any = None, *,
            negative: Any = None, dilate: int = 0, softness: int = 0, generator: torch.Generator | None = None,
            **options: Any) -> GenerationOutput:
    """Regenerate the masked region of ``image [B, C, H, W]`` (``mask [B|1, 1, H, W]``, 1 = regenerate)."""
    if tuple(mask.shape[-2:]) != tuple(image.shape[-2:]):
        raise InvalidArgumentError("mask", f"the image's size {tuple(image.shape[-2:])}", tuple(mask.shape[-2:]))
    mask = mask.expand(image.shape[0], 1, *image.shape[-2:])
    tokens = _encode(pipe, image)
    token_mask = token_mask_from_pixels(mask, pipe.image_tokenizer.downsample_factor, dilate=dilate).to(tokens.device)
    start = tokens.masked_fill(token_mask, pipe.transformer.mask_id)
    conditioning = pipe.condition(condition, image.shape[0], negative=negative)
    out = pipe.generate_tokens(start, conditioning, pipe.options(**options), generator)
    factor = pipe.image_tokenizer.downsample_factor
    cells = token_mask[:, None].float().repeat_interleave(factor, 2).repeat_interleave(factor, 3)
    return _finish(pipe, out, image, cells[..., :image.shape[-2], :image.shape[-1]], softness, token_mask)


def vary(pipe: MaskGITPipeline, image: torch.Tensor, strength: float, condition: Any = None, *,
         negative: Any = None, generator: torch.Generator | None = None, **options: Any) -> GenerationOutput:
    """img2img: re-mask a random ``strength`` fraction of the image's tokens and regenerate them."""
    if not 0.0 < strength <= 1.0:
        raise InvalidArgumentError("strength", "a fraction in (0, 1]", strength)
    tokens = _encode(pipe, image)
    flat = tokens.reshape(tokens.shape[0], -1)
    count = max(1, round(strength * flat.shape[1]))
    scores = torch.rand(flat.shape, generator=generator, device="cpu" if generator is None else generator.device)
    chosen = scores.argsort(dim=1)[:, :count].to(flat.device)
    token_mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, chosen, True).reshape(tokens.shape)
    start = tokens.masked_fill(token_mask, pipe.transformer.mask_id)
    conditioning = pipe.condition(condition, image.shape[0], negative=negative)
    out = pipe.generate_tokens(start, conditioning, pipe.options(**options), generator)
    return _finish(pipe, out, None, None, 0, token_mask)


def _window_starts(known: int, extra: int, window: int, step: int) -> list[int]:
    """Start offsets of windows along the extended axis that reveal ``extra`` new tokens after ``known`` ones."""
    starts, frontier = [], known
    while frontier < known + extra:
        reveal = min(step, known + extra - frontier)
        starts.append(frontier + reveal - window)
        frontier += reveal
    return starts


def outpaint(pipe: MaskGITPipeline, image: torch.Tensor, direction: Direction, extend: int, condition: Any = None,
             *, negative: Any = None, generator: torch.Generator | None = None, **options: Any) -> GenerationOutput:
    """Extend the canvas by ``extend`` tokens towards ``direction`` with overlapping windows of the model's grid.

    Each window keeps at least half of the model's grid as known context and reveals the rest.
    """
    if direction not in ("left", "right", "up", "down"):
        raise InvalidArgumentError("direction", "left, right, up or down", direction)
    if not isinstance(extend, int) or extend <= 0:
        raise InvalidArgumentError("extend", "a positive number of tokens", extend)
    tokens = _encode(pipe, image)
    axis = 2 if direction in ("left", "right") else 1
    flip = direction in ("left", "up")
    if flip:
        tokens = tokens.flip(axis)
    window, other = pipe.grid[axis - 1], pipe.grid[2 - axis]
    if tokens.shape[3 - axis] != other:
        raise InvalidArgumentError("image", f"{other} tokens across the extended axis (the model's grid "
                                   f"{pipe.grid})", tuple(tokens.shape[1:]))
    if tokens.shape[axis] < window // 2 + 1:
        raise InvalidArgumentError("image", f"at least {window // 2 + 1} tokens along the extended axis")
    known = tokens.shape[axis]
    pad = [0, 0, 0, 0]
    pad[1 if axis == 2 else 3] = extend
    canvas = F.pad(tokens, pad, value=pipe.transformer.mask_id)
    conditioning = pipe.condition(condition, image.shape[0], negative=negative)
    opts = pipe.options(**options)
    for start in _window_starts(known, extend, window, max(1, window // 2)):
        piece = canvas.narrow(axis, start, window)
        piece = piece.flip(axis) if flip else piece
        filled = pipe.generate_tokens(piece, conditioning, opts, generator)
        canvas.narrow(axis, start, window).copy_(filled.flip(axis) if flip else filled)
    canvas = canvas.flip(axis) if flip else canvas
    token_mask = canvas.new_zeros(canvas.shape, dtype=torch.bool)
    new = token_mask.narrow(axis, 0 if flip else known, extend)
    new.fill_(True)
    return _finish(pipe, canvas, None, None, 0, token_mask)


@torch.no_grad()
def token_log_likelihood(pipe: MaskGITPipeline, tokens: torch.Tensor, conditioning: Any, *, passes: int = 4,
                         guidance_scale: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """How likely the model finds each token of ``tokens [B, *grid]`` under ``conditioning``: float ``[B, N]``.

    Pseudo-log-likelihood: the positions are split into ``passes`` random groups; each group is masked in turn and
    scored by the (guided) log-probability of its original tokens given everything else.
    """
    flat = tokens.reshape(tokens.shape[0], -1).to(pipe.device)
    count = flat.shape[1]
    order = torch.randperm(count, generator=generator, device="cpu" if generator is None else generator.device)
    scores = torch.empty(flat.shape, dtype=torch.float32, device=flat.device)
    for group in order.to(flat.device).chunk(min(passes, count)):
        masked = flat.clone()
        masked[:, group] = pipe.transformer.mask_id
        logits = pipe.guided_logits(masked.reshape(tokens.shape), conditioning, guidance_scale)
        log_probs = logits[:, group].log_softmax(-1)
        scores[:, group] = log_probs.gather(-1, flat[:, group, None]).squeeze(-1)
    return scores


def edit(pipe: MaskGITPipeline, image: torch.Tensor, condition: Any, *, negative: Any = None,
         strength: float = 0.3, rounds: int = 1, passes: int = 4, generator: torch.Generator | None = None,
         **options: Any) -> GenerationOutput:
    """Mask-free editing (Muse): re-mask the ``strength`` fraction of tokens least likely under the new condition
    (a prompt for text pipelines) and regenerate them; ``rounds`` repeats score → re-mask → regenerate."""
    if not 0.0 < strength <= 1.0:
        raise InvalidArgumentError("strength", "a fraction in (0, 1]", strength)
    if not isinstance(rounds, int) or rounds <= 0:
        raise InvalidArgumentError("rounds", "a positive integer", rounds)
    tokens = _encode(pipe, image)
    opts = pipe.options(**options)
    conditioning = pipe.condition(condition, image.shape[0], negative=negative)
    count = max(1, round(strength * tokens[0].numel()))
    edited = torch.zeros_like(tokens, dtype=torch.bool)
    for _ in range(rounds):
        scores = token_log_likelihood(pipe, tokens, conditioning, passes=passes, generator=generator,
                                      guidance_scale=opts.guidance_scale)
        token_mask = lowest_k_mask(scores, torch.full((scores.shape[0],), count, device=scores.device))
        token_mask = token_mask.reshape(tokens.shape)
        edited |= token_mask
        tokens = pipe.generate_tokens(tokens.masked_fill(token_mask, pipe.transformer.mask_id), conditioning, opts,
                                      generator)
    return _finish(pipe, tokens, None, None, 0, edited)
