"""The methods of the pack: one module each, one line each here.

Adding a method: write ``cache_core/methods/<id>.py`` with its ``METHOD`` and add it to
the list below. The node's inputs, the README's method table, the benchmark's sweep
and the tests' method list all come from ``METHODS``.
"""
from __future__ import annotations

from . import (dbcache, dbcache_hybrid, deepcache, delta_dit, easycache, first_block, fixed_interval, foca,
               freqca, hicache, magcache, speca, step_mask, taylorseer, teacache)
from .spec import COMMON_KNOBS, Knob, Method, PolicyContext

METHODS: dict[str, Method] = {m.id: m for m in (
    first_block.METHOD,
    dbcache.METHOD,
    dbcache_hybrid.METHOD,
    delta_dit.METHOD,
    deepcache.METHOD,
    taylorseer.METHOD,
    hicache.METHOD,
    foca.METHOD,
    freqca.METHOD,
    speca.METHOD,
    teacache.METHOD,
    magcache.METHOD,
    easycache.METHOD,
    fixed_interval.METHOD,
    step_mask.METHOD,
)}


def get(method_id: str) -> Method:
    if method_id not in METHODS:
        raise ValueError(f"unknown method {method_id!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[method_id]


# The node's inputs in this order: saved workflows store widget values by position, so
# an input that a new method brings goes after these.
INPUT_ORDER = ("threshold", "interval", "step_mask", "profile", "start_percent", "end_percent", "warmup_steps",
               "last_steps_computed", "max_consecutive_cached", "max_cached_steps", "front_blocks", "back_blocks",
               "delta_cached_blocks", "delta_boundary", "predictor", "predictor_order", "predictor_axis",
               "deepcache_depth", "deepcache_mode", "magcache_max_skips", "magcache_retention", "verbose")


def node_inputs() -> list[Knob]:
    """Every knob once (the first method that defines it gives its kind and range), in INPUT_ORDER,
    then any knob a newer method brings."""
    merged: dict[str, Knob] = {}
    for method in METHODS.values():
        for knob in method.knobs:
            merged.setdefault(knob.name, knob)
    for knob in COMMON_KNOBS:
        merged.setdefault(knob.name, knob)
    order = {name: i for i, name in enumerate(INPUT_ORDER)}
    return sorted(merged.values(), key=lambda k: order.get(k.name, len(order)))


def check_ranges(inputs: dict, skip=()) -> None:
    """No numeric input below its knob's minimum, whichever method reads it (the node's own
    bounds; programmatic configs may go beyond the node's maxima)."""
    for knob in node_inputs():
        value = inputs.get(knob.name)
        if knob.name in skip or value is None or knob.kind not in ("int", "float") or isinstance(value, bool):
            continue
        if knob.min is not None and value < knob.min:
            raise ValueError(f"{knob.name} must be {knob.min:g} or more; got {value}")


def ui_description() -> dict:
    """For the node's web extension: per method, the inputs it shows, which are advanced, and their tooltips."""
    out = {}
    for method in METHODS.values():
        knobs = method.all_knobs()
        out[method.id] = {
            "label": method.label, "about": method.about,
            "inputs": [k.name for k in knobs],
            "advanced": [k.name for k in knobs if k.advanced],
            "tooltips": {k.name: k.tooltip for k in knobs},
        }
    return out


def methods_table_markdown() -> str:
    """The README's method table."""
    rows = ["| method | family | what is cached | when a step is computed | calibration |",
            "|---|---|---|---|---|"]
    for m in METHODS.values():
        rows.append(f"| `{m.id}` | {m.family} | {m.cached} | {m.computes_when} | {m.calibration} |")
    return "\n".join(rows)


__all__ = ["COMMON_KNOBS", "Knob", "METHODS", "Method", "PolicyContext", "get", "methods_table_markdown",
           "node_inputs", "ui_description"]
