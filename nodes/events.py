"""Send what the cache decided to the browser, tagged with the cache node's id.

The wrappers run while the *sampler* node executes, so events carry the Diffusion
Cache node's own ``unique_id``. Without a running server (tests, scripts) nothing
is sent.

Every event is also folded into a small in-memory store (:class:`RunStore`): the
last few sampler runs per cache node, with their per-evaluation records, so the
browser can show the last run again after a page reload. ``GET /diffusion_cache/runs``
(registered by :func:`register_routes`) returns it; ``GET /diffusion_cache/methods``, registered
next to it, returns what the node's web extension shows per method
(``cache_core.methods.ui_description()``). The store holds plain JSON data only, never tensors,
and is bounded in nodes, runs per node and records per run.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict

log = logging.getLogger("diffusion_cache")

STEP_EVENT = "diffusion_cache.step"
RUN_EVENT = "diffusion_cache.run"
ROUTE = "/diffusion_cache/runs"
METHODS_ROUTE = "/diffusion_cache/methods"

MAX_NODES = 64            # cache nodes remembered (least recently updated dropped first)
MAX_RUNS_PER_NODE = 4     # sampler runs remembered per node (two samplers may share one node)
MAX_RECORDS_PER_RUN = 4096

_STEP_KEYS = ("step", "stage", "sigma", "branches", "decision", "metric", "threshold",
              "blocks_computed", "blocks_total", "reason", "block_mask")
_SUMMARY_SKIP = ("node", "run", "steps")


_PROMPT_SERVER = None      # the PromptServer class once found
_IMPORT_FAILED = False     # remembered: a failing import must not be retried on every step


def _server():
    """ComfyUI's running PromptServer, or None (tests, scripts). Cheap on the hot path."""
    global _PROMPT_SERVER, _IMPORT_FAILED
    if _PROMPT_SERVER is None:
        module = sys.modules.get("server")
        if module is None and not _IMPORT_FAILED:
            try:
                import server as module
            except Exception:
                _IMPORT_FAILED = True
                module = None
        _PROMPT_SERVER = getattr(module, "PromptServer", None)
        if _PROMPT_SERVER is None:
            return None
    return getattr(_PROMPT_SERVER, "instance", None)


def _prompt_id():
    server = _server()
    return getattr(server, "last_prompt_id", None) if server is not None else None


