"""Lessons: the reveal compares a guess with the data; unknown lessons and bad output folders
get one sentence."""

import pytest

from core.cli import main
from core.errors import InputError
from core.lessons import LESSONS, NO_PEAK, Outcome, _third, get_lesson, peak_third


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


def test_a_peak_inside_the_noise_is_no_clear_peak_and_no_guess_is_wrong():
    """The case a class met: BM25's R² 0.09 at block 3 against 0.04–0.07 elsewhere — all
    under the 0.1 'absent' line and inside the other blocks' spread — is no peak; a clear
    rise or a clear hump is placed in its third."""
    import pandas as pd

    layers = range(1, 7)
    noise = pd.Series([0.05, 0.07, 0.09, 0.06, 0.04, 0.05], index=layers)
    folds_sd = pd.Series(0.03, index=layers)
    assert peak_third(noise, 6, sd=folds_sd, floor=0.1) == NO_PEAK  # under the absent line
    assert peak_third(noise + 0.3, 6, sd=folds_sd) == NO_PEAK  # 0.02 above the best other
    # a real hump and a steady rise are not noise
    assert peak_third(pd.Series([0.2, 0.3, 0.6, 0.5, 0.3, 0.2], index=layers), 6,
                      sd=folds_sd) == "middle"
    assert peak_third(pd.Series([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], index=layers), 6,
                      sd=folds_sd) == "late"
    # the measurement's own spread counts: the same hump measured with an sd of 0.4 is noise
    assert peak_third(pd.Series([0.2, 0.3, 0.6, 0.5, 0.3, 0.2], index=layers), 6,
                      sd=pd.Series(0.4, index=layers)) == NO_PEAK
    outcome = Outcome("x", "demo", [NO_PEAK], ["BM25 peaks at block 3 (R² 0.09)."])
    verdict = outcome.verdict(0, "early")
    assert "no clear peak" in verdict and "not quite" not in verdict and "R² 0.09" in verdict


def test_a_lesson_read_back_from_the_store_says_so_instead_of_a_time():
    assert Outcome("x", "demo", [], [], seconds=0.4, from_store=True).when() == (
        "Read back from the store (computed earlier)")
    assert Outcome("x", "demo", [], [], seconds=42.2).when() == "Computed in 42 s"


def test_unknown_lessons_and_a_file_as_out_folder_are_refused(tmp_path, capsys):
    with pytest.raises(InputError, match="unknown lesson 'ranking'"):
        get_lesson("ranking")
    file = tmp_path / "f.txt"
    file.write_text("x")
    assert main(["lesson", "probing", "--out", str(file), "--store",
                 str(tmp_path / "s.duckdb")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
