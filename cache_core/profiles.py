"""Calibration profiles: TeaCache polynomials and MagCache magnitude curves.

A profile is keyed by architecture and indexed by sigma, so it transfers to other
step counts and schedulers. The magnitude curve stores the cumulative log of the
stack residual's magnitude along sigma; the ratio between any two sigmas is the
exponential of the difference, whatever the step size.
"""
from __future__ import annotations

import bisect
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

PROFILE_VERSION = 1

# TeaCache published coefficients, highest power first (TeaCache / ComfyUI-TeaCache).
TEACACHE_COEFFICIENTS: dict[str, list[float]] = {
    "flux": [4.98651651e2, -2.83781631e2, 5.58554382e1, -3.82021401, 2.64230861e-1],
    "flux_kontext": [-1.04655119e3, 3.12563399e2, -1.69500694e1, 4.10995971e-1, 3.74537863e-2],
    "hunyuan_video": [7.33226126e2, -4.01131952e2, 6.75869174e1, -3.14987800, 9.61237896e-2],
    "ltx_video": [2.14700694e1, -1.28016453e1, 2.31279151, 7.92487521e-1, 9.69274326e-3],
    "mochi": [-3.51241319e3, 8.11675948e2, -6.09400215e1, 2.42429681, 3.05291719e-3],
    "lumina_next": [393.76566581, -603.50993606, 209.10239044, -23.00726601, 0.86377344],
    "lumina2_v2": [225.7042019806413, -608.8453716535591, 304.1869942338369, 124.21267720116742,
                   -1.4089066892956552],
    "lumina2_comfyui": [-8.74643948e2, 4.66059906e2, -7.51559762e1, 5.32836175, -3.27258296e-2],
    "hidream_i1_full": [-3.13605009e4, -7.12425503e2, 4.91363285e1, 8.26515490, 1.08053901e-1],
    "hidream_i1_dev": [1.39997273, -4.30130469, 5.01534416, -2.20504164, 0.93942874],
    "hidream_i1_fast": [2.26509623, -6.88864563, 7.61123826, -3.10849353, 0.99927602],
    "cogvideox_2b": [-3.10658903e1, 2.54732368e1, -5.92380459, 1.75769064, -3.61568434e-3],
    "cogvideox_5b": [-1.53880483e3, 8.43202495e2, -1.34363087e2, 7.97131516, -5.23162339e-2],
    "cogvideox1.5_5b": [2.50210439e2, -1.65061612e2, 3.57804877e1, -7.81551492e-1, 3.58559703e-2],
    "cogvideox1.5_5b_i2v": [1.22842302e2, -1.04088754e2, 2.62981677e1, -3.06009921e-1, 3.71213220e-2],
    "cosmos": [2.71156237e2, -9.19775607e1, 2.24437250, 2.08355751, 1.41776330e-1],
    "wan2.1_t2v_1.3b": [2.39676752e3, -1.31110545e3, 2.01331979e2, -8.29855975, 1.37887774e-1],
    "wan2.1_t2v_14b": [-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404],
    "wan2.1_i2v_480p": [-3.02331670e2, 2.23948934e2, -5.25463970e1, 5.87348440, -2.01973289e-1],
    "wan2.1_i2v_720p": [-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683],
    "wan2.1_t2v_1.3b_e0": [-5.21862437e4, 9.23041404e3, -5.28275948e2, 1.36987616e1, -4.99875664e-2],
    "wan2.1_t2v_14b_e0": [-3.03318725e5, 4.90537029e4, -2.65530556e3, 5.87365115e1, -3.15583525e-1],
    "wan2.1_i2v_480p_e0": [2.57151496e5, -3.54229917e4, 1.40286849e3, -1.35890334e1, 1.32517977e-1],
    "wan2.1_i2v_720p_e0": [8.10705460e3, 2.13393892e3, -3.72934672e2, 1.66203073e1, -4.17769401e-2],
    # no published fit: accumulate the probe's relative change as it is
    "generic": [0.0, 0.0, 0.0, 1.0, 0.0],
}

# the probe each published fit was made with (the engine measures the same one)
TEACACHE_PROBE_OF = {name: ("timestep_embedding" if name.startswith("wan") else "modulated_input")
                     for name in TEACACHE_COEFFICIENTS}
TEACACHE_PROBE_OF["generic"] = "block_input"


def flux_shift_sigmas(mu: float, steps: int) -> list[float]:
    """Sigmas of ComfyUI's "simple" schedule under flux_time_shift(mu): the published
    Flux ratios were recorded on this schedule."""
    out = []
    for i in range(steps):
        t = 1.0 - i / steps
        out.append(math.exp(mu) / (math.exp(mu) + (1.0 / t - 1.0)))
    return out


