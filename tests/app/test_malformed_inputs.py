"""Every analysis page's text and number fields fed a malformed value: one sentence (or the
widget's own refusal), never a traceback, never a live Stop over a failed run.

The runs are cut before their first unit (``core.analysis.drive`` returns "stopped"): what is
tested is the path from the field to the engine — reading, validation, preparing the units
(a query split resolves there) — not the analysis itself, which the other page tests run."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("1_Workspace", "3_Probing", "4_Patching", "5_Attribution", "6_Ablation", "7_Lens")
MALFORMED_TEXT = "banana"  # a query split, a list of numbers, a qrels file, a feature group …
MALFORMED_NUMBER = -5  # a negative depth, seed, α …


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=180)


def _fields(at: AppTest) -> list[tuple[str, int, str]]:
    return ([("text", i, w.label) for i, w in enumerate(at.main.text_input)]
            + [("number", i, w.label) for i, w in enumerate(at.main.number_input)]
            + [("area", i, w.label) for i, w in enumerate(at.main.text_area)])


def _submit_of(at: AppTest, widget):
    """The submit button of the widget's form (every analysis field sits in one)."""
    form = widget.proto.form_id
    return next(b for b in at.main.button if b.proto.form_id == form)


@pytest.mark.parametrize("name", PAGES)
def test_malformed_fields_give_one_sentence_and_no_live_stop(app_store, monkeypatch, name):
    import core.analysis

    monkeypatch.setattr(core.analysis, "drive", lambda units, compute, **_: ([], True))
    fields = _fields(_page(name).run())
    assert fields, f"{name}: no fields found"
    refused = 0
    for kind, index, label in fields:
        at = _page(name).run()
        widget = {"text": at.main.text_input, "number": at.main.number_input,
                  "area": at.main.text_area}[kind][index]
        if kind == "number" and widget.min is not None and MALFORMED_NUMBER < widget.min:
            before = widget.value
            widget.set_value(MALFORMED_NUMBER).run()  # the widget itself refuses it
            assert not at.exception, (name, label, [e.value for e in at.exception])
            again = {"text": at.main.text_input, "number": at.main.number_input,
                     "area": at.main.text_area}[kind][index]
            assert again.value == before, (name, label, again.value)
            refused += 1
            continue
        widget.set_value(MALFORMED_NUMBER if kind == "number" else MALFORMED_TEXT)
        _submit_of(at, widget).click().run()
        where = f"{name} · {label}"
        assert not at.exception, (where, [e.value[:300] for e in at.exception])
        assert not any(b.label == "Stop" for b in at.main.button), where
        errors = [e.value for e in at.error]
        assert all("Traceback" not in e and len(e.splitlines()) <= 2 for e in errors), errors
        refused += bool(errors)
    assert refused, f"{name}: no malformed value was refused"


def test_a_malformed_split_names_the_field_and_the_splits_there_are(app_store, monkeypatch):
    """The Attribution page answered the split `banana` with a bm25s traceback."""
    import core.analysis

    monkeypatch.setattr(core.analysis, "drive", lambda units, compute, **_: ([], True))
    at = _page("5_Attribution").run()
    split = next(w for w in at.main.text_input if w.label == "Query split")
    split.set_value("banana")
    _submit_of(at, split).click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "collection 'demo' has no query in split 'banana' (its splits: test, train)"]
    assert not any(b.label == "Stop" for b in at.main.button)
