"""Build a ComfyUI model from weights plus an explicit architecture config.

ComfyUI's detection reads most architectures' sizes from the state dict. Flux is the
exception: detection hard-codes the full-size hidden width, so a small Flux cannot be
loaded by ``UNETLoader``. For such models a JSON config kept beside the weights names
the ComfyUI supported-model class (``comfy.supported_models.<name>``) and its
``unet_config``; this module builds the model through that class, the same way
``comfy.sd.load_diffusion_model_state_dict`` does after detection. No ComfyUI
function is replaced.
"""
from __future__ import annotations

import json
from pathlib import Path


def load_state_dict_with_config(state_dict: dict, supported_model: str, unet_config: dict):
    """Return a ModelPatcher for ``state_dict`` built as ``comfy.supported_models.<supported_model>``."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    import comfy.utils

    cls = getattr(comfy.supported_models, supported_model, None)
    if cls is None:
        raise ValueError(f"unknown ComfyUI supported-model class {supported_model!r}; "
                         "use a class name from comfy/supported_models.py such as 'Flux' or 'WAN21_T2V'")
    model_config = cls(dict(unet_config))
    load_device = mm.get_torch_device()
    offload_device = mm.unet_offload_device()
    parameters = comfy.utils.calculate_parameters(state_dict)
    weight_dtype = comfy.utils.weight_dtype(state_dict)
    unet_dtype = mm.unet_dtype(model_params=parameters, supported_dtypes=list(model_config.supported_inference_dtypes),
                               weight_dtype=weight_dtype)
    manual_cast = mm.unet_manual_cast(unet_dtype, load_device, model_config.supported_inference_dtypes)
    model_config.set_inference_dtype(unet_dtype, manual_cast)
    model = model_config.get_model(state_dict, "")
    model = model.to(offload_device)
    model.load_model_weights(state_dict, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def load_file_with_config(weights_path: str | Path, config_path: str | Path | None = None):
    """Load ``weights.safetensors`` with the config in ``weights.json`` (or ``config_path``)."""
    import comfy.utils

    weights_path = Path(weights_path)
    config_path = Path(config_path) if config_path else weights_path.with_suffix(".json")
    config = json.loads(config_path.read_text())
    state_dict = comfy.utils.load_torch_file(str(weights_path))
    return load_state_dict_with_config(state_dict, config["supported_model"], config["unet_config"])
