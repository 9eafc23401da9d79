"""Tiny, randomly initialised instances of ComfyUI's own diffusion models, for host tests.

Every model is built the way ComfyUI builds models from weights: each spec lists the
shapes of the state-dict keys that ComfyUI's detection reads (``shapes``), and the few
config fields detection cannot infer from weights (``overrides``: Flux's width and
heads, for example, which detection assumes at full size). ``nodes/model_loading.new_model``
builds the model from what the running ComfyUI's detection makes of them, so fields a
ComfyUI version adds (``txt_ids_dims`` in Flux, say) are filled in by that version.
The model is re-initialised with a fixed seed (ComfyUI's ops leave weights
``torch.empty``), saved to a safetensors file and loaded back through ComfyUI:

  route "native":    ``comfy.sd.load_diffusion_model(path)`` (the UNETLoader path): detection
                     sizes the model from the file alone.
  route "overrides": ``nodes/model_loading.load_state_dict(sd, overrides)``: detection, then
                     the overrides; tiny U-Nets also name their class, because their sizes match
                     no class rule of ComfyUI (SD1.5 is matched at 320 channels).

In both routes the saved weights must detect to the same config as the key shapes did,
and the loaded weights are compared with the saved ones. Models are cached per process;
each samples a 3-step euler/cfg-2 run in ~0.05-0.4 s on one CPU thread.

arch             supported model    route      params  latent          conditioning extras
---------------  -----------------  ---------  ------  --------------  -----------------------------------
flux             Flux (dev)         overrides  1.9 M   [1,16,16,16]    ctx 64-d; pooled 64; guidance 3.5
wan21            WAN21_T2V          native     1.1 M   [1,16,1,16,16]  ctx 4096-d (text_dim is fixed)
sd3              SD3                native     1.1 M   [1,16,16,16]    ctx 64-d; pooled 64
hunyuan_video    HunyuanVideo       native     2.5 M   [1,16,1,16,16]  ctx 64-d; pooled 768 (fixed); guidance 6
ltxv             LTXV               native     1.3 M   [1,128,1,8,8]   ctx 4096-d (fixed); attention_mask
qwen_image       QwenImage          overrides  1.3 M   [1,16,1,16,16]  ctx 64-d
lumina2          Lumina2            overrides  1.3 M   [1,16,16,16]    ctx 64-d; attention_mask (-> num_tokens)
sd15             SD15               overrides  1.1 M   [1,4,16,16]     ctx 64-d
chroma           Chroma             overrides  1.2 M   [1,16,16,16]    ctx 64-d; pooled None; guidance 0
hidream          HiDream            overrides  5.1 M   [1,16,16,16]    ctx (T5) 64-d; pooled 64; conditioning_llama3 [1,4,8,48]
cosmos_predict2  CosmosT2IPredict2  overrides  0.7 M   [1,16,1,16,16]  ctx 64-d
sdxl             SDXL               overrides  4.4 M   [1,4,16,16]     ctx 64-d; pooled 64; width/height
flux2            Flux2              overrides  1.6 M   [1,128,8,8]     ctx 64-d (padded to 512 tokens); no pooled, no guidance (Klein)
chroma_radiance  ChromaRadiance     overrides  1.6 M   [1,3,32,32]     ctx 64-d; pixel space, patch 4
z_image          ZImage             overrides  2.9 M   [1,16,16,16]    ctx 64-d; attention_mask (-> num_tokens)
hunyuan_video15  HunyuanVideo15     overrides  2.3 M   [1,32,1,8,8]    ctx 64-d; no pooled; patch 1 (65 input channels)
wan22_5b         WAN22_T2V          native     1.1 M   [1,48,1,16,16]  ctx 4096-d
qwen_image_edit  QwenImage          overrides  1.3 M   [1,16,1,16,16]  ctx 64-d; reference_latents [1,16,1,8,8] (index_timestep_zero)
kandinsky5       Kandinsky5         overrides  0.8 M   [1,16,1,16,16]  ctx 64-d; pooled 64
ltx2             LTXAV              overrides  1.4 M   [1,128,1,8,8]   ctx 128-d (processed video + audio halves); attention_mask

The last eight are the families released after ComfyUI 0.3.64 (``NEW_FAMILIES``; ComfyUI 0.33
loads them under older model classes). ``unsupported_reason`` says why a ComfyUI cannot build
one (its detection does not know the family), and ``build`` skips the test with that reason.

"native" LTXV works because detection derives attention_head_dim = inner_dim / 32, so the
tiny model has 32 heads of 4 channels.

Block patches: ``patches_replace["dit"][(kind, i)]`` as seen by a patch registered with
``ModelPatcher.set_model_patch_replace(fn, "dit", kind, i)``; ``fn(args, extra)`` must return
``extra["original_block"](args)`` or a dict with the same keys. Shapes at batch 2 (cond and
uncond are batched into one call), 16x16 latent -> 64 image tokens, 8 text tokens, hidden 128.

arch           kind          args keys (besides transformer_options)             returns
-------------  ------------  --------------------------------------------------  -------------
flux           double_block  img [B,64,D], txt [B,8,D], vec [B,D], pe, attn_mask  img, txt
flux           single_block  img [B,8+64,D] (txt first), vec, pe, attn_mask       img
chroma         double_block  img, txt, vec (tuple of modulations), pe, attn_mask  img, txt
chroma         single_block  img [B,8+64,D] (txt first), vec (ChromaModulationOut), pe, attn_mask  img
hunyuan_video  double_block  img, txt, vec, pe, attention_mask,                   img, txt
                             modulation_dims_img, modulation_dims_txt
hunyuan_video  single_block  img [B,64+8,D] (img FIRST), vec, pe, attention_mask,  img
                             modulation_dims
wan21          double_block  img, txt (already projected), vec [B,1,6,D] (t-mod), pe  img (txt is not returned)
ltxv           double_block  img, txt, vec [B,1,6D], pe (cos,sin tuple),           img (txt is not returned)
                             attention_mask [B,1,1,L]
sd3            double_block  img, txt, vec [B,D]                                   img, txt (txt is None from
                                                                                   the last, context-pre-only block)
qwen_image     double_block  img, txt, vec, pe                                     img, txt
flux2          double_block  as flux; vec = ((img_mod1, img_mod2), (txt_mod1, txt_mod2))  img, txt
flux2          single_block  as flux; vec = ModulationOut (one for all blocks)      img
qwen_image_edit double_block as qwen_image; vec has 2B rows (reference tokens at t=0) img, txt
ltx2           double_block  img = (video [B,64,D], audio [B,Ta,Da]), v_/a_ contexts,  img (the tuple)
                             timesteps and pe
kandinsky5     double_block  x, context, time_embed, freqs                         (its block_wrap fails in
                                                                                   0.33: no patch can run)

``BLOCK_IO`` below holds the same key sets (the tests check them). Lumina2, HiDream,
Cosmos-predict2 and the UNets (SD15, SDXL) read no ``"dit"`` patches in this ComfyUI
(block_kinds is empty); every arch except SD3 runs its forward through a
``WrappersMP.DIFFUSION_MODEL`` wrapper (SD3's MMDiT has none; ``WrappersMP.APPLY_MODEL`` works
for all).

UNet patch points (comfy/ldm/modules/diffusionmodules/openaimodel.py, UNetModel._forward):
``transformer_options["block"]`` is ("input", i) / ("middle", 0) / ("output", i) while that
block runs; ``patches["emb_patch"]`` (emb), ``patches["input_block_patch"]`` (h after each
input block, before it is pushed as a skip), ``patches["input_block_patch_after_skip"]``,
``patches["output_block_patch"]`` ((h, skip) before each output block's concat) and
``patches["forward_timestep_embed_patch"]`` (per layer type). Attention inside
SpatialTransformers: ``patches_replace["attn1"/"attn2"][(block_name, i)]`` or
``[(block_name, i, transformer_index)]`` (comfy/ldm/modules/attention.py). ``unet_attn_blocks``
lists the (block_name, i) keys of a UNet that contain transformer blocks.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------
# Architecture specifications
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Spec:
    name: str
    shapes: dict                    # state-dict key -> shape, for the keys ComfyUI's detection reads
    overrides: dict                 # the config fields detection cannot infer from the weights
    latent_shape: tuple             # [B, C, H, W] or [B, C, T, H, W]
    cond: Callable[[torch.Generator], tuple]   # -> (context tensor, extras dict)
    block_kinds: dict = field(default_factory=dict)
    diffusion_model_wrapper: bool = True        # forward goes through WrappersMP.DIFFUSION_MODEL
    supported_model: str | None = None          # class for sizes that match no class rule (tiny U-Nets)
    # families released after ComfyUI 0.3.64: the supported-model class detection must pick, and the
    # detected config fields that select the variant; a ComfyUI whose detection gives something else
    # does not know the family, and its tests are skipped there with the reason
    family_class: str | None = None
    requires: dict = field(default_factory=dict)
    # fn(diffusion_model) -> bool: do this ComfyUI's "dit" patches of the arch work at all? (Kandinsky 5
    # in ComfyUI 0.33: its forward calls each block with keywords the block does not take)
    dit_patches_work: Callable | None = None

    @property
    def route(self) -> str:
        """"native": ComfyUI's own loader sizes it from the file alone; "overrides": it needs help."""
        return "overrides" if (self.overrides or self.supported_model) else "native"


