"""The ``mmgen`` command: a thin argparse front over the library.

Each command group lives in its own module with a ``register(subparsers)`` function; heavy imports happen inside
the command functions so that ``mmgen --help`` is fast. User errors (:class:`mmgen.errors.MmgenError`, bad
arguments) print one line to stderr and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "mmgen.cli.data",
    "mmgen.cli.train",
    "mmgen.cli.tokenize",
    "mmgen.cli.evaluate",
    "mmgen.cli.export",
    "mmgen.cli.convert",
    "mmgen.cli.generate",
    "mmgen.cli.speech",
    "mmgen.cli.models",
    "mmgen.cli.demo",
)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (``mmgen data mnist: error: ...``) and exit code 2."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="mmgen",
        description="Masked generative modeling: tokenizers, masked transformers, samplers and pipelines.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mmgen.errors import MmgenError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("MMGEN_DEBUG") == "1"
    try:
        result = args.func(args)
    except MmgenError as exc:
        if debug:
            raise
        sys.stderr.write(f"mmgen {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("mmgen: interrupted\n")
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