def _plain(value):
    """JSON-safe copy of event data (numbers, strings, lists, dicts); anything else becomes a string."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    try:                      # numpy / torch scalars
        return _plain(value.item())
    except Exception:
        return str(value)


class RunStore:
    """The last runs per cache node, built from the step and run events."""

    def __init__(self, max_nodes=MAX_NODES, max_runs=MAX_RUNS_PER_NODE, max_records=MAX_RECORDS_PER_RUN):
        self.max_nodes = max_nodes
        self.max_runs = max_runs
        self.max_records = max_records
        self._lock = threading.Lock()
        self._nodes: OrderedDict[str, OrderedDict] = OrderedDict()   # node -> run id -> entry

    def _entry(self, node: str, run, data: dict) -> dict:
        runs = self._nodes.get(node)
        if runs is None:
            runs = self._nodes[node] = OrderedDict()
        self._nodes.move_to_end(node)
        while len(self._nodes) > self.max_nodes:
            self._nodes.popitem(last=False)
        entry = runs.get(run)
        if entry is None:
            entry = runs[run] = {"node": node, "run": run, "prompt": data.get("prompt"), "done": False,
                                 "started": time.time(), "updated": time.time(), "total": data.get("total"),
                                 "records": [], "truncated": 0, "summary": None}
            while len(runs) > self.max_runs:
                runs.popitem(last=False)
        return entry

    def add(self, event: str, data: dict) -> None:
        if not isinstance(data, dict) or data.get("node") is None:
            return
        node, run = str(data["node"]), _plain(data.get("run"))
        with self._lock:
            entry = self._entry(node, run, data)
            entry["updated"] = time.time()
            if entry.get("prompt") is None and data.get("prompt") is not None:
                entry["prompt"] = data["prompt"]
            if event == STEP_EVENT:
                if data.get("total") is not None:
                    entry["total"] = data["total"]
                if len(entry["records"]) < self.max_records:
                    entry["records"].append({k: _plain(data.get(k)) for k in _STEP_KEYS if k in data})
                else:
                    entry["truncated"] += 1
            elif event == RUN_EVENT:
                entry["done"] = True
                entry["summary"] = {k: _plain(v) for k, v in data.items() if k not in _SUMMARY_SKIP}
                if data.get("total_steps") is not None:
                    entry["total"] = data["total_steps"]
                if not entry["records"]:          # step events were missed: keep the compact list
                    for row in (data.get("steps") or [])[: self.max_records]:
                        step, stage, decision, computed, total, branches = (list(row) + [None] * 6)[:6]
                        entry["records"].append({"step": step, "stage": stage, "decision": decision,
                                                 "blocks_computed": computed, "blocks_total": total,
                                                 "branches": _plain(branches) or [], "block_mask": ""})

    def snapshot(self, node: str | None = None) -> dict:
        """``{"nodes": {node_id: [run, ...oldest first]}}`` as JSON-safe copies."""
        with self._lock:
            items = [(node, self._nodes[node])] if node is not None and node in self._nodes else (
                [] if node is not None else list(self._nodes.items()))
            return {"nodes": {n: [dict(e, records=list(e["records"])) for e in runs.values()]
                              for n, runs in items}}

    def clear(self) -> None:
        with self._lock:
            self._nodes.clear()


STORE = RunStore()


def send(event: str, data: dict) -> None:
    try:
        STORE.add(event, data)
    except Exception as e:  # the store is a convenience too
        log.debug("Diffusion Cache: could not store %s: %s", event, e)
    server = _server()
    if server is None:
        return
    try:
        server.send_sync(event, data, getattr(server, "client_id", None))
    except Exception as e:  # the UI is a convenience; never fail a sampling run over it
        log.debug("Diffusion Cache: could not send %s: %s", event, e)


def step_payload(node_id, sampler_run: int, record, total_steps: int) -> dict:
    return {"node": node_id, "run": sampler_run, "total": total_steps, "prompt": _prompt_id(),
            **record.to_json()}


def run_payload(node_id, stats) -> dict:
    return {"node": node_id, "run": stats.run_id, "prompt": _prompt_id(), **stats.summary(),
            "steps": [[r.step, r.stage, r.decision, r.blocks_computed, r.blocks_total,
                       r.branches] for r in stats.records]}


_routes_registered = False


def register_routes(methods: dict | None = None) -> bool:
    """Add ``GET /diffusion_cache/runs`` to the running ComfyUI server, once, and with ``methods``
    ``GET /diffusion_cache/methods`` next to it.

    Returns True when the route is (or already was) registered, False without a server.
    The response is ``{"nodes": {node_id: [run, ...]}}``; ``?node=<id>`` limits it to one node.
    Each run: node, run, prompt, done, started, updated, total, records (the step events'
    fields), truncated (records dropped over the bound) and summary (the run event, or null
    while the run is in progress).

    ``methods`` is ``cache_core.methods.ui_description()`` (the pack's entry point passes it): per
    method, ``auto`` first, the inputs the node shows, which of them sit behind its "advanced"
    toggle, and each input's tooltip for that method. The web extension reads it to show only the
    chosen method's inputs.
    """
    global _routes_registered
    if _routes_registered:
        return True
    server = _server()
    routes = getattr(server, "routes", None) if server is not None else None
    if routes is None:
        return False
    from aiohttp import web

    async def get_runs(request):
        return web.json_response(STORE.snapshot(request.query.get("node")))

    async def get_methods(request):
        return web.json_response(methods)

    routes.get(ROUTE)(get_runs)
    if methods is not None:
        routes.get(METHODS_ROUTE)(get_methods)
    _routes_registered = True
    return True