def _randn(gen, *shape):
    return torch.randn(*shape, generator=gen)


def _cond_flux(gen):
    return _randn(gen, 1, 8, 64), {"pooled_output": _randn(gen, 1, 64), "guidance": 3.5}


def _cond_wan(gen):
    # WanModel's text_dim is a class default (4096) that detection does not read.
    return _randn(gen, 1, 8, 4096), {}


def _cond_sd3(gen):
    return _randn(gen, 1, 8, 64), {"pooled_output": _randn(gen, 1, 64)}


def _cond_hunyuan_video(gen):
    # detection fixes vec_in_dim to 768 whenever vector_in is present
    return _randn(gen, 1, 8, 64), {"pooled_output": _randn(gen, 1, 768), "guidance": 6.0}


def _cond_ltxv(gen):
    # caption_channels (4096) is a class default; forward() needs an attention mask
    return _randn(gen, 1, 8, 4096), {"attention_mask": torch.ones(1, 8, dtype=torch.long)}


def _cond_qwen(gen):
    return _randn(gen, 1, 8, 64), {}


def _cond_lumina2(gen):
    # num_tokens (required by NextDiT.forward) is derived from the attention mask
    return _randn(gen, 1, 8, 64), {"attention_mask": torch.ones(1, 8, dtype=torch.long)}


def _cond_unet(gen):
    return _randn(gen, 1, 8, 64), {}


def _cond_sdxl(gen):
    return _randn(gen, 1, 8, 64), {"pooled_output": _randn(gen, 1, 64), "width": 128, "height": 128}


def _cond_chroma(gen):
    # Chroma has no pooled vector; a T5-only text encoder hands over pooled_output=None
    return _randn(gen, 1, 8, 64), {"pooled_output": None, "guidance": 0.0}


def _cond_hidream(gen):
    # T5 stream as context, 4 "llama layers" (one per block) as conditioning_llama3
    return _randn(gen, 1, 8, 64), {"pooled_output": _randn(gen, 1, 64),
                                  "conditioning_llama3": _randn(gen, 1, 4, 8, 48)}


