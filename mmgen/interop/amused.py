"""diffusers aMUSEd folders → mmgen: the U-ViT transformer, the VQ tokenizer, the CLIP text encoder, the sampler.

An aMUSEd folder (what ``AmusedPipeline.save_pretrained`` writes, and the layout of amused/amused-256)::

    model_index.json     {"_class_name": "AmusedPipeline", ...}
    transformer/         UVit2DModel   → :class:`mmgen.models.uvit.UVitTransformer` (weights renamed, q/k/v fused)
    vqvae/               VQModel       → :class:`mmgen.tokenizers.image.ImageTokenizer` (see diffusers_vq)
    text_encoder/        CLIPTextModelWithProjection  ┐
    tokenizer/           CLIPTokenizer                ┘ → :class:`mmgen.conditioning.hf_clip.HFCLIPTextEncoder`
    scheduler/           AmusedScheduler (mask id, schedule) → sampling defaults

:func:`load_amused_pipeline` opens such a folder as mmgen's text-to-image pipeline; ``mmgen convert amused``
saves that pipeline in mmgen's own format. aMUSEd's VQ works on pixels in [0, 1]: the imported tokenizer is marked
``pixel_range="0..1"`` and shifts inside encode/decode, so mmgen's [-1, 1] API holds and the convolutions (zero
padding at the image border included) compute exactly what diffusers' do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmgen.errors import CheckpointError

if TYPE_CHECKING:
    from mmgen.models.uvit import UVitConfig, UVitTransformer

AMUSED_PIPELINES = ("AmusedPipeline", "AmusedImg2ImgPipeline", "AmusedInpaintPipeline")
MODEL_INDEX = "model_index.json"
# aMUSEd's AmusedPipeline call defaults (diffusers 0.33 - 0.42).
AMUSED_DEFAULTS = {"num_steps": 12, "guidance_scale": 10.0, "choice_temperature": (2.0, 0.0), "aesthetic_score": 6.0}

# diffusers UVit2DModel config key -> UVitConfig field
_CONFIG_KEYS = {
    "codebook_size": "codebook_size", "vocab_size": "vocab_size", "hidden_size": "dim",
    "num_hidden_layers": "depth", "num_attention_heads": "num_heads", "intermediate_size": "mlp_dim",
    "in_channels": "embed_dim", "block_out_channels": "conv_dim", "num_res_blocks": "num_res_blocks",
    "block_num_heads": "block_num_heads", "downsample": "downsample", "upsample": "upsample",
    "encoder_hidden_size": "context_dim", "cond_embed_dim": "pooled_dim",
    "micro_cond_encode_dim": "micro_cond_encode_dim", "micro_cond_embed_dim": "micro_cond_embed_dim",
    "use_bias": "use_bias", "layer_norm_eps": "norm_eps", "ln_elementwise_affine": "norm_affine",
    "hidden_dropout": "dropout", "attention_dropout": "attention_dropout",
}
# whole-name prefixes, diffusers -> mmgen (first match wins)
_RENAMES = (
    ("encoder_proj_layer_norm.", "context_norm."), ("encoder_proj.", "context_proj."),
    ("embed.layer_norm.", "embed.norm."), ("embed.conv.", "embed.proj."),
    ("down_block.", "down."), ("up_block.", "up."), ("transformer_layers.", "layers."),
    ("project_to_hidden_norm.", "to_hidden_norm."), ("project_to_hidden.", "to_hidden."),
    ("project_from_hidden_norm.", "from_hidden_norm."), ("project_from_hidden.", "from_hidden."),
    ("mlm_layer.conv1.", "head.proj."), ("mlm_layer.layer_norm.", "head.norm."), ("mlm_layer.conv2.", "head.out."),
)
_ATTENTION = re.compile(r"^(?P<module>.+\.attn[12])\.(?P<part>to_q|to_k|to_v|to_out\.0)\.(?P<kind>weight|bias)$")
_FF = {".ff.net.0.proj.": ".ff.proj.", ".ff.net.2.": ".ff.out."}


def uvit_config_from_diffusers(dconfig: dict[str, Any], *, mask_id: int | None = None,
                               image_size: int | None = None) -> UVitConfig:
    """A diffusers ``UVit2DModel`` config dict → :class:`UVitConfig` (``image_size`` fills the micro-conds)."""
    from mmgen.models.uvit import UVitConfig

    fields = {ours: dconfig[theirs] for theirs, ours in _CONFIG_KEYS.items() if theirs in dconfig}
    grid = int(dconfig.get("sample_size", 16))
    size = float(image_size or grid * 16)
    return UVitConfig(**fields, grid=(grid, grid), mask_id=mask_id,
                      default_micro_conds=(size, size, 0.0, 0.0, AMUSED_DEFAULTS["aesthetic_score"]))


def _rename(key: str) -> str:
    for old, new in _RENAMES:
        if key.startswith(old):
            key = new + key[len(old):]
            break
    for old, new in _FF.items():
        key = key.replace(old, new)
    return key


def uvit_state_from_diffusers(state: dict[str, torch.Tensor], own_keys: set[str]) -> dict[str, torch.Tensor]:
    """Rename a ``UVit2DModel`` state dict to :class:`UVitTransformer` names: 1x1 convs become linears, an
    attention's q/k/v become ``qkv`` (self-attention) or ``to_q`` + ``to_kv`` (cross-attention)."""
    out: dict[str, torch.Tensor] = {}
    attention: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _ATTENTION.match(key)
        if match:
            attention.setdefault((_rename(match["module"] + ".x")[:-2], match["kind"]), {})[match["part"]] = value
            continue
        value = value.flatten(1) if key.startswith(("embed.conv.", "mlm_layer.conv")) and value.ndim == 4 else value
        out[_rename(key)] = value
    for (module, kind), parts in attention.items():
        out[f"{module}.proj.{kind}"] = parts["to_out.0"]
        if f"{module}.qkv.{kind}" in own_keys:
            out[f"{module}.qkv.{kind}"] = torch.cat([parts["to_q"], parts["to_k"], parts["to_v"]])
        else:
            out[f"{module}.to_q.{kind}"] = parts["to_q"]
            out[f"{module}.to_kv.{kind}"] = torch.cat([parts["to_k"], parts["to_v"]])
    return out


