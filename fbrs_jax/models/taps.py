"""Forward passes as a chain of named stages ("taps").

A model declares its stages once as ``Stage(name, inputs)``; one runner executes them. The
same code path serves the full forward, a forward resumed from any tap (from a ``carry`` of
the tensors the rest of the chain needs), and edits at any tap (how BRS / f-BRS insert their
optimised variables). ``image`` and ``points`` are the two inputs and can be edited like taps.
"""
from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Optional, Sequence

INPUTS = ('image', 'points')


class Stage(NamedTuple):
    name: str
    inputs: tuple[str, ...]


def tap_names(stages: Sequence[Stage]) -> tuple[str, ...]:
    return INPUTS + tuple(s.name for s in stages)


def carry_names(stages: Sequence[Stage], tap: str) -> tuple[str, ...]:
    """Tensors available at ``tap`` (inclusive) that the stages after it consume."""
    names = tap_names(stages)
    if tap not in names:
        raise ValueError(f'unknown tap {tap!r}; known taps: {", ".join(names)}')
    cut = names.index(tap)
    before = set(names[:cut + 1])
    needed = []
    for s in stages:
        if names.index(s.name) > cut:
            needed.extend(i for i in s.inputs if i in before and i not in needed)
    if tap not in needed:
        needed.insert(0, tap)
    return tuple(needed)


def run_stages(stages: Sequence[Stage], fns: Mapping[str, Callable], values: dict, *,
               start: Optional[str] = None,
               edits: Optional[Mapping[str, Callable]] = None,
               stop: Optional[str] = None) -> dict:
    """Run ``stages`` and return every tensor computed, by name.

    ``values`` holds the inputs (``image``, ``points``) or, with ``start``, the carry of
    ``start``. An edit is applied to a tap's value right after it is produced (or, for the
    ``start`` tap and the inputs, to the given value). ``stop`` ends the chain after that tap.
    """
    names = tap_names(stages)
    edits = dict(edits or {})
    unknown = set(edits) - set(names)
    if unknown:
        raise ValueError(f'cannot edit unknown taps {sorted(unknown)}; known taps: {", ".join(names)}')
    out = dict(values)
    cut = -1 if start is None else names.index(start)
    for name in list(out):
        if name in edits and (name in INPUTS or name == start):
            out[name] = edits[name](out[name])
    for s in stages:
        if names.index(s.name) <= cut:
            continue
        missing = [i for i in s.inputs if i not in out]
        if missing:
            raise ValueError(f'stage {s.name!r} needs {missing}, which the carry lacks')
        y = fns[s.name](*[out[i] for i in s.inputs])
        if s.name in edits:
            y = edits[s.name](y)
        out[s.name] = y
        if s.name == stop:
            break
    return out