def _cond_cosmos(gen):
    return _randn(gen, 1, 8, 64), {}


def _takes(module, *names) -> bool:
    import inspect
    params = inspect.signature(module.forward).parameters.values()
    return any(p.kind is p.VAR_KEYWORD for p in params) or set(names) <= {p.name for p in params}


def _cond_flux2(gen):
    # Flux 2 / Klein: no pooled vector, no guidance embedder (Klein); ComfyUI pads the text to 512 tokens
    return _randn(gen, 1, 8, 64), {}


def _cond_chroma_radiance(gen):
    return _randn(gen, 1, 8, 64), {"pooled_output": None, "guidance": 0.0}


def _cond_hunyuan_video15(gen):
    # no CLIP vector_in: ComfyUI's text encoder hands over pooled_output=None
    return _randn(gen, 1, 8, 64), {"pooled_output": None}


def _cond_qwen_edit(gen):
    # the edit model sees a reference image; with index_timestep_zero its tokens run at t = 0
    return _randn(gen, 1, 8, 64), {"reference_latents": [_randn(gen, 1, 16, 1, 8, 8)]}


def _cond_kandinsky5(gen):
    return _randn(gen, 1, 8, 64), {"pooled_output": _randn(gen, 1, 64)}


def _cond_ltx2(gen):
    # already-processed LTX-2 text features: video and audio halves of caption_channels each
    return _randn(gen, 1, 8, 128), {"attention_mask": torch.ones(1, 8, dtype=torch.long)}


