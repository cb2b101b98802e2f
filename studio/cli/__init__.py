"""``python -m studio``: the command line (``main``), its ``jobs`` commands (``studio.cli.jobs``) and the
run options ``train`` and ``jobs submit`` share (``studio.cli.spec``). Only argparse at import time."""

from studio.cli.main import EXIT_USER_ERROR, build_parser, main

__all__ = ["EXIT_USER_ERROR", "build_parser", "main"]
