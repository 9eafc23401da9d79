"""Where calibrated profiles live: ComfyUI's user directory, one JSON file each."""
from __future__ import annotations

import re
from pathlib import Path

from ..cache_core.profiles import Profile, published_profiles

SUBDIR = ("diffusion_cache", "profiles")


def profiles_dir() -> Path:
    import folder_paths
    return Path(folder_paths.get_user_directory(), *SUBDIR)


def safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("._")
    if not cleaned:
        raise ValueError("profile_name must contain letters or digits, e.g. 'my_flux_28steps'")
    return cleaned


def calibrated_names() -> list[str]:
    d = profiles_dir()
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def profile_choices() -> list[str]:
    return ["auto"] + sorted(published_profiles()) + [f"user:{n}" for n in calibrated_names()]


def save_profile(profile: Profile) -> Path:
    return profile.save(profiles_dir() / f"{safe_name(profile.name)}.json")


def resolve(choice: str, architecture, needs: str | None) -> Profile | None:
    """The profile a node input names; "auto" picks by architecture.

    ``needs`` is "teacache" or "magcache" (what the method must find in it).
    """
    published = published_profiles()
    if choice.startswith("user:"):
        path = profiles_dir() / f"{safe_name(choice[5:])}.json"
        if not path.is_file():
            raise ValueError(f"profile {choice!r} not found in {path.parent}; run the Diffusion Cache "
                             "Calibrate node first, or choose 'auto'")
        return _checked(choice, Profile.load(path), needs, published)
    if choice != "auto":
        if choice not in published:
            raise ValueError(f"unknown profile {choice!r}; choose 'auto', a published profile "
                             f"({', '.join(sorted(published))}) or a calibrated 'user:<name>'")
        return _checked(choice, published[choice], needs, published)
    # auto: a calibrated profile for this architecture first, then the published one
    for name in reversed(calibrated_names()):
        try:
            p = Profile.load(profiles_dir() / f"{name}.json")
        except ValueError:
            continue
        if p.architecture == architecture.name and _has(p, needs):
            return p
    p = published.get(architecture.teacache_profile)
    if p is not None and _has(p, needs) and (needs != "teacache" or p.teacache_probe == architecture.probe_name):
        return p
    if needs == "teacache":
        return published["generic"]
    return None


WHAT = {"teacache": "TeaCache polynomial", "magcache": "MagCache magnitude curve"}


def _checked(choice: str, profile: Profile, needs: str | None, published: dict) -> Profile:
    """``profile`` if it holds what the method needs, else a ValueError that lists the choices that do."""
    if _has(profile, needs):
        return profile
    valid = sorted(n for n, p in published.items() if _has(p, needs))
    valid += [f"user:{n}" for n in calibrated_names() if f"user:{n}" != choice and _loads_with(n, needs)]
    raise ValueError(f"profile {choice!r} has no {WHAT[needs]}; choose 'auto', one of: {', '.join(valid)}, "
                     "or a calibrated 'user:<name>' (the Diffusion Cache Calibrate node writes both)")


def _loads_with(name: str, needs: str | None) -> bool:
    try:
        return _has(Profile.load(profiles_dir() / f"{name}.json"), needs)
    except (OSError, ValueError):
        return False


def _has(profile: Profile, needs: str | None) -> bool:
    if needs == "teacache":
        return bool(profile.teacache_coefficients)
    if needs == "magcache":
        return profile.magnitude is not None
    return True
