"""`mmgen demo` on the shipped assets writes its three pictures."""

from __future__ import annotations

from PIL import Image

from mmgen.cli.main import main


def test_demo_writes_samples_inpainting_and_outpainting(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "4"]) == 0
    printed = capsys.readouterr().out
    for name in ("samples.png", "inpaint.png", "outpaint.png"):
        assert str(tmp_path / name) in printed
        assert Image.open(tmp_path / name).size[0] > 28
    assert Image.open(tmp_path / "samples.png").size[1] > 10 * 28  # ten rows, one per class
