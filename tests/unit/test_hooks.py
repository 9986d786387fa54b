"""Hooks on a hand-weighted toy network: values you can work out by hand, and no leaks."""

import pytest
import torch

from core.hooks import capture, count_hooks, intervene
from toys import Toy


def test_capture_records_hand_computed_values():
    toy = Toy()
    with capture(toy, ["first", "second"]) as seen:
        out = toy(torch.tensor([[3.0, -1.0]]))
    assert torch.equal(seen["first"], torch.tensor([[3.0, -2.0]]))
    assert torch.equal(seen["second"], torch.tensor([[3.0]]))  # relu(-2) = 0
    assert torch.equal(out, torch.tensor([[3.0]]))
    assert count_hooks(toy) == 0


def test_capture_reduce_keeps_only_the_reduction():
    toy = Toy()
    with capture(toy, ["first"], reduce=lambda path, t: t.sum().item()) as seen:
        toy(torch.tensor([[1.0, 1.0]]))
    assert seen == {"first": 3.0}


def test_intervene_replaces_output_and_changes_score():
    toy = Toy()
    x = torch.tensor([[3.0, 1.0]])
    assert toy(x).item() == 5.0
    with intervene(toy, {"first": lambda t: t * torch.tensor([1.0, 0.0])}):
        assert toy(x).item() == 3.0  # the second unit knocked out
    assert toy(x).item() == 5.0
    assert count_hooks(toy) == 0


def test_hooks_removed_when_the_forward_pass_raises():
    toy = Toy()

    def broken(_):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        with intervene(toy, {"first": broken}):
            toy(torch.ones(1, 2))
    with pytest.raises(RuntimeError):
        with capture(toy, ["first", "second"]):
            raise RuntimeError("stop button")
    assert count_hooks(toy) == 0


def test_unknown_module_path_raises_and_leaves_nothing():
    toy = Toy()
    with pytest.raises(AttributeError):
        with capture(toy, ["first", "nope"]):
            pass
    assert count_hooks(toy) == 0