def uvit_from_diffusers(source: Any, *, mask_id: int | None = None, image_size: int | None = None) -> UVitTransformer:
    """A :class:`UVitTransformer` with the weights of a diffusers ``UVit2DModel`` (module or folder)."""
    from mmgen.models.uvit import UVitTransformer

    if not isinstance(source, torch.nn.Module):
        source = _load_diffusers_uvit(Path(source))
    model = UVitTransformer(uvit_config_from_diffusers(dict(source.config), mask_id=mask_id, image_size=image_size))
    own = model.state_dict()
    state = uvit_state_from_diffusers({k: v.detach().float() for k, v in source.state_dict().items()}, set(own))
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"UVit2DModel weights do not map: missing {missing[:4]}, unexpected {unexpected[:4]}")
    model.load_state_dict(state)
    return model.eval()


def _load_diffusers_uvit(folder: Path) -> torch.nn.Module:
    from diffusers import UVit2DModel

    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: no config.json (expected a diffusers UVit2DModel folder)")
    try:
        return UVit2DModel.from_pretrained(str(folder), local_files_only=True).eval()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{folder}: not a loadable UVit2DModel ({str(exc).splitlines()[0]})") from None


def read_model_index(directory: str | Path) -> dict[str, Any] | None:
    """The ``model_index.json`` of an aMUSEd folder, or None when ``directory`` is not one."""
    index = Path(directory) / MODEL_INDEX
    if not index.is_file():
        return None
    try:
        data = json.loads(index.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{index}: unreadable ({exc})") from None
    return data if data.get("_class_name") in AMUSED_PIPELINES else None


def is_amused_folder(directory: str | Path) -> bool:
    return read_model_index(directory) is not None


def sampling_defaults(scheduler_config: dict[str, Any]) -> Any:
    """AmusedPipeline's call defaults as mmgen :class:`SamplingOptions` (the mask schedule from the scheduler)."""
    from mmgen.pipelines.maskgit import SamplingOptions

    schedule = scheduler_config.get("masking_schedule", "cosine")
    if schedule not in ("cosine", "linear"):
        raise CheckpointError(f"AmusedScheduler masking_schedule={schedule!r}: expected 'cosine' or 'linear'")
    return SamplingOptions(num_steps=AMUSED_DEFAULTS["num_steps"], sampler="maskgit", schedule=schedule,
                           temperature=1.0, choice_temperature=AMUSED_DEFAULTS["choice_temperature"],
                           guidance_scale=AMUSED_DEFAULTS["guidance_scale"])


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (an aMUSEd folder holds {', '.join(_COMPONENTS)})")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None


_COMPONENTS = ("model_index.json", "transformer/", "vqvae/", "text_encoder/", "tokenizer/", "scheduler/")


def amused_text_encoder(model: torch.nn.Module, tokenizer: Any, *, source: str | Path | None = None) -> Any:
    """aMUSEd's text side: penultimate CLIP layer, padded to max length, padding attended (no mask)."""
    from mmgen.conditioning.hf_clip import HFCLIPOptions, HFCLIPTextEncoder

    options = HFCLIPOptions(hidden_layer=-2, padding="max_length", mask_padding=False)
    return HFCLIPTextEncoder(model, tokenizer, options, source=source)


def pipeline_from_diffusers(pipe: Any) -> Any:
    """An in-memory diffusers ``AmusedPipeline`` → mmgen's ``TextToImagePipeline`` (weights copied)."""
    from mmgen.tokenizers.image import ImageTokenizer

    tokenizer = ImageTokenizer.from_diffusers(pipe.vqvae)
    return _assemble(pipe.transformer, tokenizer, amused_text_encoder(pipe.text_encoder, pipe.tokenizer),
                     dict(pipe.scheduler.config))


def _assemble(uvit: torch.nn.Module | Path, tokenizer: Any, text_encoder: Any, scheduler: dict[str, Any],
              device: str | torch.device = "cpu") -> Any:
    from mmgen.pipelines.text_to_image import TextToImagePipeline

    tokenizer.config.pixel_range = "0..1"  # aMUSEd's VQ works on [0, 1] pixels; mmgen's API stays [-1, 1]
    config = dict(uvit.config) if isinstance(uvit, torch.nn.Module) else _read_json(uvit / "config.json")
    transformer = uvit_from_diffusers(uvit, mask_id=int(scheduler["mask_token_id"]),
                                      image_size=int(config.get("sample_size", 16)) * tokenizer.downsample_factor)
    return TextToImagePipeline(transformer.to(device), tokenizer.to(device), text_encoder.to(device),
                               sampling_defaults(scheduler), micro_conds=list(transformer.config.default_micro_conds))


def load_amused_pipeline(directory: str | Path, *, device: str | torch.device = "cpu") -> Any:
    """Open a diffusers aMUSEd folder as mmgen's :class:`~mmgen.pipelines.text_to_image.TextToImagePipeline`."""
    from mmgen.conditioning.hf_clip import HFCLIPTextEncoder
    from mmgen.tokenizers.image import ImageTokenizer

    directory = Path(directory)
    if read_model_index(directory) is None:
        raise CheckpointError(f"{directory}: not an aMUSEd folder (model_index.json naming one of "
                              f"{', '.join(AMUSED_PIPELINES)})")
    scheduler = _read_json(directory / "scheduler" / "scheduler_config.json")
    tokenizer = ImageTokenizer.from_diffusers(directory / "vqvae")
    clip = HFCLIPTextEncoder.from_pretrained(directory / "text_encoder")
    text_encoder = amused_text_encoder(clip.model, clip.tokenizer, source=directory / "text_encoder")
    return _assemble(directory / "transformer", tokenizer, text_encoder, scheduler, device)


def convert_amused(source: str | Path, out: str | Path, *, dtype: torch.dtype | None = None) -> Path:
    """Save an aMUSEd folder in mmgen's pipeline format (text encoder copied to ``out/text_encoder``)."""
    pipe = load_amused_pipeline(source)
    out = Path(out)
    pipe.text_encoder.save_pretrained(out / "text_encoder", dtype=dtype)
    pipe.text_encoder.source = "text_encoder"  # the spec in pipeline.json is relative to the pipeline folder
    return pipe.save_pretrained(out, dtype=dtype)
