"""``mmgen tokenize encode|decode``: images ↔ token grids with a saved image tokenizer (audio: see tokenize_audio).

    mmgen tokenize encode --model DIR a.png b.png --out tokens.npy      # int64 [N, h, w]
    mmgen tokenize decode --model DIR tokens.npy --out recon/             # recon/000000.png ...

``--model`` is an mmgen tokenizer folder (config.json + model.safetensors) or a diffusers ``VQModel`` folder
(aMUSEd pipeline folders with a ``vqvae/`` subfolder work too).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmgen.cli.args import existing_path


def register(sub: Any) -> None:
    parser = sub.add_parser("tokenize", help="encode images to tokens / decode tokens to images",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    enc = actions.add_parser("encode", help="images → tokens.npy (int64 [N, h, w])")
    enc.add_argument("--model", required=True, type=existing_path, help="tokenizer folder (mmgen or diffusers)")
    enc.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...) or, for an audio tokenizer, "
                     "audio files (WAV, FLAC)")
    enc.add_argument("--out", required=True, type=Path, help="output .npy file")
    enc.add_argument("--size", type=int, default=None, help="resize to SIZE x SIZE (default: the model's size)")
    enc.add_argument("--bandwidth", type=float, default=None, metavar="KBPS",
                     help="audio: kbit/s, picks the number of RVQ levels (default: all levels)")
    enc.set_defaults(func=run_encode)
    dec = actions.add_parser("decode", help="tokens.npy → PNG images")
    dec.add_argument("--model", required=True, type=existing_path, help="tokenizer folder (mmgen or diffusers)")
    dec.add_argument("tokens", type=Path, help="a .npy file of int token ids [N, h, w] (or [h, w])")
    dec.add_argument("--out", required=True, type=Path, help="output folder for NNNNNN.png (audio: NNNNNN.wav)")
    dec.set_defaults(func=run_decode)
    shards = actions.add_parser("shards", help="image shards → pre-tokenized shards (tokens.npy + labels)")
    shards.add_argument("--model", required=True, type=existing_path, help="tokenizer folder (mmgen or diffusers)")
    shards.add_argument("--data", required=True, type=existing_path, help="image shards folder (train-*, holdout-*)")
    shards.add_argument("--out", required=True, type=Path, help="output shards folder")
    shards.set_defaults(func=run_shards)


def run_shards(args: argparse.Namespace) -> int:
    import torch

    from mmgen.tokenizers.pretokenize import tokenize_shards

    with torch.no_grad():
        counts = tokenize_shards(load_tokenizer(args.model), args.data, args.out)
    print(f"wrote tokens of {counts} samples to {args.out}")
    return 0


def load_tokenizer(path: Path) -> Any:
    """An :class:`ImageTokenizer` from an mmgen folder, or from a diffusers VQModel / aMUSEd folder."""
    from mmgen.errors import CheckpointError
    from mmgen.pretrained import read_config_json
    from mmgen.registry import load_pretrained
    from mmgen.tokenizers.image import ImageTokenizer

    path = Path(path)
    config_file = path / "config.json"
    if config_file.is_file() and read_config_json(path).get("model_type") is not None:
        model = load_pretrained(path)
        if not isinstance(model, ImageTokenizer):
            raise CheckpointError(f"{path}: holds a {type(model).__name__}, not an image tokenizer")
        return model
    return ImageTokenizer.from_diffusers(path)


def read_image(path: Path, channels: int, size: int) -> Any:
    """An image file → float [C, size, size] in [-1, 1]; :class:`DataError` naming the file if unreadable."""
    from mmgen.data import decode_image
    from mmgen.errors import DataError
    from mmgen.training.tasks.image_tokenizer import TokenizerImages

    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        image = decode_image(path.read_bytes())
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, ValueError... for non-images
        raise DataError(f"{path}: not a readable image ({type(exc).__name__})") from None
    return TokenizerImages(size, channels, train=False).prepare(image)


def run_encode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from mmgen.cli.tokenize_audio import load_audio_tokenizer, run_encode_audio
    from mmgen.errors import InvalidArgumentError

    audio_tokenizer = load_audio_tokenizer(args.model)
    if audio_tokenizer is not None:
        return run_encode_audio(args, audio_tokenizer)
    tokenizer = load_tokenizer(args.model)
    size = args.size or tokenizer.config.image_size
    if size % tokenizer.downsample_factor:
        raise InvalidArgumentError("--size", f"a multiple of the downsampling factor {tokenizer.downsample_factor}",
                                   size)
    images = torch.stack([read_image(p, tokenizer.config.in_channels, size) for p in args.images])
    tokens = torch.cat([tokenizer.encode(chunk) for chunk in images.split(64)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, tokens.numpy().astype(np.int64))
    print(f"{args.out}: {tuple(tokens.shape)} tokens (codebook {tokenizer.codebook_size}) from "
          f"{len(args.images)} image(s)")
    return 0


def read_tokens(path: Path, layout: str = "[N, h, w] or [h, w]") -> Any:
    """A .npy file of 2-D or 3-D integer ids → LongTensor with a batch axis (``[N, h, w]``; audio ``[N, q, n]``).

    Raises :class:`DataError` for unreadable, non-integer or wrongly shaped files (``layout`` names what was expected).
    """
    import numpy as np
    import torch

    from mmgen.errors import DataError

    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy token file ({exc})") from None
    if array.dtype.kind not in "iu":
        raise DataError(f"{path}: expected integer token ids, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise DataError(f"{path}: expected token ids {layout}, got shape {array.shape}")
    return torch.from_numpy(array.astype(np.int64))


def run_decode(args: argparse.Namespace) -> int:
    from torchvision.utils import save_image

    from mmgen.cli.tokenize_audio import load_audio_tokenizer, run_decode_audio

    audio_tokenizer = load_audio_tokenizer(args.model)
    if audio_tokenizer is not None:
        return run_decode_audio(args, audio_tokenizer)
    tokenizer = load_tokenizer(args.model)
    tokens = read_tokens(args.tokens)
    args.out.mkdir(parents=True, exist_ok=True)
    for start in range(0, tokens.shape[0], 64):
        images = tokenizer.decode(tokens[start: start + 64]).clamp(-1, 1)
        for offset, image in enumerate(images):
            save_image((image + 1) / 2, str(args.out / f"{start + offset:06d}.png"))
    print(f"{args.out}: {tokens.shape[0]} image(s) of {tokens.shape[1] * tokenizer.downsample_factor}x"
          f"{tokens.shape[2] * tokenizer.downsample_factor}")
    return 0
