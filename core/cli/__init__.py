"""``python -m core …``: the engine headless, writing to the same store as the app.

One small module per command (``core/cli/<command>.py``: ``NAME``, ``HELP``, ``arguments(p)``,
``run(args)`` and, where it works in resumable units, ``STOPPED``); every analysis registered
with :func:`core.analysis.register` gets a command generated from its config
(:mod:`core.cli.generated`). Every user mistake ends with one line on stderr and exit code 2
(no traceback); Ctrl-C, for every command, says what was kept (exit 130).
"""

from __future__ import annotations

import argparse
import os
import sys

from core.cli import (evaluate, extract, generated, lesson, models, precisions, saliency,
                      score)
from core.errors import RankScopeError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
MODULES = (models, extract, evaluate, precisions, saliency, score, lesson)


def commands() -> dict[str, object]:
    """Command name → its module (hand-written ones, then one per registered analysis)."""
    found = {module.NAME: module for module in MODULES}
    for command in generated.commands():
        if command.NAME in found:
            raise RuntimeError(f"analysis {command.NAME!r} clashes with a built-in command")
        found[command.NAME] = command
    return found


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of the hand-written command ``only`` alone: the
    generated commands import their analyses' modules (torch, transformers: about 2 s), which
    a command such as ``models`` or ``extract --help`` should not wait for."""
    parser = argparse.ArgumentParser(prog="python -m core", description="RankScope engine")
    sub = parser.add_subparsers(dest="command", required=True)
    hand_written = {module.NAME: module for module in MODULES}
    chosen = {only: hand_written[only]} if only in hand_written else commands()
    for name, command in chosen.items():
        command.arguments(sub.add_parser(name, help=command.HELP))
    return parser


def reproduce(command: str, **options) -> str:
    """The ``python -m core COMMAND …`` line that reruns a page's run on the same store keys.

    ``options`` are the command's argument names (``doc_tokens=48``, ``features=[…]``, flags as
    booleans); each is checked against the command's parser, so a page cannot show a line the
    CLI would refuse. None and False are left out (the CLI's defaults), and empty lists too
    unless the option takes zero or more values.

    Raises:
        ValueError: an option the command does not have.
    """
    import shlex

    parser = argparse.ArgumentParser()
    commands()[command].arguments(parser)
    actions = {a.dest: a for a in parser._actions if a.option_strings}  # read only
    parts = ["python", "-m", "core", command]
    for name, value in options.items():
        if name not in actions:
            raise ValueError(f"`{command}` has no option {name!r}")
        flag = actions[name].option_strings[0]
        if isinstance(value, (list, tuple)) and not value and actions[name].nargs == "*":
            parts.append(flag)  # an explicit empty list (the default is not empty)
            continue
        if isinstance(actions[name], argparse._StoreFalseAction):  # --no-x: on by default
            if value is False:
                parts.append(flag)
            continue
        if value is None or value is False or (isinstance(value, (list, tuple)) and not value):
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def interrupted(error: BaseException) -> bool:
    """Whether ``error`` is the user's Ctrl-C. A Ctrl-C that arrives while DuckDB runs a query
    is turned by DuckDB into its own error ("Query interrupted"); the store's transaction has
    rolled back by then, exactly as for a KeyboardInterrupt."""
    if isinstance(error, KeyboardInterrupt):
        return True
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(error, getattr(duckdb, "InterruptException", ())):
        return True
    return isinstance(error, RuntimeError) and str(error) == "Query interrupted"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(only=first).parse_args(argv)
    hand_written = {module.NAME: module for module in MODULES}
    command = hand_written.get(args.command) or commands()[args.command]
    try:
        return command.run(args)
    except RankScopeError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (KeyboardInterrupt, Exception) as error:  # Ctrl-C, for every command: what was kept
        if not interrupted(error):
            raise
        if "tqdm" in sys.modules:  # end the progress bar's line first, so the message is last
            from tqdm import tqdm

            for bar in list(getattr(tqdm, "_instances", ())):
                bar.close()
        print(f"stopped: {getattr(command, 'STOPPED', 'nothing was written')}", file=sys.stderr)
        return EXIT_INTERRUPTED
