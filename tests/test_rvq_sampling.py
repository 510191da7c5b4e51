"""Level-wise RVQ decoding and the SoundStorm training mask (pure tensor code)."""

from __future__ import annotations

import pytest
import torch

from mmgen.errors import InvalidArgumentError
from mmgen.sampling import MaskGITSampler, RandomOrderSampler
from mmgen.sampling.rvq import frame_mask, generate_levels, level_steps, rvq_training_mask

MASK = 16


def test_level_steps_decrease_to_one():
    assert level_steps(4) == [12, 4, 2, 1]
    assert level_steps(6, first=8) == [8, 2, 1, 1, 1, 1]
    assert level_steps(1) == [12]
    with pytest.raises(InvalidArgumentError):
        level_steps(0)


def test_training_mask_structure():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, MASK, (64, 4, 30), generator=g)
    lengths = torch.randint(10, 31, (64,), generator=g)
    prompt = torch.randint(0, 8, (64,), generator=g)
    batch = rvq_training_mask(tokens, MASK, lengths=lengths, prompt_frames=prompt, generator=g)
    valid = frame_mask(lengths, 30)
    for b in range(64):
        level, p, n = int(batch.levels[b]), int(prompt[b]), int(lengths[b])
        loss = batch.loss_mask[b]
        assert loss.any() and bool(loss[level].any())
        assert not loss[torch.arange(4) != level].any()                    # loss on the chosen level only
        assert not loss[:, :p].any() and not loss[:, n:].any()             # never on the prompt or padding
        inputs = batch.inputs[b]
        assert torch.equal(inputs[:level, :n], tokens[b, :level, :n])      # coarser levels visible
        assert torch.equal(inputs[:, :p], tokens[b, :, :p])                # the prompt visible at every level
        assert (inputs[level + 1:, p:n] == MASK).all()                     # finer levels hidden after the prompt
        assert (inputs[:, n:] == MASK).all()                               # padding is [MASK]
        assert torch.equal(inputs[level][~loss[level] & valid[b]], tokens[b, level][~loss[level] & valid[b]])
        assert (inputs[level][loss[level]] == MASK).all()
    assert set(batch.levels.tolist()) == {0, 1, 2, 3}


def test_training_mask_level_weights_and_errors():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, MASK, (200, 3, 8), generator=g)
    batch = rvq_training_mask(tokens, MASK, level_weights=[1.0, 0.0, 0.0], generator=g)
    assert (batch.levels == 0).all()
    with pytest.raises(InvalidArgumentError, match="level_weights"):
        rvq_training_mask(tokens, MASK, level_weights=[1.0, 0.0])
    with pytest.raises(InvalidArgumentError, match="tokens"):
        rvq_training_mask(tokens[:, 0], MASK)


def _recording_logits(calls: list[tuple[int, torch.Tensor]], vocab: int = MASK):
    """A fake model that records (level, input grid) and prefers token id == level."""

    def logits_fn(tokens: torch.Tensor, level: int, step: int) -> torch.Tensor:
        calls.append((level, tokens.clone()))
        logits = torch.zeros(tokens.shape[0], tokens[0].numel(), vocab)
        logits[..., level] = 5.0
        return logits

    return logits_fn


def test_generate_levels_goes_coarse_first_with_fewer_steps():
    calls: list[tuple[int, torch.Tensor]] = []
    start = torch.full((2, 3, 10), MASK)
    out = generate_levels(MaskGITSampler(), _recording_logits(calls), start, MASK, steps=[5, 2, 1],
                          generator=torch.Generator().manual_seed(0))
    assert (out != MASK).all()
    assert [level for level, _ in calls] == [0] * 5 + [1] * 2 + [2]
    for level, grid in calls:
        assert (grid[:, level + 1:] == MASK).all()                         # finer levels still masked
        assert (grid[:, :level] != MASK).all()                             # coarser levels done
    first_level1 = next(grid for level, grid in calls if level == 1)
    assert torch.equal(first_level1[:, 0], out[:, 0])


@pytest.mark.parametrize("sampler", [MaskGITSampler(), RandomOrderSampler()])
def test_generate_levels_keeps_known_tokens(sampler):
    g = torch.Generator().manual_seed(3)
    original = torch.randint(0, MASK, (2, 4, 12), generator=g)
    span = torch.zeros(12, dtype=torch.bool)
    span[4:8] = True
    start = original.masked_fill(span[None, None, :], MASK)
    out = generate_levels(sampler, _recording_logits([]), start, MASK, generator=g)
    assert torch.equal(out[..., ~span], original[..., ~span])              # outside the span: unchanged
    assert (out[..., span] != MASK).all()


def test_generate_levels_leaves_padding_and_checks_steps():
    start = torch.full((2, 2, 6), MASK)
    valid = frame_mask(torch.tensor([6, 3]), 6)
    out = generate_levels(MaskGITSampler(), _recording_logits([]), start, MASK, steps=[2, 1], valid_frames=valid)
    assert (out[1, :, 3:] == MASK).all() and (out[0] != MASK).all()
    with pytest.raises(InvalidArgumentError, match="level_steps"):
        generate_levels(MaskGITSampler(), _recording_logits([]), start, MASK, steps=[2])
    with pytest.raises(InvalidArgumentError, match="level_steps"):
        generate_levels(MaskGITSampler(), _recording_logits([]), start, MASK, steps=[2, 0])


def test_generate_levels_is_reproducible():
    start = torch.full((1, 2, 9), MASK)

    def noisy(tokens, level, step):
        return torch.randn(1, tokens[0].numel(), MASK, generator=torch.Generator().manual_seed(step + 10 * level))

    a = generate_levels(MaskGITSampler(), noisy, start, MASK, generator=torch.Generator().manual_seed(5))
    b = generate_levels(MaskGITSampler(), noisy, start, MASK, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
