"""Send what the cache decided to the browser, tagged with the cache node's id.

The wrappers run while the *sampler* node executes, so events carry the Diffusion
Cache node's own ``unique_id``. Without a running server (tests, scripts) nothing
is sent.
"""
from __future__ import annotations

import logging

log = logging.getLogger("diffusion_cache")

STEP_EVENT = "diffusion_cache.step"
RUN_EVENT = "diffusion_cache.run"


def _server():
    try:
        from server import PromptServer
    except Exception:
        return None
    return getattr(PromptServer, "instance", None)


def send(event: str, data: dict) -> None:
    server = _server()
    if server is None:
        return
    try:
        server.send_sync(event, data, getattr(server, "client_id", None))
    except Exception as e:  # the UI is a convenience; never fail a sampling run over it
        log.debug("Diffusion Cache: could not send %s: %s", event, e)


def step_payload(node_id, sampler_run: int, record, total_steps: int) -> dict:
    return {"node": node_id, "run": sampler_run, "total": total_steps, **record.to_json()}


def run_payload(node_id, stats) -> dict:
    return {"node": node_id, "run": stats.run_id, **stats.to_json()["summary"],
            "steps": [[r.step, r.stage, r.decision, r.blocks_computed, r.blocks_total,
                       r.branches] for r in stats.records]}