_SPECS = {s.name: s for s in [
    _Spec(
        "flux",
        {
         "double_blocks.0.img_attn.norm.key_norm.scale": (32,),
         "double_blocks.1.img_attn.norm.key_norm.scale": (32,),
         "guidance_in.in_layer.weight": (128, 256),
         "img_in.weight": (128, 64),
         "single_blocks.0.linear1.bias": (896,),
         "single_blocks.1.linear1.bias": (896,),
         "txt_in.weight": (128, 64),
         "vector_in.in_layer.weight": (128, 64)},
        {'hidden_size': 128, 'context_in_dim': 64, 'num_heads': 4, 'axes_dim': [4, 14, 14]},
        (1, 16, 16, 16), _cond_flux, {"double_block": 2, "single_block": 2}),
    _Spec(
        "wan21",
        {
         "blocks.0.cross_attn.k.bias": (128,),
         "blocks.0.ffn.0.weight": (256, 128),
         "blocks.1.cross_attn.k.bias": (128,),
         "head.head.weight": (64, 128),
         "head.modulation": (1, 2, 128),
         "patch_embedding.weight": (128, 16, 1, 2, 2)},
        {},
        (1, 16, 1, 16, 16), _cond_wan, {"double_block": 2}),
    _Spec(
        "sd3",
        {
         "context_embedder.weight": (128, 64),
         "final_layer.linear.weight": (64, 128),
         "joint_blocks.0.context_block.attn.qkv.weight": (384, 128),
         "pos_embed": (1, 256, 128),
         "x_embedder.proj.weight": (128, 16, 2, 2),
         "y_embedder.mlp.0.weight": (128, 64)},
        {},
        (1, 16, 16, 16), _cond_sd3, {"double_block": 2}, diffusion_model_wrapper=False),
    _Spec(
        "hunyuan_video",
        {
         "guidance_in.in_layer.weight": (128, 256),
         "double_blocks.0.img_attn.norm.key_norm.scale": (128,),
         "double_blocks.1.img_attn.norm.key_norm.scale": (128,),
         "final_layer.linear.weight": (64, 128),
         "img_in.proj.weight": (128, 16, 1, 2, 2),
         "single_blocks.0.linear1.bias": (896,),
         "single_blocks.1.linear1.bias": (896,),
         "txt_in.individual_token_refiner.blocks.0.norm1.weight": (128,),
         "txt_in.input_embedder.weight": (128, 64),
         "vector_in.in_layer.weight": (128, 768)},
        {},
        (1, 16, 1, 16, 16), _cond_hunyuan_video, {"double_block": 2, "single_block": 2}),
    _Spec(
        "ltxv",
        {
         "adaln_single.emb.timestep_embedder.linear_1.bias": (128,),
         "transformer_blocks.0.attn1.k_norm.weight": (128,),
         "transformer_blocks.0.attn2.to_k.weight": (128, 128),
         "transformer_blocks.1.attn1.k_norm.weight": (128,)},
        {},
        (1, 128, 1, 8, 8), _cond_ltxv, {"double_block": 2}),
    _Spec(
        "qwen_image",
        {
         "img_in.weight": (128, 64),
         "proj_out.weight": (64, 128),
         "transformer_blocks.0.attn.add_k_proj.bias": (128,),
         "transformer_blocks.0.attn.norm_added_q.weight": (32,),
         "transformer_blocks.1.attn.add_k_proj.bias": (128,),
         "txt_norm.weight": (64,)},
        {'out_channels': 16, 'patch_size': 2, 'attention_head_dim': 32, 'num_attention_heads': 4, 'joint_attention_dim': 64, 'axes_dims_rope': (8, 12, 12)},
        (1, 16, 1, 16, 16), _cond_qwen, {"double_block": 2}),
    _Spec(
        "lumina2",
        {
         "cap_embedder.1.weight": (128, 64),
         "layers.0.adaLN_modulation.1.bias": (512,),
         "layers.1.adaLN_modulation.1.bias": (512,),
         "noise_refiner.0.attention.k_norm.weight": (32,)},
        {'dim': 128, 'n_refiner_layers': 1, 'n_heads': 4, 'n_kv_heads': 2, 'multiple_of': 64, 'axes_dims': [8, 12, 12], 'axes_lens': [300, 512, 512]},
        (1, 16, 16, 16), _cond_lumina2, {}),
    _Spec(
        "sd15",
        {
         "input_blocks.0.0.bias": (32,),
         "input_blocks.0.0.weight": (32, 4, 3, 3),
         "input_blocks.1.0.emb_layers.1.bias": (32,),
         "input_blocks.1.0.in_layers.0.weight": (32,),
         "input_blocks.1.0.out_layers.3.weight": (32, 32, 3, 3),
         "input_blocks.1.1.proj_in.weight": (32, 32, 1, 1),
         "input_blocks.1.1.transformer_blocks.0.attn1.to_k.weight": (32, 32),
         "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (32, 64),
         "input_blocks.2.0.op.bias": (32,),
         "input_blocks.2.0.op.weight": (32, 32, 3, 3),
         "input_blocks.3.0.emb_layers.1.bias": (64,),
         "input_blocks.3.0.in_layers.0.weight": (32,),
         "input_blocks.3.0.out_layers.3.weight": (64, 64, 3, 3),
         "input_blocks.3.1.proj_in.weight": (64, 64, 1, 1),
         "input_blocks.3.1.transformer_blocks.0.attn1.to_k.weight": (64, 64),
         "input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight": (64, 64),
         "middle_block.0.in_layers.0.weight": (64,),
         "middle_block.1.proj_in.weight": (64, 64, 1, 1),
         "middle_block.1.transformer_blocks.0.attn1.to_k.weight": (64, 64),
         "out.2.weight": (4, 32, 3, 3),
         "output_blocks.0.0.in_layers.0.weight": (128,),
         "output_blocks.0.1.proj_in.weight": (64, 64, 1, 1),
         "output_blocks.0.1.transformer_blocks.0.attn1.to_k.weight": (64, 64),
         "output_blocks.0.1.transformer_blocks.0.attn2.to_k.weight": (64, 64),
         "output_blocks.1.0.in_layers.0.weight": (96,),
         "output_blocks.1.1.proj_in.weight": (64, 64, 1, 1),
         "output_blocks.1.1.transformer_blocks.0.attn1.to_k.weight": (64, 64),
         "output_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (64, 64),
         "output_blocks.2.0.in_layers.0.weight": (96,),
         "output_blocks.2.1.proj_in.weight": (32, 32, 1, 1),
         "output_blocks.2.1.transformer_blocks.0.attn1.to_k.weight": (32, 32),
         "output_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": (32, 64),
         "output_blocks.3.0.in_layers.0.weight": (64,),
         "output_blocks.3.1.proj_in.weight": (32, 32, 1, 1),
         "output_blocks.3.1.transformer_blocks.0.attn1.to_k.weight": (32, 32),
         "output_blocks.3.1.transformer_blocks.0.attn2.to_k.weight": (32, 64)},
        {},
        (1, 4, 16, 16), _cond_unet, {}, supported_model="SD15"),
    _Spec(
        "chroma",
        {
         "distilled_guidance_layer.norms.0.scale": (64,),
         "double_blocks.0.img_attn.norm.key_norm.scale": (32,),
         "double_blocks.1.img_attn.norm.key_norm.scale": (32,),
         "img_in.weight": (128, 64),
         "single_blocks.0.linear1.bias": (896,),
         "single_blocks.1.linear1.bias": (896,),
         "txt_in.weight": (128, 64)},
        {'hidden_size': 128, 'context_in_dim': 64, 'num_heads': 4, 'axes_dim': [4, 14, 14], 'out_dim': 128, 'hidden_dim': 64, 'n_layers': 2},
        (1, 16, 16, 16), _cond_chroma, {"double_block": 2, "single_block": 2}),
    _Spec(
        "hidream",
        {
         "caption_projection.0.linear.weight": (128, 48)},
        {'attention_head_dim': 32, 'axes_dims_rope': [16, 8, 8], 'caption_channels': [64, 48], 'llama_layers': [0, 1, 2, 3], 'num_attention_heads': 4, 'num_layers': 2, 'num_single_layers': 2, 'text_emb_dim': 64},
        (1, 16, 16, 16), _cond_hidream, {}),
    _Spec(
        "cosmos_predict2",
        {
         "blocks.0.adaln_modulation_cross_attn.1.weight": (32, 128),
         "blocks.0.mlp.layer1.weight": (512, 128),
         "blocks.1.adaln_modulation_cross_attn.1.weight": (32, 128),
         "x_embedder.proj.1.weight": (128, 68)},
        {'crossattn_emb_channels': 64, 'adaln_lora_dim': 32, 'num_blocks': 2, 'num_heads': 4},
        (1, 16, 1, 16, 16), _cond_cosmos, {}),
    _Spec(
        "sdxl",
        {
         "input_blocks.0.0.bias": (64,),
         "input_blocks.0.0.weight": (64, 4, 3, 3),
         "input_blocks.1.0.emb_layers.1.bias": (64,),
         "input_blocks.1.0.in_layers.0.weight": (64,),
         "input_blocks.1.0.out_layers.3.weight": (64, 64, 3, 3),
         "input_blocks.2.0.op.bias": (64,),
         "input_blocks.2.0.op.weight": (64, 64, 3, 3),
         "input_blocks.3.0.emb_layers.1.bias": (128,),
         "input_blocks.3.0.in_layers.0.weight": (64,),
         "input_blocks.3.0.out_layers.3.weight": (128, 128, 3, 3),
         "input_blocks.3.1.proj_in.weight": (128, 128),
         "input_blocks.3.1.transformer_blocks.0.attn1.to_k.weight": (128, 128),
         "input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight": (128, 64),
         "label_emb.0.0.weight": (256, 1600),
         "middle_block.0.in_layers.0.weight": (128,),
         "middle_block.1.proj_in.weight": (128, 128),
         "middle_block.1.transformer_blocks.0.attn1.to_k.weight": (128, 128),
         "out.2.weight": (4, 64, 3, 3),
         "output_blocks.0.0.in_layers.0.weight": (256,),
         "output_blocks.0.1.proj_in.weight": (128, 128),
         "output_blocks.0.1.transformer_blocks.0.attn1.to_k.weight": (128, 128),
         "output_blocks.0.1.transformer_blocks.0.attn2.to_k.weight": (128, 64),
         "output_blocks.1.0.in_layers.0.weight": (192,),
         "output_blocks.1.1.proj_in.weight": (128, 128),
         "output_blocks.1.1.transformer_blocks.0.attn1.to_k.weight": (128, 128),
         "output_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (128, 64),
         "output_blocks.2.0.in_layers.0.weight": (192,),
         "output_blocks.3.0.in_layers.0.weight": (128,)},
        {},
        (1, 4, 16, 16), _cond_sdxl, {}, supported_model="SDXL"),
    # ---- families released after ComfyUI 0.3.64 (skipped where detection does not know them) ----
    _Spec(
        "flux2",
        {
         "double_blocks.0.img_attn.norm.key_norm.scale": (32,),
         "double_blocks.1.img_attn.norm.key_norm.scale": (32,),
         "double_stream_modulation_img.lin.weight": (768, 128),
         "img_in.weight": (128, 128),
         "single_blocks.0.linear1.weight": (1152, 128),
         "single_blocks.1.linear1.weight": (1152, 128),
         "txt_in.weight": (128, 64)},
        {'num_heads': 4, 'axes_dim': [8, 8, 8, 8]},
        (1, 128, 8, 8), _cond_flux2, {"double_block": 2, "single_block": 2},
        family_class="Flux2", requires={"image_model": "flux2", "global_modulation": True}),
    _Spec(
        "chroma_radiance",
        {
         "distilled_guidance_layer.norms.0.scale": (64,),
         "double_blocks.0.img_attn.norm.key_norm.scale": (32,),
         "double_blocks.1.img_attn.norm.key_norm.scale": (32,),
         "img_in_patch.weight": (128, 3, 4, 4),
         "nerf_blocks.0.norm.scale": (16,),
         "single_blocks.0.linear1.bias": (896,),
         "single_blocks.1.linear1.bias": (896,),
         "txt_in.weight": (128, 64)},
        # ComfyUI 0.3.64's detection fixes the text width and the patch size; 0.33 reads both from the weights
        {'hidden_size': 128, 'context_in_dim': 64, 'patch_size': 4, 'num_heads': 4, 'axes_dim': [4, 14, 14],
         'out_dim': 128, 'hidden_dim': 64, 'n_layers': 2, 'nerf_hidden_size': 16, 'nerf_mlp_ratio': 2, 'nerf_depth': 2},
        (1, 3, 32, 32), _cond_chroma_radiance, {"double_block": 2, "single_block": 2},
        family_class="ChromaRadiance", requires={"image_model": "chroma_radiance"}),
    _Spec(
        "z_image",
        {
         "cap_embedder.1.weight": (256, 64),
         "cap_pad_token": (1, 256),
         "layers.0.adaLN_modulation.0.bias": (1024,),
         "layers.1.adaLN_modulation.0.bias": (1024,),
         "noise_refiner.0.attention.k_norm.weight": (32,)},
        # width 256: Z-Image's modulation reads a 256-wide timestep embedding (min(dim, 256) = 256)
        {'n_refiner_layers': 1, 'n_heads': 8, 'n_kv_heads': 8, 'multiple_of': 64, 'axes_dims': [8, 12, 12],
         'axes_lens': [300, 512, 512], 'rope_theta': 256.0, 'ffn_dim_multiplier': 1.0,
         'z_image_modulation': True, 'time_scale': 1000.0, 'pad_tokens_multiple': 32},
        (1, 16, 16, 16), _cond_lumina2, {}, supported_model="ZImage", family_class="ZImage"),
    _Spec(
        "hunyuan_video15",
        {
         "cond_type_embedding.weight": (3, 128),
         "double_blocks.0.img_attn.norm.key_norm.scale": (128,),
         "double_blocks.1.img_attn.norm.key_norm.scale": (128,),
         "final_layer.linear.weight": (32, 128),
         "img_in.proj.weight": (128, 65, 1, 1, 1),
         "single_blocks.0.linear1.bias": (896,),
         "single_blocks.1.linear1.bias": (896,),
         "txt_in.individual_token_refiner.blocks.0.norm1.weight": (128,),
         "txt_in.input_embedder.weight": (128, 64),
         "vision_in.proj.0.weight": (32,)},
        {},
        (1, 32, 1, 8, 8), _cond_hunyuan_video15, {"double_block": 2, "single_block": 2},
        supported_model="HunyuanVideo15", family_class="HunyuanVideo15",
        requires={"use_cond_type_embedding": True}),
    _Spec(
        "wan22_5b",
        {
         "blocks.0.cross_attn.k.bias": (128,),
         "blocks.0.ffn.0.weight": (256, 128),
         "blocks.1.cross_attn.k.bias": (128,),
         "head.head.weight": (192, 128),
         "head.modulation": (1, 2, 128),
         "patch_embedding.weight": (128, 48, 1, 2, 2)},
        {},
        (1, 48, 1, 16, 16), _cond_wan, {"double_block": 2}, family_class="WAN22_T2V"),
    _Spec(
        "qwen_image_edit",
        {
         "__index_timestep_zero__": (0,),
         "img_in.weight": (128, 64),
         "proj_out.weight": (64, 128),
         "transformer_blocks.0.attn.add_k_proj.bias": (128,),
         "transformer_blocks.0.attn.norm_added_q.weight": (32,),
         "transformer_blocks.1.attn.add_k_proj.bias": (128,),
         "txt_norm.weight": (64,)},
        {'out_channels': 16, 'patch_size': 2, 'attention_head_dim': 32, 'num_attention_heads': 4,
         'joint_attention_dim': 64, 'axes_dims_rope': (8, 12, 12)},
        (1, 16, 1, 16, 16), _cond_qwen_edit, {"double_block": 2},
        family_class="QwenImage", requires={"default_ref_method": "index_timestep_zero"}),
    _Spec(
        "kandinsky5",
        {
         "text_transformer_blocks.0.feed_forward.in_layer.weight": (256, 128),
         "time_embeddings.in_layer.bias": (64,),
         "visual_embeddings.in_layer.bias": (128,),
         "visual_embeddings.in_layer.weight": (128, 132),
         "visual_transformer_blocks.0.cross_attention.key_norm.weight": (32,),
         "visual_transformer_blocks.0.feed_forward.in_layer.weight": (256, 128),
         "visual_transformer_blocks.1.cross_attention.key_norm.weight": (32,)},
        {'axes_dims': (8, 12, 12), 'in_text_dim': 64, 'in_text_dim2': 64},
        (1, 16, 1, 16, 16), _cond_kandinsky5, {"double_block": 2},
        family_class="Kandinsky5", requires={"image_model": "kandinsky5"},
        dit_patches_work=lambda dm: _takes(dm.visual_transformer_blocks[0], "x", "context", "time_embed", "freqs")),
    _Spec(
        "ltx2",
        {
         "adaln_single.emb.timestep_embedder.linear_1.bias": (128,),
         "audio_adaln_single.linear.weight": (384, 64),
         "transformer_blocks.0.attn1.k_norm.weight": (128,),
         "transformer_blocks.0.attn2.to_k.weight": (128, 128),
         "transformer_blocks.1.attn1.k_norm.weight": (128,)},
        {'audio_attention_head_dim': 4, 'audio_num_attention_heads': 16, 'audio_cross_attention_dim': 64,
         'caption_channels': 64, 'connector_attention_head_dim': 4, 'connector_num_attention_heads': 16,
         'connector_num_layers': 1},
        (1, 128, 1, 8, 8), _cond_ltx2, {"double_block": 2},
        family_class="LTXAV", requires={"image_model": "ltxav"}),
]}

