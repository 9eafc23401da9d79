"""Diffusion Cache for ComfyUI: faster sampling by reusing work across denoising steps."""
from __future__ import annotations

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension

    from .cache_core.methods import ui_description
    from .nodes.cache_node import cache_node_class
    from .nodes.calibrate_node import calibrate_node_class
    from .nodes.compare_node import compare_node_class
    from .nodes.events import register_routes

    register_routes(ui_description())   # GET /diffusion_cache/runs and /diffusion_cache/methods, with a server

    node_classes = [cache_node_class(), calibrate_node_class(), compare_node_class()]
    try:
        from .nodes.tiny_models import tiny_model_nodes
        node_classes += tiny_model_nodes()
    except ImportError:
        pass

    class DiffusionCacheExtension(ComfyExtension):
        async def get_node_list(self):
            return node_classes

    return DiffusionCacheExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
