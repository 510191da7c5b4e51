"""Training tasks: one small module per trainable model, each plugging into the one Trainer.

Each module exposes ``add_arguments(parser)`` (task-specific CLI flags), ``build_task(args, model_overrides)``
returning a :class:`~mmgen.training.task.TrainTask`, and a module docstring whose first line is its CLI help.
"""

# CLI name -> module; `mmgen train NAME` is generated from this table.
TASK_MODULES = {
    "classifier": "mmgen.training.tasks.classifier",
    "shapes-judge": "mmgen.training.tasks.shapes_judge",
    "phoneme-judge": "mmgen.training.tasks.phoneme_judge",
    "image-tokenizer": "mmgen.training.tasks.image_tokenizer",
    "audio-tokenizer": "mmgen.training.tasks.audio_tokenizer",
    "mae": "mmgen.training.tasks.mae",
    "mim": "mmgen.training.tasks.mim",
    "maskgit": "mmgen.training.tasks.maskgit",
    "muse": "mmgen.training.tasks.muse",
    "speech": "mmgen.training.tasks.speech",
}