ARCHS: list[str] = list(_SPECS)
# the families released after ComfyUI 0.3.64 (loaded under older class names in ComfyUI 0.33)
NEW_FAMILIES: list[str] = [a for a in ARCHS if _SPECS[a].family_class]
UNET_ARCHS: list[str] = [a for a in ARCHS if any(k.startswith("input_blocks.") for k in _SPECS[a].shapes)]

_T = "transformer_options"
# (args keys, returned keys) of each "dit" block patch, per arch and block kind.
BLOCK_IO: dict[str, dict[str, tuple[frozenset, frozenset]]] = {
    "flux": {
        "double_block": (frozenset({"img", "txt", "vec", "pe", "attn_mask", _T}), frozenset({"img", "txt"})),
        "single_block": (frozenset({"img", "vec", "pe", "attn_mask", _T}), frozenset({"img"})),
    },
    "chroma": {
        "double_block": (frozenset({"img", "txt", "vec", "pe", "attn_mask", _T}), frozenset({"img", "txt"})),
        "single_block": (frozenset({"img", "vec", "pe", "attn_mask", _T}), frozenset({"img"})),
    },
    "hunyuan_video": {
        "double_block": (frozenset({"img", "txt", "vec", "pe", "attention_mask", "modulation_dims_img",
                                    "modulation_dims_txt", _T}), frozenset({"img", "txt"})),
        "single_block": (frozenset({"img", "vec", "pe", "attention_mask", "modulation_dims", _T}),
                         frozenset({"img"})),
    },
    "wan21": {"double_block": (frozenset({"img", "txt", "vec", "pe", _T}), frozenset({"img"}))},
    "ltxv": {"double_block": (frozenset({"img", "txt", "vec", "pe", "attention_mask", _T}), frozenset({"img"}))},
    "sd3": {"double_block": (frozenset({"img", "txt", "vec", _T}), frozenset({"img", "txt"}))},
    "qwen_image": {"double_block": (frozenset({"img", "txt", "vec", "pe", _T}), frozenset({"img", "txt"}))},
    # img is the tuple (video, audio); the modulations come as v_/a_ pairs, some as CompressedTimestep
    "ltx2": {"double_block": (frozenset({"img", "v_context", "a_context", "attention_mask", "v_timestep",
                                         "a_timestep", "v_pe", "a_pe", "v_cross_pe", "a_cross_pe",
                                         "v_cross_scale_shift_timestep", "a_cross_scale_shift_timestep",
                                         "v_cross_gate_timestep", "a_cross_gate_timestep", "self_attention_mask",
                                         "v_prompt_timestep", "a_prompt_timestep", _T}), frozenset({"img"}))},
}
# the newer families whose blocks take the arguments of an older one
for _new, _old in (("flux2", "flux"), ("chroma_radiance", "chroma"), ("hunyuan_video15", "hunyuan_video"),
                   ("wan22_5b", "wan21"), ("qwen_image_edit", "qwen_image")):
    BLOCK_IO[_new] = BLOCK_IO[_old]


