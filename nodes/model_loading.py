"""Load a ComfyUI model from weights the way ComfyUI does: detection first.

ComfyUI's detection (``comfy.model_detection``) reads an architecture's config from
its weights, and fills in every field its model classes need, including fields
that later ComfyUI versions add. For a few sizes detection assumes the full-size
model (Flux's width and heads, for example), so a small model also carries
*overrides*: the fields detection cannot infer from the weights, and only those.

``load_state_dict`` follows the steps of ``comfy.sd.load_diffusion_model_state_dict``
(detect, choose the dtype, build through the supported-model class, load the
weights) with the overrides applied to the detected config. No ComfyUI function
is replaced, and no model config is written out by hand.
"""
from __future__ import annotations

import json
from pathlib import Path


def detect_model_config(state_dict: dict, overrides: dict | None = None, supported_model: str | None = None):
    """ComfyUI's supported-model config for ``state_dict``, with ``overrides`` applied.

    ``supported_model`` names the ``comfy.supported_models`` class for weights whose
    sizes match none of ComfyUI's class rules (a U-Net far narrower than SD1.5, say);
    the config is still the detected one.
    """
    import comfy.model_detection
    import comfy.supported_models

    unet_config = comfy.model_detection.detect_unet_config(state_dict, "")
    if unet_config is None:
        raise ValueError("ComfyUI's detection does not recognise these weights as a diffusion model")
    unet_config = dict(unet_config)
    unet_config.update(overrides or {})
    if supported_model:
        cls = getattr(comfy.supported_models, supported_model, None)
        if cls is None:
            raise ValueError(f"unknown ComfyUI supported-model class {supported_model!r}; "
                             "use a class name from comfy/supported_models.py such as 'SD15'")
        return cls(unet_config)
    model_config = comfy.model_detection.model_config_from_unet_config(unet_config, state_dict)
    if model_config is None:
        raise ValueError(f"no ComfyUI supported model matches the detected config "
                         f"(image_model={unet_config.get('image_model')!r})")
    return model_config


def load_state_dict(state_dict: dict, overrides: dict | None = None, dtype=None,
                    supported_model: str | None = None):
    """A ModelPatcher for ``state_dict``: detected by ComfyUI, with ``overrides`` applied."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.utils

    model_config = detect_model_config(state_dict, overrides, supported_model)
    load_device = mm.get_torch_device()
    offload_device = mm.unet_offload_device()
    if dtype is None:
        dtype = mm.unet_dtype(model_params=comfy.utils.calculate_parameters(state_dict),
                              supported_dtypes=list(model_config.supported_inference_dtypes),
                              weight_dtype=comfy.utils.weight_dtype(state_dict))
    manual_cast = mm.unet_manual_cast(dtype, load_device, model_config.supported_inference_dtypes)
    model_config.set_inference_dtype(dtype, manual_cast)
    model = model_config.get_model(state_dict, "")
    model = model.to(offload_device)
    model.load_model_weights(state_dict, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def load_file(weights_path: str | Path, config_path: str | Path | None = None):
    """Load ``weights.safetensors`` with the ``detection_overrides`` of ``weights.json`` (or ``config_path``)."""
    import comfy.utils

    weights_path = Path(weights_path)
    config_path = Path(config_path) if config_path else weights_path.with_suffix(".json")
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    state_dict = comfy.utils.load_torch_file(str(weights_path))
    return load_state_dict(state_dict, config.get("detection_overrides"),
                           supported_model=config.get("supported_model"))


def new_model(shapes: dict, overrides: dict | None = None, supported_model: str | None = None, dtype=None):
    """A freshly built ComfyUI model (``comfy.model_base``) for weights of these shapes.

    ``shapes`` maps the state-dict keys that ComfyUI's detection reads to their
    shapes; the model is built from what detection makes of them, so every field a
    ComfyUI version adds is filled in by that version. Its weights are uninitialised
    (ComfyUI's ops create them with ``torch.empty``).
    """
    import torch
    skeleton = {k: torch.zeros(tuple(shape)) for k, shape in shapes.items()}
    model_config = detect_model_config(skeleton, overrides, supported_model)
    model_config.set_inference_dtype(dtype or torch.float32, None)
    return model_config.get_model({}, "")
