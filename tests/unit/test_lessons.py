"""Lessons: the reveal compares a guess with the data; unknown lessons and bad output folders
get one sentence."""

import pytest

from core.cli import main
from core.errors import InputError
from core.lessons import LESSONS, Outcome, _third, get_lesson


def test_every_lesson_asks_before_it_reveals_and_ends_with_the_paper():
    for lesson in LESSONS.values():
        assert lesson.steps[-1].question is None  # the paper-vs-ours step
        assert all(s.choices for s in lesson.steps if s.question)
        assert len(lesson.figures) == len(lesson.steps)


def test_the_verdict_compares_the_guess_with_the_answer():
    outcome = Outcome("x", "demo", ["middle", None], ["BM25 peaks at block 3.", "Paper: …"])
    assert outcome.verdict(0, "middle").startswith("You predicted **middle** — right. BM25")
    assert "not quite: the data says **middle**." in outcome.verdict(0, "late")
    assert outcome.verdict(1, None) == "Paper: …"
    assert [_third(layer, 6) for layer in range(1, 7)] == ["early", "early", "middle",
                                                           "middle", "late", "late"]


def test_unknown_lessons_and_a_file_as_out_folder_are_refused(tmp_path, capsys):
    with pytest.raises(InputError, match="unknown lesson 'ranking'"):
        get_lesson("ranking")
    file = tmp_path / "f.txt"
    file.write_text("x")
    assert main(["lesson", "probing", "--out", str(file), "--store",
                 str(tmp_path / "s.duckdb")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
