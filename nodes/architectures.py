"""Map ComfyUI diffusion models to block layouts and TeaCache probes.

Only public surfaces of ComfyUI are used: the block lists a model already has, the
``patches_replace["dit"]`` keys its forward pass consults, and the submodules of
block 0 (called, never replaced) to measure TeaCache's modulated input. An
architecture that exposes no per-block hook gets output-level caching through the
DIFFUSION_MODEL wrapper.

Newer families load under older class names (Flux 2 is a ``Flux``, Z-Image a
``NextDiT``, HunyuanVideo 1.5 a ``HunyuanVideo``, Wan 2.2 5B a ``WanModel``), so a
model is identified from its structure first (``STRUCTURAL``, checked in order),
then from its class (``ARCHITECTURES``, any class in its MRO).
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Callable

import torch

from ..cache_core.layout import BlockLayout

log = logging.getLogger("diffusion_cache")


def _flux_modulated_input(block, args) -> torch.Tensor:
    """(1 + scale) * LayerNorm(img) + shift of block 0's first image modulation.

    Flux 1 and HunyuanVideo blocks own their modulation (``img_mod``). Flux 2 / Klein and
    Chroma compute it once for all blocks and hand it over as ``vec`` =
    ((img_mod1, img_mod2), (txt_mod1, txt_mod2)).
    """
    if getattr(block, "img_mod", None) is not None:
        mod1, _ = block.img_mod(args["vec"])
    else:
        mod1 = args["vec"][0][0]
    normed = block.img_norm1(args["img"])
    scale, shift = mod1.scale, mod1.shift
    if scale.ndim == 3 and scale.shape[1] not in (1, normed.shape[1]):
        # one modulation per token segment (reference tokens at t = 0, a guiding frame): their mean
        scale, shift = scale.mean(1, keepdim=True), shift.mean(1, keepdim=True)
    return torch.addcmul(shift, normed, 1 + scale)     # normed * (1 + scale) + shift, one full-size op


def _ltx_modulated_input(block, args) -> torch.Tensor:
    """rms_norm(x) * (1 + scale_msa) + shift_msa of block 0 (LTX-Video)."""
    x, timestep = args["img"], args["vec"]
    table = block.scale_shift_table
    mods = table[None, None].to(device=x.device, dtype=x.dtype) + \
        timestep.reshape(x.shape[0], timestep.shape[1], table.shape[0], -1)
    shift_msa, scale_msa = mods[:, :, 0], mods[:, :, 1]
    normed = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype)
    return torch.addcmul(shift_msa, normed, 1 + scale_msa)


def _timestep_embedding(block, args) -> torch.Tensor:
    """Wan's TeaCache indicator: the per-block timestep modulation e0 (retention mode).

    Wan 2.2 5B modulates per frame (a clean first frame runs at t = 0); the last frame's
    modulation stands for the step, and keeps the probe small."""
    e0 = args["vec"]
    if e0.ndim == 4 and e0.shape[1] > 1:
        return e0[:, -1:]
    return e0


@dataclass(frozen=True)
class Architecture:
    name: str
    block_lists: tuple               # ((patch kind, attribute holding the ModuleList), ...)
    teacache_profile: str = "generic"
    probe: Callable | None = None    # fn(block0_module, block_args) -> tensor
    probe_name: str = "block_input"
    calls_model_wrapper: bool = True  # does its forward fire WrappersMP.DIFFUSION_MODEL?
    tensor_io: bool = True           # model input and output are single tensors (LTX-2: a list of streams)
    label: str = ""                  # the family, for messages
    note: str = ""                   # logged when a model is identified as this architecture

    def layout(self, diffusion_model) -> BlockLayout:
        kinds = []
        for kind, attr in self.block_lists:
            blocks = getattr(diffusion_model, attr, None)
            kinds.append((kind, len(blocks) if blocks is not None else 0))
        return BlockLayout(tuple(kinds))

    def first_block(self, diffusion_model):
        for _, attr in self.block_lists:
            blocks = getattr(diffusion_model, attr, None)
            if blocks:
                return blocks[0]
        return None

    @property
    def has_published_teacache(self) -> bool:
        return self.teacache_profile != "generic"


DOUBLE_SINGLE = (("double_block", "double_blocks"), ("single_block", "single_blocks"))

FLUX = Architecture("flux", DOUBLE_SINGLE, "flux", _flux_modulated_input, "modulated_input", label="Flux 1 / Kontext")
FLUX2 = Architecture("flux2", DOUBLE_SINGLE, "generic", _flux_modulated_input, "modulated_input",
                     label="Flux 2 / Klein")
CHROMA = Architecture("chroma", DOUBLE_SINGLE, "generic", _flux_modulated_input, "modulated_input", label="Chroma")
CHROMA_RADIANCE = Architecture("chroma_radiance", DOUBLE_SINGLE, "generic", _flux_modulated_input,
                               "modulated_input", label="Chroma Radiance")
HUNYUAN_VIDEO = Architecture("hunyuan_video", DOUBLE_SINGLE, "hunyuan_video", _flux_modulated_input,
                             "modulated_input", label="HunyuanVideo")
HUNYUAN_VIDEO15 = Architecture("hunyuan_video15", DOUBLE_SINGLE, "generic", _flux_modulated_input,
                               "modulated_input", label="HunyuanVideo 1.5")
HUNYUAN_IMAGE21 = Architecture("hunyuan_image21", DOUBLE_SINGLE, "generic", _flux_modulated_input,
                               "modulated_input", label="HunyuanImage 2.1")
WAN21 = Architecture("wan21", (("double_block", "blocks"),), "wan2.1_t2v_1.3b_e0", _timestep_embedding,
                     "timestep_embedding", label="Wan 2.1 / 2.2 14B")
WAN22_5B = Architecture("wan22_5b", (("double_block", "blocks"),), "generic", _timestep_embedding,
                        "timestep_embedding", label="Wan 2.2 5B")
LTXV = Architecture("ltxv", (("double_block", "transformer_blocks"),), "ltx_video", _ltx_modulated_input,
                    "modulated_input", label="LTX-Video")
# LTX-2's block stream is img = (video, audio) and its model input a list: block 0's video input is the probe
LTX2 = Architecture("ltx2", (("double_block", "transformer_blocks"),), tensor_io=False, label="LTX-2")
QWEN_IMAGE = Architecture("qwen_image", (("double_block", "transformer_blocks"),), label="Qwen-Image")
QWEN_IMAGE_EDIT = Architecture("qwen_image_edit", (("double_block", "transformer_blocks"),),
                               label="Qwen-Image edit")
# Kandinsky 5's visual blocks take and return the stream "x" (the text blocks have no hook). Where its
# forward's block_wrap calls the block with keywords the block does not take (ComfyUI 0.33), every
# "dit" patch fails: that Kandinsky 5 gets whole-call caching
KANDINSKY5 = Architecture("kandinsky5", (("double_block", "visual_transformer_blocks"),), label="Kandinsky 5")
KANDINSKY5_WHOLE_CALLS = Architecture(
    "kandinsky5", (), label="Kandinsky 5",
    note="Kandinsky 5's block patches fail in this ComfyUI (its forward calls each block with arguments the "
         "block does not take); caching whole model calls")
LUMINA2 = Architecture("lumina2", (), "lumina2_comfyui", label="Lumina 2")
Z_IMAGE = Architecture("z_image", (), label="Z-Image")


def _is(diffusion_model, class_name: str) -> bool:
    return any(c.__name__ == class_name for c in type(diffusion_model).__mro__)


def _z_image_modulation(dm) -> bool:
    """Z-Image's blocks modulate from a 256-wide embedding through one Linear (no SiLU first)."""
    layers = getattr(dm, "layers", None)
    mod = getattr(layers[0], "adaLN_modulation", None) if layers else None
    return mod is not None and len(mod) > 0 and not isinstance(mod[0], torch.nn.SiLU)


