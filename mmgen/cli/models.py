"""``mmgen models list|show``: the registry of named model configs."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    from mmgen.cli.main import OneLineArgumentParser

    parser = sub.add_parser("models", help="list and show registered model configs",
                            description="Named model configs (add your own with MMGEN_CONFIGS=file.json).")
    commands = parser.add_subparsers(dest="models_command", metavar="COMMAND", parser_class=OneLineArgumentParser)
    commands.required = True
    list_parser = commands.add_parser("list", help="names of registered configs", description="List configs.")
    list_parser.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'vq-*'")
    list_parser.set_defaults(func=_list)
    show = commands.add_parser("show", help="print one config as JSON", description="Print a config as JSON.")
    show.add_argument("name", help="a registered config name")
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    from mmgen.registry import list_models, lookup

    for name in list_models(args.pattern):
        print(f"{name:32s} {lookup(name)[0]}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from mmgen.pretrained import config_to_dict
    from mmgen.registry import get_config, lookup

    model_type, _ = lookup(args.name)
    print(json.dumps({"model_type": model_type, **config_to_dict(get_config(args.name))}, indent=2))
    return 0