# Arguments that later ComfyUI versions pass to a block besides the ones above (the pack
# passes block arguments through untouched, so it needs none of them).
BLOCK_ARGS_ADDED_LATER: dict[str, dict[str, frozenset]] = {
    "ltxv": {"double_block": frozenset({"prompt_timestep", "self_attention_mask"})},   # by 0.33
}


def block_io_seen_as_documented(arch: str, seen: dict) -> dict:
    """``seen`` (kind -> (args, returned)) without the arguments later versions added."""
    added = BLOCK_ARGS_ADDED_LATER.get(arch, {})
    return {kind: (args - added.get(kind, frozenset()), out) for kind, (args, out) in seen.items()}


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------

@dataclass
class TinyArch:
    name: str
    model: Any                      # comfy.model_patcher.ModelPatcher
    positive: list
    negative: list
    latent: dict
    block_kinds: dict[str, int]
    load_route: str
    supported_model: str = ""
    unet_config: dict = field(default_factory=dict)
    weights_path: Path | None = None
    diffusion_model_wrapper: bool = True     # False: WrappersMP.DIFFUSION_MODEL is never called (SD3)
    dit_patches_fail: bool = False           # True: any "dit" patch breaks this ComfyUI's forward (block_kinds is empty)
    unet_attn_blocks: list = field(default_factory=list)   # UNets: [(block_name, i, n_transformers)]


