"""The methods of the pack: one module each, one line each here.

Adding a method: write ``cache_core/methods/<id>.py`` with its ``METHOD`` and add it to
the list below. The node's inputs, the README's method table, the benchmark's sweep
and the tests' method list all come from ``METHODS``.
"""
from __future__ import annotations

from . import (budget, dbcache, dbcache_hybrid, deepcache, delta_dit, easycache, first_block, fixed_interval,
               foca, freqca, guarded_forecast, hicache, magcache, pab, speca, spectrum, step_mask, taylorseer,
               teacache)
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
    guarded_forecast.METHOD,
    spectrum.METHOD,
    teacache.METHOD,
    magcache.METHOD,
    easycache.METHOD,
    fixed_interval.METHOD,
    step_mask.METHOD,
    budget.METHOD,
    pab.METHOD,
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
               "deepcache_depth", "deepcache_mode", "magcache_max_skips", "magcache_retention", "verbose",
               "spectrum_alpha", "spectrum_window", "spectrum_warmup", "target_speedup", "compute_steps",
               "pab_self_range", "pab_cross_range", "pab_temporal_range", "pab_window_start", "pab_window_end",
               "cfg_cache_interval", "cache_level")


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


# what ``method = auto`` becomes: the first on models with block hooks, the second otherwise
AUTO = ("first_block", "easycache")
AUTO_ABOUT = "First-Block Cache on transformers with block hooks, EasyCache otherwise"


def _ui_entry(method: Method) -> dict:
    knobs = method.all_knobs()
    return {"label": method.label, "about": method.about, "inputs": [k.name for k in knobs],
            "advanced": [k.name for k in knobs if k.advanced], "tooltips": {k.name: k.tooltip for k in knobs}}


def _auto_entry() -> dict:
    """``auto``: the inputs of either method it may become; advanced where both say so; a tooltip per method
    where their meanings differ."""
    entries = [(mid, _ui_entry(METHODS[mid])) for mid in AUTO]
    inputs: list[str] = []
    for _, e in entries:
        inputs += [n for n in e["inputs"] if n not in inputs]
    advanced = [n for n in inputs if all(n in e["advanced"] for _, e in entries if n in e["inputs"])]
    tooltips = {}
    for name in inputs:
        texts = {}
        for mid, e in entries:
            if name in e["tooltips"]:
                texts.setdefault(e["tooltips"][name], []).append(mid)
        tooltips[name] = next(iter(texts)) if len(texts) == 1 else " | ".join(
            f"{', '.join(ids)}: {text}" for text, ids in texts.items())
    return {"label": "auto", "about": AUTO_ABOUT, "inputs": inputs, "advanced": advanced, "tooltips": tooltips}


def ui_description() -> dict:
    """For the node's web extension: per method (``auto`` first, as the node lists them), the inputs it shows,
    which of them are advanced, and their tooltips for that method."""
    out = {"auto": _auto_entry()}
    for method in METHODS.values():
        out[method.id] = _ui_entry(method)
    return out


def methods_table_markdown() -> str:
    """The README's method table."""
    rows = ["| method | family | what is cached | when a step is computed | calibration |",
            "|---|---|---|---|---|"]
    for m in METHODS.values():
        rows.append(f"| `{m.id}` | {m.family} | {m.cached} | {m.computes_when} | {m.calibration} |")
    return "\n".join(rows)


def method_inputs_markdown() -> str:
    """The README's list of what the node shows per method: the inputs shown, and those behind the
    node's "advanced" toggle besides the shared ones (COMMON_KNOBS, listed once below the table)."""
    described = ui_description()
    shared = [k.name for k in COMMON_KNOBS]
    rows = ["| method | shown | behind `advanced`, besides the shared ones |", "|---|---|---|"]
    for mid, d in described.items():
        shown = [n for n in d["inputs"] if n not in d["advanced"]]
        more = [n for n in d["advanced"] if n not in shared]
        rows.append(f"| `{mid}` | {', '.join(f'`{n}`' for n in shown)} | "
                    f"{', '.join(f'`{n}`' for n in more) or '-'} |")
    rows += ["", "The shared inputs, behind `advanced` where the table does not show them: "
             + ", ".join(f"`{n}`" for n in shared) + "."]
    return "\n".join(rows)


__all__ = ["AUTO", "COMMON_KNOBS", "Knob", "METHODS", "Method", "PolicyContext", "get",
           "method_inputs_markdown", "methods_table_markdown", "node_inputs", "ui_description"]
