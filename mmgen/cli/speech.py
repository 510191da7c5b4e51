"""``mmgen speak|audio-inpaint|audio-continue MODEL_DIR ...``: text-to-speech and audio editing from a speech pipeline.

    mmgen speak assets/tts-speech "Please call Stella." --out hello.wav [--prompt-audio voice.wav]
    mmgen audio-inpaint assets/tts-speech --audio x.wav --start 1.0 --end 1.6 [--text "..."] --out y.wav
    mmgen audio-continue assets/tts-speech --audio x.wav --seconds 2 [--text "..."] --out z.wav
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmgen.cli.args import existing_path, non_negative_float, positive_int


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=existing_path, metavar="MODEL_DIR", help="a speech pipeline folder")
    parser.add_argument("--out", type=Path, required=True, help="output .wav (or .flac) file")
    parser.add_argument("--steps", type=positive_int, help="decoding steps of the coarse RVQ level (finer: fewer)")
    parser.add_argument("--temperature", type=non_negative_float, help="sampling temperature of the coarse level")
    parser.add_argument("--guidance", type=non_negative_float, help="classifier-free guidance on the text (1 = off)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same audio)")
    parser.add_argument("--mel", type=Path, help="also save a log-mel spectrogram PNG here")


def register(sub: Any) -> None:
    speak = sub.add_parser("speak", help="text-to-speech", description="Speak a sentence with a speech pipeline.")
    _common(speak)
    speak.add_argument("text", help="the sentence to speak")
    speak.add_argument("--prompt-audio", type=existing_path, help="a voice prompt (kept as the unmasked prefix)")
    speak.add_argument("--prompt-text", help="the transcript of --prompt-audio (improves prompted speech)")
    speak.add_argument("--voice", help="a voice the model was trained on (default: en-us; see transformer/config.json)")
    speak.add_argument("--rate", type=non_negative_float, help="speaking rate in words per minute")
    speak.add_argument("--seconds", type=non_negative_float, help="force the duration (default: predicted)")
    speak.set_defaults(func=run_speak)

    inpaint = sub.add_parser("audio-inpaint", help="regenerate a time span of a recording",
                             description="Regenerate seconds [--start, --end) of a recording; audio outside the "
                                         "span is kept (unchanged tokens, original samples pasted back).")
    _common(inpaint)
    inpaint.add_argument("--audio", type=existing_path, required=True, help="the recording to edit")
    inpaint.add_argument("--start", type=non_negative_float, required=True, help="span start in seconds")
    inpaint.add_argument("--end", type=non_negative_float, required=True, help="span end in seconds")
    inpaint.add_argument("--text", help="what the whole edited recording says (default: no text)")
    inpaint.set_defaults(func=run_inpaint)

    cont = sub.add_parser("audio-continue", help="continue a recording",
                          description="Continue a recording by --seconds and/or saying --text.")
    _common(cont)
    cont.add_argument("--audio", type=existing_path, required=True, help="the recording to continue")
    cont.add_argument("--seconds", type=non_negative_float, help="length of the continuation (default: predicted)")
    cont.add_argument("--text", help="what the continuation says")
    cont.add_argument("--audio-text", help="the transcript of --audio")
    cont.set_defaults(func=run_continue)


def _load(args: argparse.Namespace) -> Any:
    from mmgen.errors import CheckpointError
    from mmgen.pipelines import load_pipeline
    from mmgen.pipelines.speech import SpeechPipeline

    pipe = load_pipeline(args.model)
    if not isinstance(pipe, SpeechPipeline):
        raise CheckpointError(f"{args.model}: a {type(pipe).__name__} folder, not a speech pipeline")
    return pipe


def _options(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    return {"num_steps": args.steps, "temperature": args.temperature, "guidance_scale": args.guidance,
            "generator": torch.Generator().manual_seed(args.seed)}


def _read(path: Path) -> tuple[Any, int]:
    from mmgen.data.audio_io import load_audio

    wav, rate, _ = load_audio(path)
    return wav, rate


def _save(pipe: Any, result: Any, args: argparse.Namespace) -> int:
    from mmgen.data.audio_io import save_audio
    from mmgen.eval.audio_metrics import save_mel_png

    path = save_audio(args.out, result.wav, result.sample_rate)
    if args.mel is not None:
        save_mel_png([(path.name, result.wav)], result.sample_rate, args.mel)
    print(f"{path} ({result.seconds:.2f} s)")
    return 0


def run_speak(args: argparse.Namespace) -> int:
    pipe = _load(args)
    prompt, prompt_rate = _read(args.prompt_audio) if args.prompt_audio is not None else (None, None)
    voice = args.voice if args.voice is not None else "auto"
    result = pipe.speak(args.text, prompt_audio=prompt, prompt_sample_rate=prompt_rate, prompt_text=args.prompt_text,
                        voice=voice, rate=args.rate, seconds=args.seconds or None, **_options(args))
    return _save(pipe, result, args)


def run_inpaint(args: argparse.Namespace) -> int:
    pipe = _load(args)
    wav, rate = _read(args.audio)
    result = pipe.inpaint(wav, rate, args.start, args.end, text=args.text, **_options(args))
    return _save(pipe, result, args)


def run_continue(args: argparse.Namespace) -> int:
    pipe = _load(args)
    wav, rate = _read(args.audio)
    result = pipe.continue_(wav, rate, seconds=args.seconds or None, text=args.text, audio_text=args.audio_text,
                            **_options(args))
    return _save(pipe, result, args)
