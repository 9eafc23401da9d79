"""What differs between the supported ComfyUI versions (0.3.64 to 0.33.0), in one place.

Each difference is named with the first ComfyUI release that has it, and is detected
from what the running ComfyUI provides (a signature, an attribute), not from its
version number, so a release in between behaves by what it has. Everything is looked
up when first used: importing this module imports nothing of ComfyUI.

The pack's nodes use only ComfyUI's stable surfaces (``comfy_api.latest``, the
ModelPatcher's wrappers and ``patches_replace``). The differences below are those the
demo, the benchmark and the tests meet where they drive ComfyUI's internals directly.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import time
import uuid

# ------------------------------------------------------------------ the running version


@functools.lru_cache(maxsize=None)
def comfyui_version() -> str | None:
    """The running ComfyUI's ``comfyui_version.__version__`` (None if it has none)."""
    try:
        import comfyui_version as module
    except ImportError:
        return None
    return getattr(module, "__version__", None)


# ------------------------------------------------------------------ the prompt executor

@functools.lru_cache(maxsize=None)
def executor_takes_cache_args() -> bool:
    """ComfyUI 0.3.68: ``PromptExecutor(server, cache_type, cache_args={...})`` replaced
    ``cache_size=``, and ``execute_async`` reads ``cache_args["ram"]`` (and, from 0.22.0,
    ``cache_args["ram_inactive"]``) on every prompt. An executor built as before
    (``cache_args=None``) fails there: ``'NoneType' object is not subscriptable``."""
    import execution
    return "cache_args" in inspect.signature(execution.PromptExecutor.__init__).parameters


def new_prompt_executor(server, cache_type=None):
    """A ``execution.PromptExecutor`` as ComfyUI's ``main.py`` builds it, without RAM-pressure
    eviction: classic caching unless ``cache_type`` says otherwise."""
    import execution
    cache_type = execution.CacheType.CLASSIC if cache_type is None else cache_type
    if executor_takes_cache_args():
        return execution.PromptExecutor(server, cache_type=cache_type,
                                        cache_args={"lru": 0, "ram": 0.0, "ram_inactive": 0.0})
    return execution.PromptExecutor(server, cache_type=cache_type, cache_size=0)


class RecordingServer:
    """What ``execution.PromptExecutor`` needs of ComfyUI's PromptServer, without a network.

    It records every message the executor sends as ``(perf_counter, event, data)``.
    """

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.messages: list[tuple[float, str, object]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((time.perf_counter(), event, data))

    def queue_updated(self):
        pass

    def errors(self) -> list[dict]:
        return [data for _, event, data in self.messages if event in ("execution_error", "execution_interrupted")]


class PromptInvalid(ValueError):
    """ComfyUI's validation rejected the prompt; ``error`` and ``node_errors`` say why."""

    def __init__(self, error, node_errors):
        super().__init__(f"{error}; node errors: {node_errors}")
        self.error = error
        self.node_errors = node_errors


def validate_prompt(prompt: dict, prompt_id: str | None = None):
    """``execution.validate_prompt``, run to completion: ``(valid, error, outputs, node_errors)``."""
    import execution
    return asyncio.run(execution.validate_prompt(prompt_id or str(uuid.uuid4()), prompt, None))


def run_prompt(prompt: dict, server=None, extra_data: dict | None = None, cache_type=None):
    """Validate and execute an API-format prompt with a fresh PromptExecutor, as the server's
    prompt worker does. Returns ``(executor, server)``; raises PromptInvalid when validation
    fails. A node that fails leaves ``executor.success`` False and an ``execution_error``
    message, as in ComfyUI."""
    prompt_id = str(uuid.uuid4())
    valid, error, outputs, node_errors = validate_prompt(prompt, prompt_id)
    if not valid:
        raise PromptInvalid(error, node_errors)
    server = RecordingServer() if server is None else server
    executor = new_prompt_executor(server, cache_type)
    executor.execute(prompt, prompt_id, dict(extra_data or {}), outputs)
    return executor, server


def node_outputs(executor, node_id: str):
    """The outputs (one list per output slot) an executed node left in the executor's cache,
    or None.

    ComfyUI 0.3.68 wraps them in ``CacheEntry(ui, outputs)``. ComfyUI 0.17.0 made
    ``caches.outputs.get`` a coroutine (for external cache providers) and added
    ``get_local``, the synchronous lookup in this process's cache.
    """
    cache = executor.caches.outputs
    entry = (getattr(cache, "get_local", None) or cache.get)(node_id)
    if inspect.iscoroutine(entry):
        entry = asyncio.run(entry)
    if entry is None:
        return None
    return getattr(entry, "outputs", entry)


# ------------------------------------------------------------------ sampling internals

@functools.lru_cache(maxsize=None)
def cond_batching_asks_the_patcher() -> bool:
    """ComfyUI 0.12.0: ``comfy.samplers._calc_cond_batch`` sizes the cond/uncond batch by
    ``model.current_patcher.get_free_memory(device)``; before, by
    ``comfy.samplers.model_management.get_free_memory(device)`` (a module 0.12.0 no longer
    imports under that name)."""
    import comfy.model_patcher
    return hasattr(comfy.model_patcher.ModelPatcher, "get_free_memory")


def no_free_memory_for_cond_batching(monkeypatch):
    """Make ComfyUI's cond batching see no free memory, as on a small GPU: every
    conditioning then runs in its own model call. Model loading keeps seeing the real
    free memory. ``monkeypatch`` is pytest's; the patch ends with it. (From 0.12.0 the
    VAE's tiling decision asks the same patcher method, so keep VAE work outside.)"""
    if cond_batching_asks_the_patcher():
        import comfy.model_patcher
        monkeypatch.setattr(comfy.model_patcher.ModelPatcher, "get_free_memory",
                            lambda self, device=None: 0)
        return
    import comfy.model_management
    import comfy.samplers

    class NoFreeMemory:
        def __getattr__(self, name):
            return getattr(comfy.model_management, name)

        @staticmethod
        def get_free_memory(dev=None, torch_free_too=False):
            return (0, 0) if torch_free_too else 0

    monkeypatch.setattr(comfy.samplers, "model_management", NoFreeMemory())


def every_progress_report_reaches_the_hook(monkeypatch):
    """ComfyUI 0.9.2: ``comfy.utils.ProgressBar`` throttles its global hook (at most one
    report per ``PROGRESS_THROTTLE_MIN_INTERVAL``, 0.1 s, besides the first and the last).
    The server's hook is where a Cancel raises ``InterruptProcessingException``; on a
    model this small every step is faster than that, so only the last step would reach
    it. Lift the throttle, as slow steps of a real model do. ``monkeypatch`` is pytest's."""
    import comfy.utils
    if hasattr(comfy.utils, "PROGRESS_THROTTLE_MIN_INTERVAL"):
        monkeypatch.setattr(comfy.utils, "PROGRESS_THROTTLE_MIN_INTERVAL", 0.0)