_CACHE: dict[str, TinyArch] = {}
_SEED = 20240917


def _model_loading():
    path = REPO_ROOT / "nodes" / "model_loading.py"
    spec = importlib.util.spec_from_file_location("dc_model_loading", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_NORM_TYPES = (torch.nn.LayerNorm, torch.nn.GroupNorm) + ((torch.nn.RMSNorm,) if hasattr(torch.nn, "RMSNorm") else ())
_WEIGHT_TYPES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Embedding,
                 torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)


def _is_norm(module) -> bool:
    return isinstance(module, _NORM_TYPES) or type(module).__name__.endswith("Norm")


@torch.no_grad()
def init_weights(root: torch.nn.Module, seed: int) -> dict[str, list[str]]:
    """Re-initialise every parameter of ``root`` (ComfyUI ops leave them ``torch.empty``).

    Norm weights/scales -> 1, norm biases -> 0; Linear/Conv/Embedding weights ~ N(0, 1/fan_in);
    other biases ~ N(0, 0.02); free parameters (modulation tables, pad tokens, ...) ~ N(0, 1/dim).
    Returns which rule each parameter got (for inspection).
    """
    gen = torch.Generator().manual_seed(seed)
    rules: dict[str, list[str]] = {"norm": [], "weight": [], "bias": [], "free": []}
    for mod_name, module in root.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if _is_norm(module):
                p.fill_(0.0 if p_name == "bias" else 1.0)
                rules["norm"].append(full)
            elif isinstance(module, _WEIGHT_TYPES) and p_name == "weight":
                if isinstance(module, torch.nn.Embedding):
                    std = 1.0
                else:
                    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(p)
                    std = fan_in ** -0.5
                p.copy_(torch.randn(p.shape, generator=gen) * std)
                rules["weight"].append(full)
            elif p_name == "bias":
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
                rules["bias"].append(full)
            else:
                std = (p.shape[-1] if p.ndim else 1) ** -0.5
                p.copy_(torch.randn(p.shape, generator=gen) * std)
                rules["free"].append(full)
    return rules


@torch.no_grad()
def _init_buffers(name: str, diffusion_model: torch.nn.Module) -> None:
    """Persistent buffers that ComfyUI creates with torch.empty and loads from the file."""
    if name == "sd3":
        from comfy.ldm.modules.diffusionmodules.mmdit import get_2d_sincos_pos_embed
        pe = diffusion_model.pos_embed
        grid = int(math.isqrt(pe.shape[1]))
        table = get_2d_sincos_pos_embed(pe.shape[2], grid)
        pe.copy_(torch.from_numpy(table).reshape(pe.shape).to(pe.dtype))


def _build_state_dict(spec: _Spec, seed: int) -> tuple[dict[str, torch.Tensor], dict]:
    """Fresh weights of ``spec``, built from what ComfyUI's detection makes of its key shapes;
    also returns the detected config (with the overrides)."""
    model = _model_loading().new_model(spec.shapes, spec.overrides, spec.supported_model)
    dm = model.diffusion_model
    init_weights(dm, seed)
    _init_buffers(spec.name, dm)
    return {k: v.detach().clone().contiguous() for k, v in dm.state_dict().items()}, dict(model.model_config.unet_config)


def _conditioning(spec: _Spec, seed: int) -> tuple[list, list]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        ctx, extras = spec.cond(gen)
        out.append([[ctx, dict(extras)]])
    return out[0], out[1]


def _unet_attn_blocks(diffusion_model) -> list[tuple[str, int, int]]:
    """(block_name, index, transformer depth) of every UNet block holding a SpatialTransformer."""
    from comfy.ldm.modules.attention import SpatialTransformer
    found = []
    groups = [("input", getattr(diffusion_model, "input_blocks", None)),
              ("middle", [diffusion_model.middle_block] if getattr(diffusion_model, "middle_block", None) is not None else None),
              ("output", getattr(diffusion_model, "output_blocks", None))]
    for block_name, blocks in groups:
        for i, block in enumerate(blocks or []):
            depth = sum(len(m.transformer_blocks) for m in block.modules() if isinstance(m, SpatialTransformer))
            if depth:
                found.append((block_name, i, depth))
    return found


