"""Tiny trained models of real ComfyUI architectures, for quick CPU workflows and tests.

``models/tiny/`` holds small class-conditional digit generators (MNIST) built from
ComfyUI's own model classes: a Flux-dev-style ``comfy.ldm.flux`` model and a Wan 2.1
``comfy.ldm.wan`` model. Each ``<name>.safetensors`` has a ``<name>.json`` beside it
that describes how to load, condition, sample and decode it:

* ``detection_overrides``: the config fields ComfyUI's detection cannot infer from the
  weights (Flux: its width and heads, which detection assumes at full size). Empty when
  detection sizes the model alone (Wan 2.1: the file loads with
  ``comfy.sd.load_diffusion_model`` and the ``UNETLoader`` node as it is);
* ``latent_shape``, ``conditioning`` (one-hot classes, null class for the negative)
  and ``recommended`` sampler settings.

The "latent" is not a VAE latent: it is ``pixel_unshuffle(4)`` of a 64x64 image in
[-1, 1], so decoding is exact and needs no VAE (:func:`decode_latent`).

ComfyUI modules are imported inside functions only, so this module can be imported
before ComfyUI is.
"""
from __future__ import annotations

import json
from pathlib import Path

TINY_MODELS_DIR = Path(__file__).resolve().parent.parent / "models" / "tiny"
# for tests and quick demos of the cache, not for making images: the category says so
CATEGORY = "Diffusion Cache/testing (tiny models)"


