"""Forward hooks addressed by module path, always removed in ``finally``.

Context:
    Every analysis reads or rewrites activations at named places of a model:
    ``model.layers.12.mlp``, ``bert.encoder.layer.3.output.dense``. Following TransformerLens,
    a place is named by its module path; following captum, hooks live only inside a context
    manager, so an exception (or a Stop button) can never leave a hook behind.

Two primitives:
    :func:`capture` stores (optionally reduced) outputs of modules;
    :func:`intervene` replaces outputs (and :func:`intervene_inputs` inputs) through small setter
    functions — patching and ablation are specialisations of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

_LOCKS_GUARD = threading.Lock()


def model_lock(model: torch.nn.Module) -> threading.RLock:
    """The model's own re-entrant lock. Hooks are global to a module, so while one analysis
    has hooks in place (or runs a forward pass) no other thread may run that model: two app
    sessions share one cached ranker. Every hook block and every forward pass holds it."""
    lock = getattr(model, "_rankscope_lock", None)
    if lock is None:
        with _LOCKS_GUARD:
            lock = getattr(model, "_rankscope_lock", None)
            if lock is None:
                lock = threading.RLock()
                object.__setattr__(model, "_rankscope_lock", lock)
    return lock


def primary(output):
    """The hidden-state tensor of a module output (attention modules return tuples)."""
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def hooked(model: torch.nn.Module, hooks: dict[str, Callable], *, pre: bool = False) -> Iterator[None]:
    """Register ``hooks`` (module path → forward hook, or pre-hook with ``pre``) for the block
    and remove every one of them in ``finally``: the one place hooks are registered."""
    handles = []
    with model_lock(model):
        try:
            for path, hook in hooks.items():
                module = model.get_submodule(path)
                handles.append(module.register_forward_pre_hook(hook) if pre
                               else module.register_forward_hook(hook))
            yield
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def capture(model: torch.nn.Module, paths: list[str],
            reduce: Callable[[str, torch.Tensor], object] | None = None) -> Iterator[dict]:
    """Record the output of each module in ``paths`` during the forward passes inside the block.

    Args:
        reduce: applied to ``(path, output [batch, pos, d])`` inside the hook, so only what it
            returns is kept (e.g. pooled vectors) — full activations never pile up.

    Yields:
        dict path → reduced output of the latest forward pass.
    """
    captured: dict[str, object] = {}

    def make_hook(path: str):
        def hook(module, inputs, output):
            tensor = primary(output).detach()
            captured[path] = reduce(path, tensor) if reduce else tensor

        return hook

    with hooked(model, {path: make_hook(path) for path in paths}):
        yield captured


@contextmanager
def capture_inputs(model: torch.nn.Module, paths: list[str]) -> Iterator[dict]:
    """Record the first input of each module in ``paths`` (e.g. a block's residual-stream input,
    or the concatenated head outputs entering an attention output projection)."""
    captured: dict[str, torch.Tensor] = {}

    def make_hook(path: str):
        def hook(module, args):
            captured[path] = args[0].detach()

        return hook

    with hooked(model, {path: make_hook(path) for path in paths}, pre=True):
        yield captured


@contextmanager
def intervene(model: torch.nn.Module,
              setters: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> Iterator[None]:
    """Replace the output of each module path with ``setter(output)`` inside the block."""
    def make_hook(setter):
        def hook(module, inputs, output):
            if isinstance(output, tuple):
                return (setter(output[0]), *output[1:])
            return setter(output)

        return hook

    with hooked(model, {path: make_hook(setter) for path, setter in setters.items()}):
        yield


@contextmanager
def intervene_inputs(model: torch.nn.Module,
                     setters: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> Iterator[None]:
    """Replace the first input of each module path with ``setter(input)`` inside the block
    (per-head patching rewrites the input of the attention output projection)."""
    def make_hook(setter):
        def hook(module, args):
            return (setter(args[0]), *args[1:])

        return hook

    with hooked(model, {path: make_hook(setter) for path, setter in setters.items()}, pre=True):
        yield


def count_hooks(model: torch.nn.Module) -> int:
    """Forward (pre-)hooks currently registered anywhere in ``model`` (leak checks in tests)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def call_arguments(model: torch.nn.Module, path: str, run: Callable[[], object]) -> tuple[tuple, dict]:
    """The positional (after the first) and keyword arguments module ``path`` is called with
    when ``run()`` runs the model; the forward pass stops there, so nothing after it runs."""
    captured = {}

    class _Stop(Exception):
        pass

    def grab(module, args, kwargs):
        captured["args"], captured["kwargs"] = args[1:], kwargs
        raise _Stop

    with model_lock(model):
        handle = model.get_submodule(path).register_forward_pre_hook(grab, with_kwargs=True)
        try:
            try:
                run()
            except _Stop:
                pass
        finally:
            handle.remove()
    return captured["args"], captured["kwargs"]
