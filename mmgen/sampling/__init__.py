"""Mask schedules, training-time masking, samplers, categorical draws and classifier-free guidance.

Pure tensor code (no weights): it serves any flattened token grid ``[B, N]`` (images, video, audio RVQ levels).
See ``samplers`` for the sampling loop and ``masking`` for the training side; both take the same schedule.
"""

from mmgen.sampling.categorical import (
    check_sampling_options,
    filter_top_k,
    filter_top_p,
    gumbel_noise,
    sample_categorical,
    uniform_noise,
)
from mmgen.sampling.guidance import (
    GUIDANCE_SCHEDULES,
    apply_guidance,
    cfg_batch,
    cfg_dropout_mask,
    check_guidance_scale,
    guidance_scale_at,
    guided_logits,
    split_cfg_batch,
)
from mmgen.sampling.masking import (
    MaskedBatch,
    TrainingMasker,
    lowest_k_mask,
    mask_tokens,
    random_mask,
    sample_mask_ratios,
)
from mmgen.sampling.samplers import (
    SAMPLERS,
    MaskGITSampler,
    RandomOrderSampler,
    SamplerOutput,
    TokenSampler,
    anneal,
    create_sampler,
    run_sampler,
)
from mmgen.sampling.schedules import MaskSchedule, available_schedules, describe_schedule, get_schedule

__all__ = [
    "GUIDANCE_SCHEDULES",
    "SAMPLERS",
    "MaskGITSampler",
    "MaskSchedule",
    "MaskedBatch",
    "RandomOrderSampler",
    "SamplerOutput",
    "TokenSampler",
    "TrainingMasker",
    "anneal",
    "apply_guidance",
    "available_schedules",
    "cfg_batch",
    "cfg_dropout_mask",
    "check_guidance_scale",
    "check_sampling_options",
    "create_sampler",
    "describe_schedule",
    "filter_top_k",
    "filter_top_p",
    "get_schedule",
    "guidance_scale_at",
    "guided_logits",
    "gumbel_noise",
    "lowest_k_mask",
    "mask_tokens",
    "random_mask",
    "run_sampler",
    "sample_categorical",
    "sample_mask_ratios",
    "split_cfg_batch",
    "uniform_noise",
]