def _stem(name: str) -> str:
    name = Path(str(name)).name
    for suffix in (".safetensors", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def list_tiny_models() -> list[str]:
    """Names of the shipped tiny models (weights with a JSON description beside them)."""
    directory = Path(TINY_MODELS_DIR)
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.safetensors") if p.with_suffix(".json").is_file())


def tiny_model_paths(name: str) -> tuple[Path, Path]:
    """``(weights, json)`` paths of a tiny model; raises if either is missing."""
    stem = _stem(name)
    weights = Path(TINY_MODELS_DIR) / f"{stem}.safetensors"
    config = weights.with_suffix(".json")
    if not weights.is_file() or not config.is_file():
        raise FileNotFoundError(f"tiny model {name!r} not found in {TINY_MODELS_DIR} "
                                f"(available: {', '.join(list_tiny_models()) or 'none'})")
    return weights, config


def tiny_model_info(name: str) -> dict:
    """The JSON description of a tiny model."""
    return json.loads(tiny_model_paths(name)[1].read_text())


def load_tiny_model(name: str):
    """Load a tiny model as a ComfyUI ModelPatcher.

    Models with ``detection_overrides`` are detected by ComfyUI and get those fields
    on top (``model_loading.load_file``); the others go through
    ``comfy.sd.load_diffusion_model``, the same call the ``UNETLoader`` node makes.
    """
    weights, config = tiny_model_paths(name)
    info = json.loads(config.read_text())
    if info.get("detection_overrides"):
        from .model_loading import load_file
        return load_file(weights, config)
    import comfy.sd
    return comfy.sd.load_diffusion_model(str(weights))


def parse_digits(digits) -> list[int]:
    """``"0123"``, ``"0, 1, 2"`` or ``[0, 1, 2]`` -> ``[0, 1, 2, ...]``."""
    if isinstance(digits, str):
        out = []
        for ch in digits:
            if ch.isdigit():
                out.append(int(ch))
            elif ch in " ,;\t\n":
                continue
            else:
                raise ValueError(f"digits must be 0-9 (separators: space or comma), got {ch!r} in {digits!r}")
    else:
        out = [int(d) for d in digits]
    if not out:
        raise ValueError("no digits given")
    return out


def _onehot(info: dict, classes: list[int]):
    import torch
    cond = info["conditioning"]
    for c in classes:
        if not 0 <= c < cond["onehot_dim"]:
            raise ValueError(f"class {c} out of range for this model")
    out = torch.zeros(len(classes), cond["context_dim"])
    out[torch.arange(len(classes)), torch.tensor(classes)] = 1.0
    return out


def _conditioning(info: dict, classes: list[int], guidance):
    onehot = _onehot(info, classes)
    cond = info["conditioning"]
    extra = {}
    if cond.get("pooled_output"):
        extra["pooled_output"] = onehot[:, : cond["onehot_dim"]].clone()
    if cond.get("guidance") is not None:
        extra["guidance"] = float(cond["guidance"] if guidance is None else guidance)
    return [[onehot[:, None, :], extra]]


def class_conditioning(model_name: str, digits, guidance: float | None = None):
    """``(positive, negative)`` in ComfyUI's CONDITIONING format.

    ``positive`` holds one one-hot class per requested digit (batch = ``len(digits)``,
    matching a latent of that batch size); ``negative`` is the null class (batch 1).
    Flux entries carry ``pooled_output`` and ``guidance`` (default from the JSON).
    """
    info = tiny_model_info(model_name)
    classes = parse_digits(digits)
    nclass = info["conditioning"]["num_classes"]
    if any(c >= nclass for c in classes):
        raise ValueError(f"digits must be below {nclass}")
    null = info["conditioning"]["null_class"]
    return _conditioning(info, classes, guidance), _conditioning(info, [null], guidance)


def empty_latent(model_name: str, batch: int) -> dict:
    """A zero LATENT of the model's shape: ``[B,16,16,16]`` (Flux) or ``[B,16,1,16,16]`` (Wan)."""
    import torch
    shape = tiny_model_info(model_name)["latent_shape"]
    return {"samples": torch.zeros([int(batch)] + list(shape))}


def _latent_format(info: dict):
    import comfy.supported_models
    cls = getattr(comfy.supported_models, info["comfy_class"])
    return cls.latent_format()


def decode_latent(model_name: str, samples):
    """LATENT samples -> IMAGE ``[B,H,W,3]`` in 0..1 (frames of a 5-D latent become batch entries)."""
    import torch
    import torch.nn.functional as F
    info = tiny_model_info(model_name)
    vae = info["fake_vae"]
    x = _latent_format(info).process_in(samples.float().cpu())
    if x.ndim == 5:
        x = x.movedim(2, 1).reshape(-1, x.shape[1], x.shape[3], x.shape[4])
    img = F.pixel_shuffle(x, vae["factor"])
    lo, hi = vae["value_range"]
    img = ((img - lo) / (hi - lo)).clamp(0, 1)
    if img.shape[1] == 1:
        img = img.repeat(1, 3, 1, 1)
    return img.movedim(1, -1).contiguous().to(torch.float32)


def tiny_model_nodes() -> list[type]:
    """The ComfyUI V3 node classes for the tiny models."""
    from comfy_api.latest import io

    def model_input():
        names = list_tiny_models()
        return io.Combo.Input("model_name", options=names, default=names[0] if names else None,
                              tooltip="A tiny model shipped in models/tiny/ of this pack.")

    class DiffusionCacheTinyModelLoader(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            return io.Schema(
                node_id="DiffusionCacheTinyModelLoader",
                display_name="Diffusion Cache Tiny Model Loader",
                description="For testing the cache: loads a tiny trained digit model (Flux or Wan 2.1 "
                            "architecture) that runs in milliseconds on a CPU.",
                category=CATEGORY,
                inputs=[model_input()],
                outputs=[io.Model.Output(tooltip="The tiny diffusion model.")],
            )

        @classmethod
        def execute(cls, model_name: str) -> io.NodeOutput:
            return io.NodeOutput(load_tiny_model(model_name))

    class DiffusionCacheTinyDigits(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            return io.Schema(
                node_id="DiffusionCacheTinyDigits",
                display_name="Diffusion Cache Tiny Digits",
                description="Class conditioning and an empty latent for a tiny digit model: "
                            "one image per digit in the string.",
                category=CATEGORY,
                inputs=[
                    model_input(),
                    io.String.Input("digits", default="0123456789",
                                    tooltip="The digits to draw, one image each, e.g. 0123456789 or 7777."),
                ],
                outputs=[
                    io.Conditioning.Output(display_name="positive", tooltip="One-hot class of each digit."),
                    io.Conditioning.Output(display_name="negative", tooltip="The null class, for CFG."),
                    io.Latent.Output(display_name="latent", tooltip="An empty latent, one entry per digit."),
                ],
            )

        @classmethod
        def execute(cls, model_name: str, digits: str) -> io.NodeOutput:
            classes = parse_digits(digits)
            positive, negative = class_conditioning(model_name, classes)
            return io.NodeOutput(positive, negative, empty_latent(model_name, len(classes)))

    class DiffusionCacheTinyDecode(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            return io.Schema(
                node_id="DiffusionCacheTinyDecode",
                display_name="Diffusion Cache Tiny Decode",
                description="Turns a tiny model's latent into images (exact inverse of its pixel-unshuffle "
                            "latent; no VAE needed).",
                category=CATEGORY,
                inputs=[
                    model_input(),
                    io.Latent.Input("samples", tooltip="The latent sampled with the same tiny model."),
                ],
                outputs=[io.Image.Output(tooltip="The decoded 64x64 images.")],
            )

        @classmethod
        def execute(cls, model_name: str, samples) -> io.NodeOutput:
            return io.NodeOutput(decode_latent(model_name, samples["samples"]))

    return [DiffusionCacheTinyModelLoader, DiffusionCacheTinyDigits, DiffusionCacheTinyDecode]