def _normalise(v):
    if isinstance(v, (tuple, list)):
        return [_normalise(x) for x in v]
    if isinstance(v, dict):
        return {k: _normalise(x) for k, x in v.items()}
    return v


def _comfyui_version() -> str:
    try:
        import comfyui_version
        return f"ComfyUI {comfyui_version.__version__}"
    except ImportError:
        return "this ComfyUI"


_UNKNOWN: dict[str, str | None] = {}


def unsupported_reason(arch: str) -> str | None:
    """Why the running ComfyUI cannot build ``arch`` (its detection does not know the family), or None."""
    if arch not in _UNKNOWN:
        _UNKNOWN[arch] = _why_unsupported(_SPECS[arch])
    return _UNKNOWN[arch]


def _why_unsupported(spec: _Spec) -> str | None:
    if not spec.family_class:
        return None
    import comfy.supported_models
    prefix = f"{_comfyui_version()} does not know {spec.name}"
    if not hasattr(comfy.supported_models, spec.family_class):
        return f"{prefix}: it has no supported model {spec.family_class}"
    skeleton = {k: torch.zeros(tuple(shape)) for k, shape in spec.shapes.items()}
    try:
        config = _model_loading().detect_model_config(skeleton, spec.overrides, spec.supported_model)
    except ValueError as e:
        return f"{prefix}: {e}"
    got = type(config).__name__
    wrong = {k: config.unet_config.get(k) for k, v in spec.requires.items() if config.unet_config.get(k) != v}
    if got != spec.family_class or wrong:
        return (f"{prefix}: its detection makes these weights a {got} {wrong or ''}, "
                f"not a {spec.family_class} {spec.requires or ''}").rstrip()
    return None


def build(arch: str, tmp_dir) -> TinyArch:
    """Build (or fetch from the per-process cache) the tiny model ``arch``.

    The weights are written to ``tmp_dir/<arch>.safetensors`` and loaded back through
    ComfyUI: ``comfy.sd.load_diffusion_model`` for archs whose sizes detection reads
    (route "native"), else ``nodes/model_loading.load_state_dict`` with the overrides
    (route "overrides").
    """
    if arch in _CACHE:
        return _CACHE[arch]
    if arch not in _SPECS:
        raise KeyError(f"unknown tiny arch {arch!r}; known: {ARCHS}")
    spec = _SPECS[arch]
    reason = unsupported_reason(arch)
    if reason:
        import pytest
        pytest.skip(reason)
    import comfy.sd
    import comfy.utils

    seed = _SEED + ARCHS.index(arch)
    sd, built_config = _build_state_dict(spec, seed)
    path = Path(tmp_dir) / f"{arch}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    comfy.utils.save_torch_file(sd, str(path))

    if spec.route == "native":
        patcher = comfy.sd.load_diffusion_model(str(path))
    else:
        patcher = _model_loading().load_state_dict(comfy.utils.load_torch_file(str(path)), spec.overrides,
                                                   supported_model=spec.supported_model)
    if spec.family_class and type(patcher.model.model_config).__name__ != spec.family_class:
        raise AssertionError(f"{arch}: loaded as {type(patcher.model.model_config).__name__}, "
                             f"not {spec.family_class}")
    # the full weights detect as the key shapes did: the spec's shapes are enough for detection
    got = {k: _normalise(v) for k, v in patcher.model.model_config.unet_config.items() if k != "dtype"}
    want = {k: _normalise(v) for k, v in built_config.items() if k != "dtype"}
    if got != want:
        diff = {k: (want.get(k), got.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
        raise AssertionError(f"{arch}: the saved weights detect differently from the key shapes: {diff}")

    # the loaded weights must be exactly the saved ones (catches silently skipped keys)
    loaded_sd = patcher.model.diffusion_model.state_dict()
    missing = sorted(set(sd) - set(loaded_sd))
    if missing:
        raise AssertionError(f"{arch}: keys not in the loaded model: {missing[:5]}")
    for k, v in sd.items():
        if not torch.equal(loaded_sd[k].float(), v.float()):
            raise AssertionError(f"{arch}: weight {k} differs after loading")

    positive, negative = _conditioning(spec, seed)
    block_kinds = dict(spec.block_kinds)
    dit_patches_fail = spec.dit_patches_work is not None and not spec.dit_patches_work(patcher.model.diffusion_model)
    if dit_patches_fail:
        block_kinds = {}
    tiny = TinyArch(
        name=arch, model=patcher, positive=positive, negative=negative,
        latent={"samples": torch.zeros(spec.latent_shape)},
        block_kinds=block_kinds, load_route=spec.route, dit_patches_fail=dit_patches_fail,
        supported_model=type(patcher.model.model_config).__name__,
        unet_config=dict(patcher.model.model_config.unet_config),
        weights_path=path, diffusion_model_wrapper=spec.diffusion_model_wrapper,
        unet_attn_blocks=_unet_attn_blocks(patcher.model.diffusion_model),
    )
    _CACHE[arch] = tiny
    return tiny


def sample(comfy_nodes, tiny: TinyArch, model=None, steps: int = 3, cfg: float = 2.0, seed: int = 0,
           sampler: str = "euler", scheduler: str = "simple", positive=None, negative=None) -> torch.Tensor:
    """Run ComfyUI's KSampler node on ``tiny`` (or a patched clone ``model``); return the latent."""
    out = comfy_nodes.KSampler().sample(model if model is not None else tiny.model, seed, steps, cfg,
                                        sampler, scheduler, tiny.positive if positive is None else positive,
                                        tiny.negative if negative is None else negative, dict(tiny.latent))
    return out[0]["samples"]


def stats_of(model) -> dict:
    """The run statistics of the last sampling run of a cached model."""
    return model.model_options["transformer_options"]["diffusion_cache"].last_stats
