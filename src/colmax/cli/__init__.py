"""The ``colmax`` command: index, add, delete, search, info, serve, mcp, demo (and eval).

Each command lives in its own module exposing ``register(subparsers)`` (adds its parser, with
``set_defaults(func=run)``) and ``run(args) -> int``. :func:`main` turns user errors into a
one-line message and an exit code instead of a traceback.

Exit codes: ``0`` success, ``1`` an operating-system error (unreadable file, full disk), ``2``
bad input or usage (every :class:`~colmax.errors.ColmaxError`, and argparse's own errors),
``130`` interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence

from colmax.errors import ColmaxError, StorageError

__all__ = ["build_parser", "main"]

_COMMANDS = ("index", "add", "delete", "search", "info", "serve", "mcp", "demo", "doctor")
_OPTIONAL_COMMANDS = ("eval",)  # written separately; registered when the module exists

_EPILOG = """\
examples:
  colmax index docs.jsonl --model answerdotai/answerai-colbert-small-v1 --out my-index
  colmax index notes/ --model MODEL --out my-index --chunk-tokens 200 --chunk-overlap 40
  colmax search my-index "how do I reset my password?" --k 5 --filter '{"lang": "en"}'
  colmax add my-index more.csv --text-field body
  colmax delete my-index doc-17 doc-18
  COLMAX_API_KEY=secret colmax serve my-index --port 8000
  colmax mcp my-index                      (MCP tools over stdio, for agents and chat clients)

exit codes: 0 ok, 1 operating-system error, 2 bad input or usage, 130 interrupted.
Run "colmax COMMAND --help" for the options of one command."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available command registered."""
    parser = argparse.ArgumentParser(
        prog="colmax",
        description="Late-interaction (ColBERT / MaxSim) retrieval: build an index from files, "
        "search it from the shell, or serve it over HTTP.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from colmax import __version__

    parser.add_argument("--version", action="version", version=f"colmax {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"colmax.cli.{name}").register(sub)
    for name in _OPTIONAL_COMMANDS:
        if importlib.util.find_spec(f"colmax.cli.{name}") is not None:
            importlib.import_module(f"colmax.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``colmax`` command line; returns the exit code.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Examples:
        >>> main(["search", "/nonexistent/index", "query"])  # doctest: +SKIP
        colmax search: error: /nonexistent/index: no such index folder
        2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except StorageError as exc:  # a full disk, an I/O error: the system's fault, not the input's
        _error(args.command, str(exc))
        return 1
    except ColmaxError as exc:
        _error(args.command, str(exc))
        return 2
    except KeyboardInterrupt:
        _error(args.command, "interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (``colmax search ... | head``): not an error worth a message.
        _silence_stdout()
        return 0
    except OSError as exc:
        _error(args.command, f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}")
        return 1


def _error(command: str, message: str) -> None:
    print(f"colmax {command}: error: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured in tests)
        pass
    finally:
        os.close(devnull)
