"""ComfyUI-aware layer: nodes, the holder, wrappers, block patches, architectures, events."""
