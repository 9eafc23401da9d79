"""Map ComfyUI diffusion-model classes to block layouts and TeaCache probes.

Only public surfaces of ComfyUI are used: the block lists a model already has, the
``patches_replace["dit"]`` keys its forward pass consults, and the submodules of
block 0 (called, never replaced) to measure TeaCache's modulated input. An
architecture that exposes no per-block hook gets output-level caching through the
DIFFUSION_MODEL wrapper.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from ..cache_core.layout import BlockLayout

log = logging.getLogger("diffusion_cache")


def _flux_modulated_input(block, args) -> torch.Tensor:
    """(1 + scale) * LayerNorm(img) + shift of block 0's first image modulation (Flux, HunyuanVideo)."""
    mod1, _ = block.img_mod(args["vec"])
    normed = block.img_norm1(args["img"])
    scale, shift = mod1.scale, mod1.shift
    return normed * (1 + scale) + shift


def _ltx_modulated_input(block, args) -> torch.Tensor:
    """rms_norm(x) * (1 + scale_msa) + shift_msa of block 0 (LTX-Video)."""
    x, timestep = args["img"], args["vec"]
    table = block.scale_shift_table
    mods = table[None, None].to(device=x.device, dtype=x.dtype) + \
        timestep.reshape(x.shape[0], timestep.shape[1], table.shape[0], -1)
    shift_msa, scale_msa = mods[:, :, 0], mods[:, :, 1]
    normed = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype)
    return normed * (1 + scale_msa) + shift_msa


def _timestep_embedding(block, args) -> torch.Tensor:
    """Wan's TeaCache indicator: the per-block timestep modulation e0 (retention mode)."""
    return args["vec"]


@dataclass(frozen=True)
class Architecture:
    name: str
    block_lists: tuple               # ((patch kind, attribute holding the ModuleList), ...)
    teacache_profile: str = "generic"
    probe: Callable | None = None    # fn(block0_module, block_args) -> tensor
    probe_name: str = "block_input"
    calls_model_wrapper: bool = True  # does its forward fire WrappersMP.DIFFUSION_MODEL?

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


# class name (any class in the model's MRO) -> architecture
ARCHITECTURES: dict[str, Architecture] = {
    "Flux": Architecture("flux", (("double_block", "double_blocks"), ("single_block", "single_blocks")),
                         "flux", _flux_modulated_input, "modulated_input"),
    "Chroma": Architecture("chroma", (("double_block", "double_blocks"), ("single_block", "single_blocks"))),
    "HunyuanVideo": Architecture("hunyuan_video",
                                 (("double_block", "double_blocks"), ("single_block", "single_blocks")),
                                 "hunyuan_video", _flux_modulated_input, "modulated_input"),
    "WanModel": Architecture("wan21", (("double_block", "blocks"),), "wan2.1_t2v_1.3b_e0",
                             _timestep_embedding, "timestep_embedding"),
    "MMDiT": Architecture("sd3", (("double_block", "joint_blocks"),), calls_model_wrapper=False),
    "LTXVModel": Architecture("ltxv", (("double_block", "transformer_blocks"),), "ltx_video",
                              _ltx_modulated_input, "modulated_input"),
    "QwenImageTransformer2DModel": Architecture("qwen_image", (("double_block", "transformer_blocks"),)),
    # no per-block hook in ComfyUI's forward: output-level caching
    "NextDiT": Architecture("lumina2", (), "lumina2_comfyui"),
    "HiDreamImageTransformer2DModel": Architecture("hidream", (), "hidream_i1_full"),
    "MiniTrainDIT": Architecture("cosmos_predict2", (), "cosmos"),
    "GeneralDIT": Architecture("cosmos", (), "cosmos"),
    "UNetModel": Architecture("unet", ()),
}

OUTPUT_ONLY = Architecture("unknown", ())


def identify(diffusion_model) -> Architecture:
    """The architecture entry for a diffusion model; an unknown one gets output-level caching."""
    for cls in type(diffusion_model).__mro__:
        arch = ARCHITECTURES.get(cls.__name__)
        if arch is not None:
            return arch
    log.info("Diffusion Cache: %s is not in the architecture table; caching whole model calls",
             type(diffusion_model).__name__)
    return OUTPUT_ONLY
