"""Write the example workflows in workflows/ (UI format, version 0.4).

    python tests/web/make_workflows.py --server http://127.0.0.1:8188
    python tests/web/make_workflows.py --object-info object_info.json
    python tests/web/make_workflows.py --server URL --only tiny_flux_compare

Widget values are laid out from the server's /object_info (input order, defaults,
``control_after_generate`` slots), so the files stay in step with the nodes: rerun
this after a node gains or loses an input. tests/web/test_browser.py loads every
file in the real frontend and checks it against /object_info.
"""
from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "workflows"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
NOTE_COLOR, NOTE_BG = "#432", "#653"
CACHE_COLOR, CACHE_BG = "#233", "#355"


def _is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _default(spec):
    kind, opts = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
    if "default" in opts:
        return opts["default"]
    if isinstance(kind, list):
        return kind[0] if kind else None
    if kind == "COMBO":
        options = opts.get("options") or []
        return options[0] if options else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def _seed_control(spec) -> bool:
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return bool(opts.get("control_after_generate"))


def input_specs(info: dict, node_type: str) -> list[tuple[str, list]]:
    """(name, spec) of a node's inputs in the order the frontend creates them."""
    d = info[node_type]
    order = d.get("input_order") or {s: list(d["input"].get(s, {})) for s in ("required", "optional")}
    out = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            out.append((name, d["input"][section][name]))
    return out


def widget_layout(info: dict, node_type: str) -> list[str]:
    """Names of the entries of widgets_values ("<name>:control" for a seed's control widget)."""
    names = []
    for name, spec in input_specs(info, node_type):
        if _is_widget(spec):
            names.append(name)
            if _seed_control(spec):
                names.append(name + ":control")
    return names


class Workflow:
    def __init__(self, info: dict):
        self.info = info
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def node(self, node_type: str, pos, values: dict | None = None, title: str | None = None,
             width: int = 320, color=None) -> dict:
        values = dict(values or {})
        nid = len(self.nodes) + 1
        inputs, widgets = [], []
        for name, spec in input_specs(self.info, node_type):
            if _is_widget(spec):
                if name not in values and _default(spec) is None:
                    raise ValueError(f"{node_type}.{name} needs a value (no default)")
                widgets.append(values.pop(name, _default(spec)))
                if _seed_control(spec):
                    widgets.append(values.pop(name + ":control", "fixed"))
            else:
                inputs.append({"name": name, "type": spec[0], "link": None})
        if values:
            raise ValueError(f"{node_type} has no widget input(s) {sorted(values)}")
        d = self.info[node_type]
        outputs = [{"name": (d.get("output_name") or d["output"])[i], "type": t, "links": [], "slot_index": i}
                   for i, t in enumerate(d["output"])]
        height = 46 + 22 * (len(widgets) + max(len(inputs), len(outputs)))
        n = {"id": nid, "type": node_type, "pos": [int(pos[0]), int(pos[1])], "size": [width, height],
             "flags": {}, "order": 0, "mode": 0, "inputs": inputs, "outputs": outputs,
             "properties": {"Node name for S&R": node_type}, "widgets_values": widgets}
        if title:
            n["title"] = title
        if color:
            n["color"], n["bgcolor"] = color
        self.nodes.append(n)
        return n

    def note(self, text: str, pos, width: int = 400, height: int = 220, title: str = "Note") -> dict:
        nid = len(self.nodes) + 1
        n = {"id": nid, "type": "Note", "pos": [int(pos[0]), int(pos[1])], "size": [width, height],
             "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": [],
             "properties": {"text": ""}, "widgets_values": [text], "title": title,
             "color": NOTE_COLOR, "bgcolor": NOTE_BG}
        self.nodes.append(n)
        return n

    def link(self, src: dict, output, dst: dict, input_name: str) -> None:
        slot = output if isinstance(output, int) else [o["name"] for o in src["outputs"]].index(output)
        out = src["outputs"][slot]
        target = [i["name"] for i in dst["inputs"]].index(input_name)
        if dst["inputs"][target]["link"] is not None:
            raise ValueError(f"{dst['type']}.{input_name} is already linked")
        lid = len(self.links) + 1
        out["links"].append(lid)
        dst["inputs"][target]["link"] = lid
        self.links.append([lid, src["id"], slot, dst["id"], target, out["type"]])

    def to_json(self) -> dict:
        # execution order: a node after everything it reads from
        deps = {n["id"]: {lk[1] for lk in self.links if lk[3] == n["id"]} for n in self.nodes}
        order, done = [], set()
        while len(order) < len(self.nodes):
            for n in self.nodes:
                if n["id"] not in done and deps[n["id"]] <= done:
                    order.append(n["id"])
                    done.add(n["id"])
        for n in self.nodes:
            n["order"] = order.index(n["id"])
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {},
                "extra": {"ds": {"scale": 0.75, "offset": [40, 60]}}, "version": 0.4}