def _takes(module, *names) -> bool:
    """Does ``module``'s forward accept these keyword arguments?"""
    params = inspect.signature(module.forward).parameters.values()
    return any(p.kind is p.VAR_KEYWORD for p in params) or set(names) <= {p.name for p in params}


def _kandinsky5_block_patches_work(dm) -> bool:
    """Its forward's block_wrap calls ``block(x=, context=, time_embed=, freqs=)``."""
    return _takes(dm.visual_transformer_blocks[0], "x", "context", "time_embed", "freqs")


# (predicate on the diffusion model's structure, architecture): checked in order, before the class table
STRUCTURAL: list[tuple[Callable, Architecture]] = [
    (lambda dm: _is(dm, "Flux") and hasattr(dm, "double_stream_modulation_img"), FLUX2),
    (lambda dm: _is(dm, "Chroma") and hasattr(dm, "nerf_blocks"), CHROMA_RADIANCE),
    (lambda dm: _is(dm, "NextDiT") and _z_image_modulation(dm), Z_IMAGE),
    (lambda dm: _is(dm, "HunyuanVideo") and getattr(dm, "cond_type_embedding", None) is not None, HUNYUAN_VIDEO15),
    (lambda dm: _is(dm, "HunyuanVideo") and len(getattr(dm, "patch_size", ()) or ()) == 2, HUNYUAN_IMAGE21),
    # the 48-channel Wan 2.2 VAE latents: the TI2V 5B model (per-frame timestep modulation)
    (lambda dm: _is(dm, "WanModel") and getattr(dm, "out_dim", None) == 48, WAN22_5B),
    (lambda dm: _is(dm, "LTXVModel") and hasattr(dm, "audio_patchify_proj"), LTX2),
    (lambda dm: _is(dm, "QwenImageTransformer2DModel")
     and getattr(dm, "default_ref_method", None) == "index_timestep_zero", QWEN_IMAGE_EDIT),
    (lambda dm: _is(dm, "Kandinsky5") and _kandinsky5_block_patches_work(dm), KANDINSKY5),
]

