"""Which model pass a ``calc_cond_batch`` call is, within one sampler evaluation.

ComfyUI's sampler calls its model function (``CFGGuider.predict_noise``) once per step
stage; that function may call ``calc_cond_batch`` more than once at the same sigma:

* guidance passes from ``sampler_post_cfg_function``: skip-layer guidance replaces some
  ``patches_replace["dit"]`` blocks, PAG an ``attn1`` patch, each in a copy of the
  options; SAG calls it again with the options unchanged, for the uncond alone, on a
  degraded input;
* context windows (``model_options["context_handler"]``): one call per window, with the
  window in ``transformer_options["context_window"]`` (its ``index_list``), in every
  supported ComfyUI version.

The PREDICT_NOISE wrapper marks the sampler evaluation; ``pass_variant`` names what
distinguishes a call from the others: the window, the patches in force, and which
conditionings it evaluates. The run keeps each pass's cached state apart (the first one
seen is the main pass; a variant repeated within one evaluation is another pass).
"""
from __future__ import annotations

from typing import Hashable

from .holder import RUN_KEY


def predict_noise_wrapper(executor, *args, **kwargs):
    """One evaluation of the sampler's model function: all its model passes share its step."""
    model_options = args[2] if len(args) > 2 else kwargs.get("model_options") or {}
    run = model_options.get("transformer_options", {}).get(RUN_KEY) if isinstance(model_options, dict) else None
    timestep = args[1] if len(args) > 1 else kwargs.get("timestep")
    if run is None or timestep is None:
        return executor(*args, **kwargs)
    run.begin_sampler_evaluation(float(timestep.flatten()[0]))
    try:
        return executor(*args, **kwargs)
    finally:
        run.end_sampler_evaluation()


def _fingerprint(value) -> Hashable:
    """Identity of a patch collection: its keys and the patch objects (by id), not their results
    (a dict's in any order: a set of its items)."""
    if isinstance(value, dict):
        return frozenset((k, _fingerprint(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_fingerprint(v) for v in value)
    return id(value)


def _window(model_options: dict, options: dict) -> Hashable:
    window = options.get("context_window")
    if window is None or model_options.get("context_handler") is None:
        return None
    frames = tuple(int(i) for i in getattr(window, "index_list", ()) or ())
    return ("window", frames, getattr(window, "dim", None), getattr(window, "causal_anchor_index", None))


def _conds_layout(conds) -> Hashable:
    layout = []
    for cond in conds or []:
        if cond is None:
            layout.append(None)
            continue
        layout.append(tuple(str(c.get("uuid")) if isinstance(c, dict) else id(c) for c in cond))
    return tuple(layout)


def pass_variant(conds, model_options: dict) -> Hashable:
    """What distinguishes this ``calc_cond_batch`` call from the others of its sampler evaluation."""
    options = model_options.get("transformer_options", {}) if isinstance(model_options, dict) else {}
    return (_window(model_options, options),
            _fingerprint(options.get("patches_replace", {})),
            _fingerprint(options.get("patches", {})),
            _conds_layout(conds))


def branch_keys(conds, sigma: float, dtype=None) -> list:
    """Per conditioning of a pass (None where absent): its name and the entries that apply at
    ``sigma``. A conditioning whose entries switch within the run (ConditioningSetTimestepRange
    with ConditioningCombine: one prompt early, another late) is then another branch once the
    switch happens, with a cache of its own, as ComfyUI would evaluate another prompt. ``dtype``:
    the sigma tensor's, in which ComfyUI compares it with the range (at the boundary both apply)."""
    keys = []
    for i, cond in enumerate(conds or []):
        if cond is None:
            keys.append(None)
            continue
        name = "cond" if i == 0 else "uncond" if i == 1 else f"cond{i}"
        active = tuple(str(c.get("uuid")) if isinstance(c, dict) else str(id(c)) for c in cond
                       if not isinstance(c, dict) or _applies(c, sigma, dtype))
        keys.append((name, active))
    return keys


def _applies(entry: dict, sigma: float, dtype=None) -> bool:
    """Does a conditioning entry apply at ``sigma`` (its timestep range, as ComfyUI reads it)?"""
    start, end = (_rounded(entry.get(k), dtype) for k in ("timestep_start", "timestep_end"))
    return not ((start is not None and sigma > start) or (end is not None and sigma < end))


def _rounded(value, dtype):
    """``value`` as a tensor of ``dtype`` holds it (None stays None)."""
    if value is None or dtype is None:
        return value
    import torch
    return float(torch.tensor(float(value), dtype=dtype))