def cache(wf: Workflow, pos, title="Diffusion Cache", **values) -> dict:
    return wf.node("DiffusionCache", pos, values, title=title, width=340, color=(CACHE_COLOR, CACHE_BG))


# ---- the workflows ------------------------------------------------------------------------

def flux_dev(info):
    wf = Workflow(info)
    unet = wf.node("UNETLoader", (0, 0), {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"})
    clip = wf.node("DualCLIPLoader", (0, 150), {"clip_name1": "clip_l.safetensors",
                                                "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"})
    vae = wf.node("VAELoader", (0, 330), {"vae_name": "ae.safetensors"})
    dc = cache(wf, (380, 0), method="first_block", threshold=0.12, warmup_steps=1, last_steps_computed=1)
    pos = wf.node("CLIPTextEncode", (380, 520), {"text": "a red fox reading a newspaper in a sunlit cafe, "
                                                           "35mm photo, shallow depth of field"},
                  title="Prompt")
    neg = wf.node("CLIPTextEncode", (380, 760), {"text": ""}, title="Negative (unused at cfg 1)")
    guide = wf.node("FluxGuidance", (780, 520), {"guidance": 3.5})
    latent = wf.node("EmptySD3LatentImage", (780, 680), {"width": 1024, "height": 1024, "batch_size": 1})
    ks = wf.node("KSampler", (1160, 0), {"seed": 42, "steps": 28, "cfg": 1.0, "sampler_name": "euler",
                                          "scheduler": "simple", "denoise": 1.0})
    dec = wf.node("VAEDecode", (1540, 0))
    save = wf.node("SaveImage", (1540, 140), {"filename_prefix": "diffusion_cache/flux_dev"}, width=400)
    wf.link(unet, 0, dc, "model")
    wf.link(dc, 0, ks, "model")
    wf.link(clip, 0, pos, "clip")
    wf.link(clip, 0, neg, "clip")
    wf.link(pos, 0, guide, "conditioning")
    wf.link(guide, 0, ks, "positive")
    wf.link(neg, 0, ks, "negative")
    wf.link(latent, 0, ks, "latent_image")
    wf.link(ks, 0, dec, "samples")
    wf.link(vae, 0, dec, "vae")
    wf.link(dec, 0, save, "images")
    wf.note(
        "FLUX.1-dev with First-Block Cache\n\n"
        "method first_block, threshold 0.12: block 0 always runs; when its residual changed by less "
        "than 12 % (relative L1, accumulated since the last full step) the other 56 blocks are skipped "
        "and their cached residual is reused.\n\n"
        "Why: Flux-dev's 28 guidance-distilled steps change slowly in the middle of the schedule, so "
        "block 0 is a cheap and reliable change detector, and no calibration profile is needed. "
        "0.12 is a common speed setting; use 0.08 (the default, threshold 0) if fine detail drifts, "
        "or teacache / magcache with the 'flux' profile for a calibrated alternative.\n\n"
        "warmup_steps 1 and last_steps_computed 1 keep the first (layout) and last (detail) steps exact. "
        "The timeline under the node shows which steps ran.", (780, 0), height=300)
    return wf


def _sd_checkpoint(info, ckpt, width, height, steps, cfg, prompt, prefix, note, cache_values):
    wf = Workflow(info)
    ckp = wf.node("CheckpointLoaderSimple", (0, 0), {"ckpt_name": ckpt})
    dc = cache(wf, (380, 0), **cache_values)
    pos = wf.node("CLIPTextEncode", (380, 520), {"text": prompt}, title="Prompt")
    neg = wf.node("CLIPTextEncode", (380, 760), {"text": "blurry, low quality, watermark, text"},
                  title="Negative")
    latent = wf.node("EmptyLatentImage", (780, 520), {"width": width, "height": height, "batch_size": 1})
    ks = wf.node("KSampler", (1160, 0), {"seed": 42, "steps": steps, "cfg": cfg, "sampler_name": "euler",
                                          "scheduler": "normal", "denoise": 1.0})
    dec = wf.node("VAEDecode", (1540, 0))
    save = wf.node("SaveImage", (1540, 140), {"filename_prefix": prefix}, width=400)
    wf.link(ckp, "MODEL", dc, "model")
    wf.link(dc, 0, ks, "model")
    wf.link(ckp, "CLIP", pos, "clip")
    wf.link(ckp, "CLIP", neg, "clip")
    wf.link(pos, 0, ks, "positive")
    wf.link(neg, 0, ks, "negative")
    wf.link(latent, 0, ks, "latent_image")
    wf.link(ks, 0, dec, "samples")
    wf.link(ckp, "VAE", dec, "vae")
    wf.link(dec, 0, save, "images")
    wf.note(note, (780, 0), height=300)
    return wf


def sd15(info):
    return _sd_checkpoint(
        info, "v1-5-pruned-emaonly-fp16.safetensors", 512, 512, 30, 7.0,
        "a cozy cabin in a snowy forest at dusk, warm light in the windows, detailed illustration",
        "diffusion_cache/sd15",
        "Stable Diffusion 1.5 with DeepCache\n\n"
        "method deepcache, interval 3, deepcache_depth 0, deepcache_mode uniform: every 3rd step runs "
        "the whole U-Net and keeps the deep feature that enters its last output blocks; the two steps "
        "in between run only the first input block and the matching output blocks, on top of that "
        "cached deep feature.\n\n"
        "Why: a U-Net's deep, low-resolution features change slowly from step to step while the "
        "shallow, high-resolution branch carries the detail, so recomputing just the shallow branch "
        "keeps detail and skips most of the work, with no calibration. Raise deepcache_depth to "
        "recompute more of the shallow branch (closer to uncached, slower); choose non-uniform to put "
        "more full steps in the middle of the run. The timeline shows the full steps as computed and "
        "the shallow-only steps as reused.",
        dict(method="deepcache", interval=3, deepcache_depth=0, deepcache_mode="uniform",
             warmup_steps=1, last_steps_computed=1))


def sdxl(info):
    return _sd_checkpoint(
        info, "sd_xl_base_1.0.safetensors", 1024, 1024, 30, 6.5,
        "a lighthouse on a rocky coast during a storm, dramatic clouds, cinematic photo",
        "diffusion_cache/sdxl",
        "SDXL base with EasyCache\n\n"
        "method easycache, threshold 0.1, warmup_steps 3: EasyCache caches whole U-Net calls. It "
        "tracks how fast the model's output changes relative to its input; while the accumulated "
        "rate stays under 10 % it adds the last output change to the new input instead of running "
        "the U-Net (each cell of the timeline is one U-Net call for cond and uncond together).\n\n"
        "Why: it needs no calibration and adapts to the prompt, and warmup 3 keeps the first steps, "
        "which set the composition, exact. last_steps_computed 2 keeps texture detail exact. "
        "Alternatives: deepcache (see the SD 1.5 example) reuses the U-Net's deep features instead, "
        "and step_mask ('medium') computes exactly the steps its mask marks.",
        dict(method="easycache", threshold=0.1, warmup_steps=3, last_steps_computed=2))


def sd3(info):
    wf = Workflow(info)
    ckp = wf.node("CheckpointLoaderSimple", (0, 0), {"ckpt_name": "sd3.5_medium.safetensors"})
    clip = wf.node("TripleCLIPLoader", (0, 150), {"clip_name1": "clip_g.safetensors",
                                                  "clip_name2": "clip_l.safetensors",
                                                  "clip_name3": "t5xxl_fp16.safetensors"})
    shift = wf.node("ModelSamplingSD3", (0, 330), {"shift": 3.0})
    dc = cache(wf, (380, 0), method="first_block", threshold=0.08, warmup_steps=2, last_steps_computed=1)
    pos = wf.node("CLIPTextEncode", (380, 520), {"text": "a glass teapot with a tiny galaxy swirling inside, "
                                                           "studio lighting, product photo"}, title="Prompt")
    neg = wf.node("CLIPTextEncode", (380, 760), {"text": ""}, title="Negative")
    latent = wf.node("EmptySD3LatentImage", (780, 520), {"width": 1024, "height": 1024, "batch_size": 1})
    ks = wf.node("KSampler", (1160, 0), {"seed": 42, "steps": 40, "cfg": 4.5, "sampler_name": "euler",
                                          "scheduler": "sgm_uniform", "denoise": 1.0})
    dec = wf.node("VAEDecode", (1540, 0))
    save = wf.node("SaveImage", (1540, 140), {"filename_prefix": "diffusion_cache/sd3"}, width=400)
    wf.link(ckp, "MODEL", shift, "model")
    wf.link(shift, 0, dc, "model")
    wf.link(dc, 0, ks, "model")
    wf.link(clip, 0, pos, "clip")
    wf.link(clip, 0, neg, "clip")
    wf.link(pos, 0, ks, "positive")
    wf.link(neg, 0, ks, "negative")
    wf.link(latent, 0, ks, "latent_image")
    wf.link(ks, 0, dec, "samples")
    wf.link(ckp, "VAE", dec, "vae")
    wf.link(dec, 0, save, "images")
    wf.note(
        "Stable Diffusion 3.5 (MMDiT) with First-Block Cache\n\n"
        "method first_block, threshold 0.08 (the default): joint block 0 always runs; while its residual "
        "changes by less than 8 % the remaining joint blocks are skipped and their residual reused.\n\n"
        "Why: SD3's MMDiT forward has no whole-model-call hook in ComfyUI, so EasyCache cannot attach; "
        "the block patches work. No TeaCache/MagCache profile is shipped for SD3 (run Diffusion Cache "
        "Calibrate once to make one). The checkpoint here has no text encoders, hence TripleCLIPLoader; "
        "use the checkpoint's CLIP output instead for an all-in-one file.\n\n"
        "warmup_steps 2: at cfg 4.5 with 40 steps the first steps set the layout.", (780, 0), height=300)
    return wf


def _wan_text(wf, clip_pos, clip):
    pos = wf.node("CLIPTextEncode", clip_pos, {"text": "a corgi running along a beach at sunset, waves, "
                                                          "slow motion, cinematic"}, title="Prompt")
    neg = wf.node("CLIPTextEncode", (clip_pos[0], clip_pos[1] + 240),
                  {"text": "static, blurry, low quality, watermark, subtitles, deformed"}, title="Negative")
    wf.link(clip, 0, pos, "clip")
    wf.link(clip, 0, neg, "clip")
    return pos, neg


def wan21(info):
    wf = Workflow(info)
    unet = wf.node("UNETLoader", (0, 0), {"unet_name": "wan2.1_t2v_1.3B_fp16.safetensors",
                                          "weight_dtype": "default"})
    clip = wf.node("CLIPLoader", (0, 150), {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"})
    vae = wf.node("VAELoader", (0, 330), {"vae_name": "wan_2.1_vae.safetensors"})
    shift = wf.node("ModelSamplingSD3", (0, 450), {"shift": 8.0})
    dc = cache(wf, (380, 0), method="magcache", threshold=0.12, profile="wan2.1_t2v_1.3b",
               warmup_steps=1, last_steps_computed=1, magcache_max_skips=4, magcache_retention=0.2)
    pos, neg = _wan_text(wf, (380, 560), clip)
    latent = wf.node("EmptyHunyuanLatentVideo", (780, 560), {"width": 832, "height": 480, "length": 33,
                                                             "batch_size": 1})
    ks = wf.node("KSampler", (1160, 0), {"seed": 42, "steps": 30, "cfg": 6.0, "sampler_name": "uni_pc",
                                          "scheduler": "simple", "denoise": 1.0})
    dec = wf.node("VAEDecode", (1540, 0))
    save = wf.node("SaveAnimatedWEBP", (1540, 140), {"filename_prefix": "diffusion_cache/wan21", "fps": 16.0,
                                                     "lossless": False, "quality": 90, "method": "default"},
                   width=400)
    wf.link(unet, 0, shift, "model")
    wf.link(shift, 0, dc, "model")
    wf.link(dc, 0, ks, "model")
    wf.link(pos, 0, ks, "positive")
    wf.link(neg, 0, ks, "negative")
    wf.link(latent, 0, ks, "latent_image")
    wf.link(ks, 0, dec, "samples")
    wf.link(vae, 0, dec, "vae")
    wf.link(dec, 0, save, "images")
    wf.note(
        "Wan 2.1 T2V 1.3B with MagCache\n\n"
        "method magcache, threshold 0.12, profile wan2.1_t2v_1.3b: MagCache predicts the error of "
        "reusing the last residual from the published magnitude-ratio curve of this model, accumulates "
        "it, and computes again once it passes 0.12 or after magcache_max_skips (K = 4) steps in a row.\n\n"
        "Why: Wan's residual magnitude ratio is close to 1 and smooth over most of the schedule, so the "
        "curve predicts well and needs no run-time probe. magcache_retention 0.2 keeps the first 20 % of "
        "the steps exact (layout and motion are decided there). For the 14B model pick the "
        "wan2.1_t2v_14b profile. Calibrate your own curve with Diffusion Cache Calibrate for other "
        "step counts or LoRAs.", (780, 0), height=320)
    return wf


def wan22_two_stage(info):
    wf = Workflow(info)
    high = wf.node("UNETLoader", (0, 0), {"unet_name": "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
                                          "weight_dtype": "default"}, title="Wan 2.2 high-noise expert")
    low = wf.node("UNETLoader", (0, 600), {"unet_name": "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
                                           "weight_dtype": "default"}, title="Wan 2.2 low-noise expert")
    shift_h = wf.node("ModelSamplingSD3", (0, 150), {"shift": 8.0})
    shift_l = wf.node("ModelSamplingSD3", (0, 750), {"shift": 8.0})
    clip = wf.node("CLIPLoader", (0, 1000), {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"})
    vae = wf.node("VAELoader", (0, 1180), {"vae_name": "wan_2.1_vae.safetensors"})
    dc_h = cache(wf, (380, 0), title="Diffusion Cache (high noise)", method="first_block", threshold=0.05,
                 warmup_steps=2, last_steps_computed=0)
    dc_l = cache(wf, (380, 600), title="Diffusion Cache (low noise)", method="first_block", threshold=0.1,
                 warmup_steps=1, last_steps_computed=1)
    pos, neg = _wan_text(wf, (780, 1000), clip)
    latent = wf.node("EmptyHunyuanLatentVideo", (780, 1480), {"width": 832, "height": 480, "length": 33,
                                                              "batch_size": 1})
    ks_h = wf.node("KSamplerAdvanced", (1160, 0), {"add_noise": "enable", "noise_seed": 42, "steps": 20,
                                                   "cfg": 3.5, "sampler_name": "euler", "scheduler": "simple",
                                                   "start_at_step": 0, "end_at_step": 10,
                                                   "return_with_leftover_noise": "enable"},
                   title="KSampler high noise (steps 0-10)")
    ks_l = wf.node("KSamplerAdvanced", (1160, 600), {"add_noise": "disable", "noise_seed": 42, "steps": 20,
                                                     "cfg": 3.5, "sampler_name": "euler", "scheduler": "simple",
                                                     "start_at_step": 10, "end_at_step": 10000,
                                                     "return_with_leftover_noise": "disable"},
                   title="KSampler low noise (steps 10-20)")
    dec = wf.node("VAEDecode", (1540, 600))
    save = wf.node("SaveAnimatedWEBP", (1540, 740), {"filename_prefix": "diffusion_cache/wan22", "fps": 16.0,
                                                     "lossless": False, "quality": 90, "method": "default"},
                   width=400)
    wf.link(high, 0, shift_h, "model")
    wf.link(low, 0, shift_l, "model")
    wf.link(shift_h, 0, dc_h, "model")
    wf.link(shift_l, 0, dc_l, "model")
    wf.link(dc_h, 0, ks_h, "model")
    wf.link(dc_l, 0, ks_l, "model")
    wf.link(pos, 0, ks_h, "positive")
    wf.link(neg, 0, ks_h, "negative")
    wf.link(pos, 0, ks_l, "positive")
    wf.link(neg, 0, ks_l, "negative")
    wf.link(latent, 0, ks_h, "latent_image")
    wf.link(ks_h, 0, ks_l, "latent_image")
    wf.link(ks_l, 0, dec, "samples")
    wf.link(vae, 0, dec, "vae")
    wf.link(dec, 0, save, "images")
    wf.note(
        "Wan 2.2 T2V A14B: two experts, two samplers, two caches\n\n"
        "Wan 2.2 denoises with a high-noise expert for the first half of the schedule (steps 0-10 of 20) "
        "and a low-noise expert for the rest (10-20). Each expert is its own model, so each gets its own "
        "Diffusion Cache node; a sampler run never reuses work across the switch (every sampler run "
        "starts a fresh cache).\n\n"
        "High noise: first_block, threshold 0.05, warmup_steps 2, last_steps_computed 0 - it shapes "
        "layout and motion, so it caches cautiously; its last step hands a noisy latent to the next "
        "sampler and need not be exact.\n"
        "Low noise: first_block, threshold 0.1 - it refines detail and changes slowly, so it can skip more.\n\n"
        "Each timeline shows that node's 10 steps. If you run one model for both samplers instead, put "
        "one cache node before both: its timeline then shows two rows per branch, S1 and S2.",
        (780, 0), width=360, height=420)
    return wf


def hunyuan_video(info):
    wf = Workflow(info)
    unet = wf.node("UNETLoader", (0, 0), {"unet_name": "hunyuan_video_t2v_720p_bf16.safetensors",
                                          "weight_dtype": "default"})
    clip = wf.node("DualCLIPLoader", (0, 150), {"clip_name1": "clip_l.safetensors",
                                                "clip_name2": "llava_llama3_fp8_scaled.safetensors",
                                                "type": "hunyuan_video"})
    vae = wf.node("VAELoader", (0, 330), {"vae_name": "hunyuan_video_vae_bf16.safetensors"})
    dc = cache(wf, (380, 0), method="teacache", threshold=0.15, profile="hunyuan_video",
               warmup_steps=1, last_steps_computed=1)
    pos = wf.node("CLIPTextEncode", (380, 520), {"text": "a paper boat drifting down a rain-soaked street, "
                                                           "reflections, cinematic"}, title="Prompt")
    neg = wf.node("CLIPTextEncode", (380, 760), {"text": ""}, title="Negative (unused at cfg 1)")
    guide = wf.node("FluxGuidance", (780, 520), {"guidance": 6.0})
    latent = wf.node("EmptyHunyuanLatentVideo", (780, 680), {"width": 848, "height": 480, "length": 73,
                                                             "batch_size": 1})
    ks = wf.node("KSampler", (1160, 0), {"seed": 42, "steps": 30, "cfg": 1.0, "sampler_name": "euler",
                                          "scheduler": "simple", "denoise": 1.0})
    dec = wf.node("VAEDecodeTiled", (1540, 0), {"tile_size": 256, "overlap": 64, "temporal_size": 64,
                                                 "temporal_overlap": 8})
    save = wf.node("SaveAnimatedWEBP", (1540, 240), {"filename_prefix": "diffusion_cache/hunyuan_video",
                                                     "fps": 24.0, "lossless": False, "quality": 90,
                                                     "method": "default"}, width=400)
    wf.link(unet, 0, dc, "model")
    wf.link(dc, 0, ks, "model")
    wf.link(clip, 0, pos, "clip")
    wf.link(clip, 0, neg, "clip")
    wf.link(pos, 0, guide, "conditioning")
    wf.link(guide, 0, ks, "positive")
    wf.link(neg, 0, ks, "negative")
    wf.link(latent, 0, ks, "latent_image")
    wf.link(ks, 0, dec, "samples")
    wf.link(vae, 0, dec, "vae")
    wf.link(dec, 0, save, "images")
    wf.note(
        "HunyuanVideo with TeaCache\n\n"
        "method teacache, threshold 0.15, profile hunyuan_video: TeaCache measures how much the first "
        "double block's modulated input changed, rescales it with the published HunyuanVideo polynomial, "
        "and skips the whole transformer (reusing its last residual) until the accumulated estimate "
        "passes 0.15.\n\n"
        "Why: the probe costs one modulation of block 0, far less than the 60 blocks it can skip, and "
        "the published coefficients fit this model. 0.1 is the cautious setting and 0.15 the faster one. "
        "Guidance is distilled (FluxGuidance 6, cfg 1), so there is one branch: one timeline row.",
        (780, 0), height=300)
    return wf


def ltx_video(info):
    wf = Workflow(info)
    ckp = wf.node("CheckpointLoaderSimple", (0, 0), {"ckpt_name": "ltx-video-2b-v0.9.5.safetensors"})
    clip = wf.node("CLIPLoader", (0, 150), {"clip_name": "t5xxl_fp16.safetensors", "type": "ltxv"})
    dc = cache(wf, (380, 0), method="teacache", threshold=0.05, profile="ltx_video",
               warmup_steps=1, last_steps_computed=1)
    pos = wf.node("CLIPTextEncode", (380, 520), {"text": "a hot air balloon rising over misty hills at "
                                                           "sunrise, gentle camera pan"}, title="Prompt")
    neg = wf.node("CLIPTextEncode", (380, 760), {"text": "low quality, worst quality, deformed, distorted, "
                                                           "motion smear, jitter"}, title="Negative")
    cond = wf.node("LTXVConditioning", (780, 520), {"frame_rate": 25.0})
    latent = wf.node("EmptyLTXVLatentVideo", (780, 680), {"width": 768, "height": 512, "length": 97,
                                                          "batch_size": 1})
    sched = wf.node("LTXVScheduler", (780, 860), {"steps": 30, "max_shift": 2.05, "base_shift": 0.95,
                                                  "stretch": True, "terminal": 0.1})
    sampler = wf.node("KSamplerSelect", (780, 1060), {"sampler_name": "euler"})
    ks = wf.node("SamplerCustom", (1160, 0), {"add_noise": True, "noise_seed": 42, "cfg": 3.0})
    dec = wf.node("VAEDecode", (1540, 0))
    save = wf.node("SaveAnimatedWEBP", (1540, 140), {"filename_prefix": "diffusion_cache/ltx_video",
                                                     "fps": 25.0, "lossless": False, "quality": 90,
                                                     "method": "default"}, width=400)
    wf.link(ckp, "MODEL", dc, "model")
    wf.link(dc, 0, ks, "model")
    wf.link(clip, 0, pos, "clip")
    wf.link(clip, 0, neg, "clip")
    wf.link(pos, 0, cond, "positive")
    wf.link(neg, 0, cond, "negative")
    wf.link(cond, 0, ks, "positive")
    wf.link(cond, 1, ks, "negative")
    wf.link(sampler, 0, ks, "sampler")
    wf.link(sched, 0, ks, "sigmas")
    wf.link(latent, 0, sched, "latent")
    wf.link(latent, 0, ks, "latent_image")
    wf.link(ks, 0, dec, "samples")
    wf.link(ckp, "VAE", dec, "vae")
    wf.link(dec, 0, save, "images")
    wf.note(
        "LTX-Video with TeaCache\n\n"
        "method teacache, threshold 0.05, profile ltx_video: TeaCache watches block 0's modulated input "
        "(rescaled with the published LTX-Video polynomial) and reuses the transformer's last residual "
        "while the accumulated change stays under 0.05.\n\n"
        "Why so low: LTX-Video's rescaled changes are small numbers, so its thresholds are an order of "
        "magnitude below Flux's: 0.03 is cautious, 0.05 faster. The sampler is SamplerCustom with "
        "LTXVScheduler (LTX's own sigma schedule); the cache attaches to any sampler. Both branches "
        "(cond, uncond at cfg 3) get a row in the timeline.", (780, 0), height=300)
    return wf


def qwen_image(info):
    wf = Workflow(info)
    unet = wf.node("UNETLoader", (0, 0), {"unet_name": "qwen_image_fp8_e4m3fn.safetensors",
                                          "weight_dtype": "default"})
    clip = wf.node("CLIPLoader", (0, 150), {"clip_name": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                                            "type": "qwen_image"})
    vae = wf.node("VAELoader", (0, 330), {"vae_name": "qwen_image_vae.safetensors"})
    shift = wf.node("ModelSamplingAuraFlow", (0, 450), {"shift": 3.1})
    dc = cache(wf, (380, 0), method="dbcache", threshold=0.08, front_blocks=2, back_blocks=1,
               warmup_steps=2, last_steps_computed=1)
    pos = wf.node("CLIPTextEncode", (380, 560), {"text": "a hand-painted shop sign that reads \"Diffusion "
                                                           "Cache Bakery\", morning light, street photo"},
                  title="Prompt")
    neg = wf.node("CLIPTextEncode", (380, 800), {"text": ""}, title="Negative")
    latent = wf.node("EmptySD3LatentImage", (780, 560), {"width": 1328, "height": 1328, "batch_size": 1})
    ks = wf.node("KSampler", (1160, 0), {"seed": 42, "steps": 20, "cfg": 2.5, "sampler_name": "euler",
                                          "scheduler": "simple", "denoise": 1.0})
    dec = wf.node("VAEDecode", (1540, 0))
    save = wf.node("SaveImage", (1540, 140), {"filename_prefix": "diffusion_cache/qwen_image"}, width=400)
    wf.link(unet, 0, shift, "model")
    wf.link(shift, 0, dc, "model")
    wf.link(dc, 0, ks, "model")
    wf.link(clip, 0, pos, "clip")
    wf.link(clip, 0, neg, "clip")
    wf.link(pos, 0, ks, "positive")
    wf.link(neg, 0, ks, "negative")
    wf.link(latent, 0, ks, "latent_image")
    wf.link(ks, 0, dec, "samples")
    wf.link(vae, 0, dec, "vae")
    wf.link(dec, 0, save, "images")
    wf.note(
        "Qwen-Image with DBCache (block-level)\n\n"
        "method dbcache, threshold 0.08, front_blocks 2, back_blocks 1: the first 2 and the last of the "
        "60 transformer blocks always run; the middle 57 are skipped while the residual of the front "
        "blocks changes by less than 8 %.\n\n"
        "Why: Qwen-Image renders text, and the last block's fresh computation keeps glyph edges crisp "
        "while the middle of the stack is reused; the block heat map under the node shows exactly "
        "which blocks ran at each step. No profile is needed. Raise the threshold to 0.12 for more "
        "speed, or set back_blocks 0 for plain first-block behaviour with 2 probe blocks.",
        (780, 0), height=300)
    return wf


def tiny_flux_fixture(info, steps: int = 20, cfg: float = 2.0):
    """A small graph on the bundled tiny Flux model (test fixture, not written to workflows/)."""
    wf = Workflow(info)
    loader = wf.node("DiffusionCacheTinyModelLoader", (0, 0), {"model_name": "flux_tiny"})
    digits = wf.node("DiffusionCacheTinyDigits", (0, 200), {"model_name": "flux_tiny", "digits": "0123"})
    dc = cache(wf, (380, 0), method="first_block", threshold=0.08)
    ks = wf.node("KSampler", (780, 0), {"seed": 0, "steps": steps, "cfg": cfg, "sampler_name": "euler",
                                         "scheduler": "simple", "denoise": 1.0})
    dec = wf.node("DiffusionCacheTinyDecode", (1160, 0), {"model_name": "flux_tiny"})
    save = wf.node("SaveImage", (1160, 160), {"filename_prefix": "diffusion_cache_test/tiny"})
    wf.link(loader, 0, dc, "model")
    wf.link(dc, 0, ks, "model")
    wf.link(digits, "positive", ks, "positive")
    wf.link(digits, "negative", ks, "negative")
    wf.link(digits, "latent", ks, "latent_image")
    wf.link(ks, 0, dec, "samples")
    wf.link(dec, 0, save, "images")
    return wf


def tiny_flux_two_stage_fixture(info, steps: int = 20, split: int = 10, cfg: float = 2.0):
    """Two KSamplerAdvanced sharing one cached tiny Flux model (steps 0-split, split-end): a test fixture."""
    wf = Workflow(info)
    loader = wf.node("DiffusionCacheTinyModelLoader", (0, 0), {"model_name": "flux_tiny"})
    digits = wf.node("DiffusionCacheTinyDigits", (0, 200), {"model_name": "flux_tiny", "digits": "3141"})
    dc = cache(wf, (380, 0), method="first_block", threshold=0.2, warmup_steps=1, last_steps_computed=0)
    common = {"noise_seed": 1, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "simple"}
    first = wf.node("KSamplerAdvanced", (780, 0), {**common, "add_noise": "enable", "start_at_step": 0,
                                                   "end_at_step": split, "return_with_leftover_noise": "enable"},
                    title=f"steps 0-{split}")
    second = wf.node("KSamplerAdvanced", (780, 420), {**common, "add_noise": "disable", "start_at_step": split,
                                                      "end_at_step": 10000, "return_with_leftover_noise": "disable"},
                     title=f"steps {split}-{steps}")
    dec = wf.node("DiffusionCacheTinyDecode", (1160, 0), {"model_name": "flux_tiny"})
    save = wf.node("SaveImage", (1160, 160), {"filename_prefix": "diffusion_cache_test/two_stage"})
    wf.link(loader, 0, dc, "model")
    wf.link(dc, 0, first, "model")
    wf.link(dc, 0, second, "model")
    for ks in (first, second):
        wf.link(digits, "positive", ks, "positive")
        wf.link(digits, "negative", ks, "negative")
    wf.link(digits, "latent", first, "latent_image")
    wf.link(first, 0, second, "latent_image")
    wf.link(second, 0, dec, "samples")
    wf.link(dec, 0, save, "images")
    return wf


def tiny_flux_compare(info):
    """The Diffusion Cache Compare node on the bundled tiny Flux model: runs on a CPU in seconds."""
    wf = Workflow(info)
    loader = wf.node("DiffusionCacheTinyModelLoader", (0, 0), {"model_name": "flux_tiny"}, title="Tiny Flux model")
    digits = wf.node("DiffusionCacheTinyDigits", (0, 160), {"model_name": "flux_tiny", "digits": "0123456789"},
                     title="Digits 0-9")
    dc = cache(wf, (380, 0), method="taylorseer", interval=4, warmup_steps=1, last_steps_computed=1)
    cmp_ = wf.node("DiffusionCacheCompare", (780, 0), {"seed": 0, "steps": 20, "cfg": 3.0, "sampler_name": "euler",
                                                       "scheduler": "simple", "denoise": 1.0,
                                                       "tiny_model": "flux_tiny", "amplify": 4.0},
                   width=360, color=(CACHE_COLOR, CACHE_BG))
    previews = [wf.node("PreviewImage", (1180, 300 * i), title=f"{name} images", width=420)
                for i, name in enumerate(("cached", "uncached", "difference x4"))]
    wf.link(loader, 0, dc, "model")
    wf.link(dc, 0, cmp_, "model")
    wf.link(digits, "positive", cmp_, "positive")
    wf.link(digits, "negative", cmp_, "negative")
    wf.link(digits, "latent", cmp_, "latent_image")
    for slot, preview in enumerate(previews):
        wf.link(cmp_, slot, preview, "images")
    wf.note(
        "What the cache costs, on the node\n\n"
        "Diffusion Cache Compare samples the same digits twice with the same seed and sampler: with the "
        "cached MODEL (TaylorSeer, interval 4: 1 step in 4 computed, the others forecast) and with the same "
        "MODEL without the cache. It shows on the node:\n"
        "- PSNR of the cached images against the uncached ones (dB; higher is closer, inf = identical);\n"
        "- SSIM (1 = identical);\n"
        "- the speedup: uncached seconds / cached seconds of the two sampler runs. The cached run goes "
        "first, so the first queue also carries loading the model: queue again with another seed for a "
        "steadier figure.\n\n"
        "The outputs are the cached images, the uncached images and their difference x4 (black = "
        "identical). The tiny model has no VAE, so tiny_model picks its exact decoder; connect a VAE "
        "for real models. For a two-stage graph (Wan 2.2), build it once cached and once uncached and "
        "connect the two final latents to cached_latent and uncached_latent.", (0, 380), width=340, height=420)
    return wf


WORKFLOWS = {
    "flux_dev": flux_dev,
    "sd15": sd15,
    "sdxl": sdxl,
    "sd3": sd3,
    "wan21_t2v": wan21,
    "wan22_two_stage": wan22_two_stage,
    "hunyuan_video": hunyuan_video,
    "ltx_video": ltx_video,
    "qwen_image": qwen_image,
    "tiny_flux_compare": tiny_flux_compare,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--server", help="a running ComfyUI with this pack, e.g. http://127.0.0.1:8188")
    src.add_argument("--object-info", type=Path, help="a saved /object_info JSON")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", action="append", choices=sorted(WORKFLOWS), help="write only this workflow (repeatable)")
    args = ap.parse_args()
    if args.server:
        with urllib.request.urlopen(args.server.rstrip("/") + "/object_info", timeout=60) as r:
            info = json.load(r)
    else:
        info = json.loads(args.object_info.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    for name, build in WORKFLOWS.items():
        if args.only and name not in args.only:
            continue
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(build(info).to_json(), indent=1) + "\n")
        print("wrote", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
