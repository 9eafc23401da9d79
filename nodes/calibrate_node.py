"""The "Diffusion Cache Calibrate" node: one uncached run writes a reusable profile."""
from __future__ import annotations

from ..cache_core.config import CacheConfig
from . import hooks
from .architectures import identify
from .cache_node import diffusion_model_of
from .holder import CacheHolder
from .profile_files import safe_name


def build_calibrating_model(model, profile_name: str, node_id=None):
    name = safe_name(profile_name)
    diffusion_model = diffusion_model_of(model)
    if diffusion_model is None:
        return model
    architecture = identify(diffusion_model)
    layout = architecture.layout(diffusion_model) if architecture.block_lists else None
    uses_blocks = layout is not None and layout.total > 0
    model = model.clone()
    holder = CacheHolder(CacheConfig.build(method="fixed_interval", interval=1), architecture,
                         layout if uses_blocks else None, None, node_id, calibrate_to=name)
    hooks.attach(model, holder)
    return model


def calibrate_node_class():
    from comfy_api.latest import io

    class DiffusionCacheCalibrateNode(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            return io.Schema(
                node_id="DiffusionCacheCalibrate",
                display_name="Diffusion Cache Calibrate",
                category="Diffusion Cache",
                description="Sample once through this node (nothing is skipped) to write a TeaCache polynomial "
                            "and a MagCache magnitude curve for this model to ComfyUI's user directory "
                            "(user/diffusion_cache/profiles). Then pick 'user:<name>' in Diffusion Cache.",
                inputs=[
                    io.Model.Input("model", tooltip="The model to calibrate (any architecture)."),
                    io.String.Input("profile_name", default="my_model",
                                    tooltip="File name of the profile; letters, digits, '_', '-' and '.'."),
                ],
                outputs=[io.Model.Output(tooltip="The same model, recording while it samples.")],
                hidden=[io.Hidden.unique_id],
                not_idempotent=True,
            )

        @classmethod
        def execute(cls, model, profile_name) -> io.NodeOutput:
            return io.NodeOutput(build_calibrating_model(model, profile_name,
                                                         cls.hidden.unique_id if cls.hidden else None))

    return DiffusionCacheCalibrateNode