# MagCache published ratios (FLUX.1-dev, 28 steps), one per step, first padded with 1.0.
FLUX_MAG_RATIOS = [1.0, 1.21094, 1.11719, 1.07812, 1.0625, 1.03906, 1.03125, 1.03906, 1.02344, 1.03125,
                   1.02344, 0.98047, 1.01562, 1.00781, 1.0, 1.00781, 1.0, 1.00781, 1.0, 1.0, 0.99609,
                   0.99609, 0.98047, 0.98828, 0.96484, 0.95703, 0.93359, 0.89062]


@dataclass
class MagnitudeCurve:
    """Cumulative log-magnitude of the stack residual as a function of sigma."""
    sigmas: list[float]       # descending, one per recorded step
    log_magnitude: list[float]

    @classmethod
    def from_step_ratios(cls, sigmas: Sequence[float], ratios: Sequence[float]) -> "MagnitudeCurve":
        if len(sigmas) != len(ratios):
            raise ValueError(f"need one ratio per sigma; got {len(ratios)} ratios for {len(sigmas)} sigmas")
        logs, total = [], 0.0
        for i, r in enumerate(ratios):
            if i > 0:
                total += math.log(max(float(r), 1e-6))
            logs.append(total)
        return cls([float(s) for s in sigmas], logs)

    def log_at(self, sigma: float) -> float:
        # sigmas are descending; interpolate linearly, clamp at the ends
        xs = [-s for s in self.sigmas]
        x = -float(sigma)
        if x <= xs[0]:
            return self.log_magnitude[0]
        if x >= xs[-1]:
            return self.log_magnitude[-1]
        j = bisect.bisect_right(xs, x)
        x0, x1 = xs[j - 1], xs[j]
        y0, y1 = self.log_magnitude[j - 1], self.log_magnitude[j]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 != x0 else y0

    def ratio(self, sigma_from: float, sigma_to: float) -> float:
        """Predicted ||R(sigma_to)|| / ||R(sigma_from)||."""
        return math.exp(self.log_at(sigma_to) - self.log_at(sigma_from))


@dataclass
class Profile:
    """What one calibration run learned about a model."""
    name: str
    architecture: str
    teacache_coefficients: list[float] | None = None
    teacache_probe: str | None = None
    magnitude: MagnitudeCurve | None = None
    source: str = "calibrated"
    recorded: dict = field(default_factory=dict)   # raw per-step curves, for inspection
    version: int = PROFILE_VERSION

    def to_json(self) -> dict:
        d = asdict(self)
        return d

    @classmethod
    def from_json(cls, data: dict) -> "Profile":
        try:
            mag = data.get("magnitude")
            return cls(
                name=str(data["name"]),
                architecture=str(data["architecture"]),
                teacache_coefficients=data.get("teacache_coefficients"),
                teacache_probe=data.get("teacache_probe"),
                magnitude=MagnitudeCurve(**mag) if mag else None,
                source=data.get("source", "calibrated"),
                recorded=data.get("recorded", {}),
                version=int(data.get("version", PROFILE_VERSION)),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a Diffusion Cache profile ({e}); recreate it with the calibration node") from e

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        return cls.from_json(json.loads(Path(path).read_text()))


def flow_shift_sigmas(shift: float, steps: int) -> list[float]:
    """Sigmas of a linear-in-t flow schedule under the time shift ``shift``."""
    out = []
    for i in range(steps):
        t = 1.0 - i / steps
        out.append(shift * t / (1.0 + (shift - 1.0) * t))
    return out


def _published_magnitude_curves() -> dict[str, MagnitudeCurve]:
    data = json.loads((Path(__file__).with_name("published_magcache.json")).read_text())
    curves = {}
    for name, entry in data.items():
        if name.startswith("_"):
            continue
        ratios = entry["ratios"][::2] if entry["interleaved"] else entry["ratios"]   # the cond branch
        curves[name] = MagnitudeCurve.from_step_ratios(flow_shift_sigmas(entry["shift"], entry["steps"]), ratios)
    return curves


def published_profiles() -> dict[str, Profile]:
    """Profiles shipped with the pack, from the methods' published numbers."""
    out = {}
    for name, coeffs in TEACACHE_COEFFICIENTS.items():
        arch = name.split("_")[0] if not name.startswith("wan") else "wan21"
        out[name] = Profile(name=name, architecture=arch, teacache_coefficients=coeffs,
                            teacache_probe=TEACACHE_PROBE_OF[name], source="published")
    flux_curve = MagnitudeCurve.from_step_ratios(flux_shift_sigmas(1.15, 28), FLUX_MAG_RATIOS)
    out["flux"].magnitude = flux_curve
    out["flux_kontext"].magnitude = flux_curve
    for name, curve in _published_magnitude_curves().items():
        for profile_name in (name, name + "_e0"):
            if profile_name in out:
                out[profile_name].magnitude = curve
    return out
