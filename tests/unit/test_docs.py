"""Every command in README.md and docs/ names a real CLI subcommand with real flags, and every
script or bench file it runs exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from core.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(text: str) -> list[str]:
    """Shell commands of the fenced ``bash`` blocks (continuations joined, split on && ; |)."""
    out = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out += [part.strip() for part in re.split(r"&&|;|\|", line) if part.strip()]
    return out


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def check(command: str, subparsers) -> list[str]:
    """Problems with one command line ([] when it is fine)."""
    tokens = shlex.split(command)
    problems = []
    if "core" in tokens and tokens[tokens.index("core") - 1] == "-m" or tokens[:1] == ["rankscope"]:
        at = tokens.index("core") + 1 if "core" in tokens else 1
        name = tokens[at] if at < len(tokens) else ""
        if name not in subparsers:
            return [f"{command!r}: no subcommand {name!r}"]
        known = set(subparsers[name]._option_string_actions)
        for token in tokens[at + 1:]:
            flag = token.split("=", 1)[0]
            if flag.startswith("--") and flag not in known:
                problems.append(f"{command!r}: `{name}` has no flag {flag}")
    for token in tokens:
        if re.fullmatch(r"(bench|scripts)/[\w.-]+\.(py|sh)", token) and not (ROOT / token).is_file():
            problems.append(f"{command!r}: {token} does not exist")
    return problems


def test_the_check_catches_a_wrong_subcommand_flag_and_file():
    subparsers = _subparsers()
    assert check("python -m core evaluate --ranker none --qrels x", subparsers) == []
    assert check("python -m core evalute --ranker x", subparsers) == [
        "'python -m core evalute --ranker x': no subcommand 'evalute'"]
    assert check("python -m core probe --ranker x --layers 3", subparsers) == [
        "'python -m core probe --ranker x --layers 3': `probe` has no flag --layers"]
    assert check("python bench/nothing_here.py", subparsers) == [
        "'python bench/nothing_here.py': bench/nothing_here.py does not exist"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_documented_command_exists(page):
    subparsers = _subparsers()
    commands = _commands(page.read_text())
    problems = [problem for command in commands for problem in check(command, subparsers)]
    assert problems == []


def test_the_readme_links_every_docs_page_and_they_exist():
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", readme))
    assert linked == {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}


def test_a_pages_command_line_rebuilds_the_same_patching_config():
    """The line the Patching page shows (generated from the sweep's config) parses back into
    the config it ran, for settings away from every default."""
    from core.cli import build_parser, commands, reproduce
    from core.patching import PatchConfig
    from core.sweep import command_line

    config_of = commands()["patch"].config_of
    ran = PatchConfig(prompt="pointwise", pairs=3, split="", pairs_per_query=2, tries=9,
                      doc_tokens=40, min_gap=0.2, correct_only=False, depth=50,
                      components=("attn",), groups=("document", "last"), head_groups=(),
                      attention_scores=False, method="loop")
    line = command_line("minilm-cross-encoder", "demo", ran)
    assert line.startswith("python -m core patch --ranker minilm-cross-encoder")
    args = build_parser().parse_args(shlex.split(line)[3:])
    assert config_of(args) == ran  # incl. no head groups, said with a bare --head-groups
    assert config_of(build_parser().parse_args(shlex.split(command_line(
        "m", "demo", PatchConfig()))[3:])) == PatchConfig()  # and at the defaults
    assert check(line, _subparsers()) == []
    with pytest.raises(ValueError, match="has no option 'layers'"):
        reproduce("patch", layers=3)