# class name (any class in the model's MRO) -> architecture
ARCHITECTURES: dict[str, Architecture] = {
    "Flux": FLUX,
    "ChromaRadiance": CHROMA_RADIANCE,
    "Chroma": CHROMA,
    "HunyuanVideo": HUNYUAN_VIDEO,
    "WanModel": WAN21,
    "MMDiT": Architecture("sd3", (("double_block", "joint_blocks"),), calls_model_wrapper=False, label="SD3"),
    "LTXAVModel": LTX2,
    "LTXVModel": LTXV,
    "QwenImageTransformer2DModel": QWEN_IMAGE,
    "Kandinsky5": KANDINSKY5_WHOLE_CALLS,
    # no per-block hook in ComfyUI's forward: output-level caching
    "NextDiT": LUMINA2,
    "HiDreamImageTransformer2DModel": Architecture("hidream", (), "hidream_i1_full", label="HiDream"),
    "MiniTrainDIT": Architecture("cosmos_predict2", (), "cosmos", label="Cosmos Predict2"),
    "GeneralDIT": Architecture("cosmos", (), "cosmos", label="Cosmos"),
    "UNetModel": Architecture("unet", (), label="U-Net"),
}

OUTPUT_ONLY = Architecture("unknown", ())


def identify(diffusion_model) -> Architecture:
    """The architecture entry for a diffusion model; an unknown one gets output-level caching."""
    for predicate, arch in STRUCTURAL:
        try:
            matched = predicate(diffusion_model)
        except Exception:            # a structure this predicate does not expect: not its family
            matched = False
        if matched:
            return arch
    for cls in type(diffusion_model).__mro__:
        arch = ARCHITECTURES.get(cls.__name__)
        if arch is not None:
            if arch.note:
                log.info("Diffusion Cache: %s", arch.note)
            return arch
    log.info("Diffusion Cache: %s is not in the architecture table; caching whole model calls",
             type(diffusion_model).__name__)
    return OUTPUT_ONLY
