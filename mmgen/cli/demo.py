"""``mmgen demo``: generation and editing with the shipped models: MNIST digits (class-conditional MaskGIT) and
text-to-image on the built-in shapes scenes (Muse-style, MiniLM text encoder), and text-to-speech.

Writes, in about a minute on CPU:

* ``samples.png``  — a 10x8 grid, one row per digit class (MaskGIT, 8 steps, guidance 2);
* ``inpaint.png``  — held-out digits | mask | inpainted (the masked half regenerated as the same class);
* ``outpaint.png`` — held-out digits | canvas extended 3 tokens to the right;
* ``text_to_image.png`` — one captioned row per held-out prompt (wordings and object pairs never seen in training);
* ``edit.png`` — a generated scene | the same scene edited towards a new prompt (mask-free, Muse-style);
* ``speech.wav`` + ``speech.png`` — a new sentence spoken by the shipped masked TTS model (RVQ tokens of the shipped
  speech codec), next to espeak-ng's rendering of it (skipped with a notice when espeak-ng is not installed).

``mmgen demo --train`` first retrains the judge, tokenizer and MaskGIT from scratch on the shipped MNIST data with
the recipes in assets/README.md (about an hour on a busy 2-core CPU) and uses those instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmgen.cli.args import positive_int

SHAPES_DATA_SEED = 1  # the seed of the shapes data the shipped model was trained on (held-out pairs follow it)

# The recipes that produced the shipped assets (see assets/README.md); `--train` reruns them.
RECIPES: dict[str, list[str]] = {
    "judge": ["classifier", "steps=1500", "batch_size=64", "lr=2e-3", "warmup_steps=100", "ema_decay=0.999",
              "eval_every=500", "ckpt_every=500", "log_every=50"],
    "tokenizer": ["image-tokenizer", "steps=1200", "batch_size=16", "lr=1e-3", "warmup_steps=100", "precision=bf16",
                  "eval_every=300", "sample_every=1200", "ckpt_every=300", "log_every=50"],
    "maskgit": ["maskgit", "steps=1000", "batch_size=64", "lr=1e-3", "warmup_steps=150", "precision=bf16",
                "ema_decay=0.999", "eval_every=1000", "sample_every=500", "ckpt_every=500", "log_every=50"],
}


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="generate and edit MNIST digits with the shipped models",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--train", action="store_true", help="retrain every model from scratch first (slow)")
    parser.add_argument("--steps", type=positive_int, default=8, help="decoding steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def _train_all(out: Path) -> Path:
    """Rerun the shipped recipes into ``out/train``; returns the pipeline folder."""
    from mmgen.cli.main import main as cli

    data, runs = out / "train" / "mnist", out / "train"
    if not (data / "dataset.json").is_file():
        cli(["data", "mnist", "--out", str(data)])
    judge, tokenizer = str(runs / "judge" / "model"), str(runs / "tokenizer" / "model")
    for name, recipe in RECIPES.items():
        source, extra = data, []
        if name == "maskgit":  # train on pre-tokenized shards: the tokenizer runs once, not every step
            source = runs / "mnist-tokens"
            cli(["tokenize", "shards", "--model", tokenizer, "--data", str(data), "--out", str(source)])
            extra = ["--tokenizer", tokenizer, "--judge", judge]
        if cli(["train", recipe[0], "--data", str(source), "--out", str(runs / name), *extra, *recipe[1:]]) != 0:
            raise SystemExit(2)
    from mmgen.pipelines.maskgit import MaskGITPipeline
    from mmgen.registry import load_pretrained

    pipe = MaskGITPipeline(load_pretrained(runs / "maskgit" / "model"), load_pretrained(runs / "tokenizer" / "model"))
    return pipe.save_pretrained(runs / "pipeline")


def _examples(count: int, seed: int) -> tuple[Any, Any]:
    """``count`` held-out MNIST digits as [count, 1, 28, 28] in [-1, 1] and their labels."""
    import torch

    from mmgen.data.builtin import mnist_arrays

    _, _, images, labels = mnist_arrays(seed=0, holdout=500)
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    return torch.from_numpy(images[pick.numpy()]).float()[:, None] / 127.5 - 1, torch.from_numpy(labels[pick.numpy()])


def _strip_rows(rows: list[list[Any]], path: Path, zoom: int = 3) -> Path:
    """Save rows of PIL images (one row per example) as one picture."""
    from mmgen.pipelines.images import image_grid, upscale

    image_grid([upscale(img, zoom) for row in rows for img in row], nrow=len(rows[0])).save(path)
    return path


def _text_to_image(out: Path, seed: int) -> list[tuple[str, Path]]:
    """The shipped shapes text-to-image model: held-out prompts, and a mask-free edit."""
    import torch

    from mmgen.assets import SHAPES_MUSE, asset_path
    from mmgen.data.shapes import heldout_prompts
    from mmgen.pipelines import load_pipeline
    from mmgen.pipelines.editing import edit
    from mmgen.pipelines.images import caption_rows, image_grid, save_prompt_grid, upscale

    pipe = load_pipeline(asset_path(SHAPES_MUSE))
    prompts = heldout_prompts(6, seed=SHAPES_DATA_SEED)
    grid = save_prompt_grid(pipe, prompts, out / "text_to_image.png", per_prompt=6, zoom=3, seed=seed)
    g = torch.Generator().manual_seed(seed)
    pairs = [("a red circle on the left", "a blue circle on the left"),
             ("a large green square in the center", "a large yellow square in the center")]
    source = pipe([a for a, _ in pairs], generator=g)
    edited = edit(pipe, source.pixels, [b for _, b in pairs], strength=0.5, rounds=2, generator=g)
    cells = [upscale(img, 3) for row in zip(source.images, edited.images) for img in row]
    captions = [f"{a}  ->  {b}" for a, b in pairs]
    edit_path = out / "edit.png"
    caption_rows(image_grid(cells, nrow=2), captions, cells[0].height, width=340).save(edit_path)
    return [("text-to-image (held-out prompts)", grid), ("mask-free edit (source | edited)", edit_path)]


SPEECH_TEXT = "Masked generative models fill in the missing tokens, a few at a time."


def _speech(out: Path, seed: int) -> list[tuple[str, Path]]:
    """The shipped TTS pipeline speaks a sentence it never saw; WAV + mel PNG (espeak-ng's rendering above)."""
    import shutil

    import torch

    from mmgen.assets import SPEECH_TTS, asset_path
    from mmgen.data.audio_io import save_audio
    from mmgen.data.speech import speak
    from mmgen.eval.audio_metrics import save_mel_png
    from mmgen.pipelines import load_pipeline

    if shutil.which("espeak-ng") is None:  # the phoneme front end needs it (the Makefile installs it)
        print("speech: skipped (espeak-ng is not installed)")
        return []
    pipe = load_pipeline(asset_path(SPEECH_TTS))
    spoken = pipe.speak(SPEECH_TEXT, generator=torch.Generator().manual_seed(seed))
    wav = save_audio(out / "speech.wav", spoken.wav, spoken.sample_rate)
    reference = speak(SPEECH_TEXT, sample_rate=spoken.sample_rate)
    png = save_mel_png([(f"espeak-ng: {SPEECH_TEXT}", reference.wav[None]),
                        (f"mmgen speak ({spoken.seconds:.1f} s)", spoken.wav)], spoken.sample_rate, out / "speech.png")
    return [("text-to-speech (wav)", wav), ("text-to-speech (espeak-ng | mmgen)", png)]


def run(args: argparse.Namespace) -> int:
    import torch

    from mmgen.assets import MNIST_MASKGIT, asset_path
    from mmgen.pipelines import load_pipeline
    from mmgen.pipelines.editing import inpaint, outpaint
    from mmgen.pipelines.images import save_class_grid, to_pil

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(_train_all(out) if args.train else asset_path(MNIST_MASKGIT))
    options = {"num_steps": args.steps, "guidance_scale": 2.0}
    samples = save_class_grid(pipe, out / "samples.png", per_class=8, zoom=3, seed=args.seed, **options)
    images, labels = _examples(6, args.seed)
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 14:, :] = 1  # regenerate the bottom half
    g = torch.Generator().manual_seed(args.seed)
    inpainted = inpaint(pipe, images, mask, labels, generator=g, **options)
    masked = images.masked_fill(mask.bool().expand_as(images), 0.0)
    rows = [[a, b, c] for a, b, c in zip(to_pil(images), to_pil(masked), inpainted.images)]
    inpaint_path = _strip_rows(rows, out / "inpaint.png")
    extended = outpaint(pipe, images, "right", 3, labels, generator=g, **options)
    outpaint_path = _strip_rows([[a, b] for a, b in zip(to_pil(images), extended.images)], out / "outpaint.png")
    text_outputs = _text_to_image(out, args.seed)
    speech_outputs = _speech(out, args.seed)
    print("outputs:")
    for name, path in (("samples (rows = classes 0-9)", samples), ("inpainting", inpaint_path),
                       ("outpainting", outpaint_path), *text_outputs, *speech_outputs):
        print(f"  {name:36s} {path}")
    return 0
