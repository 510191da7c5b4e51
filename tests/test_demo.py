"""`mmgen demo` on the shipped assets writes its pictures (MNIST class-conditional + shapes text-to-image) and
speech."""

from __future__ import annotations

import shutil

import soundfile as sf
from PIL import Image

from mmgen.cli.main import main


def test_demo_writes_every_picture(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "4"]) == 0
    printed = capsys.readouterr().out
    for name in ("samples.png", "inpaint.png", "outpaint.png", "text_to_image.png", "edit.png"):
        assert str(tmp_path / name) in printed
        assert Image.open(tmp_path / name).size[0] > 28
    assert Image.open(tmp_path / "samples.png").size[1] > 10 * 28  # ten rows, one per class
    assert Image.open(tmp_path / "text_to_image.png").size[1] >= 6 * 32 * 3  # six captioned prompt rows, zoom 3
    if shutil.which("espeak-ng"):
        assert str(tmp_path / "speech.wav") in printed and str(tmp_path / "speech.png") in printed
        wav, rate = sf.read(tmp_path / "speech.wav")
        assert rate == 16000 and 2.0 < len(wav) / rate < 8.0 and abs(wav).max() > 0.01


def test_shipped_text_to_image_pipeline_follows_single_object_colors():
    """The shipped shapes model puts the prompt's color on the canvas (judged), for one-object prompts."""
    from mmgen.assets import SHAPES_MUSE, asset_path
    from mmgen.eval.prompt_match import load_shapes_judge, prompt_match
    from mmgen.eval.text_to_image import generate_for_prompts
    from mmgen.pipelines import load_pipeline

    pipe = load_pipeline(asset_path(SHAPES_MUSE))
    prompts = [f"a large {color} square in the center" for color in ("red", "green", "blue", "yellow")]
    pixels = generate_for_prompts(pipe, prompts, seed=0, num_steps=8)
    result = prompt_match(load_shapes_judge(), pixels, prompts)
    colors = [{c for c, _ in objects} for objects in result.found]
    assert sum(c == {want} for c, want in zip(colors, ("red", "green", "blue", "yellow"))) >= 3, colors
