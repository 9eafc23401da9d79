"""nodes/events.py: the run store behind GET /diffusion_cache/runs, and the route itself.

events.py imports nothing from ComfyUI at module level, so it is loaded here from its
file (the pack's ``nodes`` package would clash with ComfyUI's ``nodes`` module).
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def events():
    spec = importlib.util.spec_from_file_location("dc_events_under_test", REPO / "nodes" / "events.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step(node="5", run=1, i=0, prompt="p1", **over):
    d = {"node": node, "run": run, "total": 4, "prompt": prompt, "step": i, "stage": 0, "sigma": 1.0 - i / 4,
         "branches": ["cond", "uncond"], "decision": "computed" if i % 2 == 0 else "reused",
         "metric": 0.01 * i, "threshold": 0.08, "blocks_computed": 4 if i % 2 == 0 else 1, "blocks_total": 4,
         "reason": "", "block_mask": "1111" if i % 2 == 0 else "1000"}
    d.update(over)
    return d


def run_event(node="5", run=1, prompt="p1"):
    return {"node": node, "run": run, "prompt": prompt, "run_id": run, "method": "first_block", "total_steps": 4,
            "evaluations": 4, "computed": 2, "reused": 2, "forecast": 0, "compute_fraction": 0.625,
            "estimated_speedup": 1.6, "wall_s": 0.1, "peak_cache_mb": 0.0, "resets": [],
            "steps": [[i, 0, "computed" if i % 2 == 0 else "reused", 4 if i % 2 == 0 else 1, 4, ["cond", "uncond"]]
                      for i in range(4)]}


def test_steps_and_run_fold_into_one_entry(events):
    store = events.RunStore()
    for i in range(4):
        store.add(events.STEP_EVENT, step(i=i))
    snap = store.snapshot()
    (entry,) = snap["nodes"]["5"]
    assert entry["done"] is False and entry["summary"] is None
    assert [r["decision"] for r in entry["records"]] == ["computed", "reused", "computed", "reused"]
    assert entry["records"][1]["block_mask"] == "1000"
    assert "node" not in entry["records"][0] and "run" not in entry["records"][0]
    store.add(events.RUN_EVENT, run_event())
    (entry,) = store.snapshot()["nodes"]["5"]
    assert entry["done"] is True
    assert entry["summary"]["estimated_speedup"] == 1.6
    assert "steps" not in entry["summary"]
    assert len(entry["records"]) == 4          # the step events' records are kept, not the compact list
    json.dumps(store.snapshot())                # JSON-safe


def test_run_event_alone_keeps_the_compact_steps(events):
    store = events.RunStore()
    store.add(events.RUN_EVENT, run_event(run=7))
    (entry,) = store.snapshot()["nodes"]["5"]
    assert [(r["step"], r["decision"], r["blocks_computed"]) for r in entry["records"]] == \
        [(0, "computed", 4), (1, "reused", 1), (2, "computed", 4), (3, "reused", 1)]


def test_bounds(events):
    store = events.RunStore(max_nodes=3, max_runs=2, max_records=5)
    for node in range(5):
        store.add(events.STEP_EVENT, step(node=str(node)))
    assert list(store.snapshot()["nodes"]) == ["2", "3", "4"]
    for run in range(4):
        store.add(events.STEP_EVENT, step(node="4", run=run))
    assert [e["run"] for e in store.snapshot()["nodes"]["4"]] == [2, 3]
    for i in range(8):
        store.add(events.STEP_EVENT, step(node="4", run=3, i=i))
    entry = store.snapshot()["nodes"]["4"][-1]
    assert len(entry["records"]) == 5 and entry["truncated"] == 4


def test_no_tensors_or_odd_values_survive(events):
    store = events.RunStore()

    class Scalar:
        def item(self):
            return 0.5

    store.add(events.STEP_EVENT, step(metric=Scalar(), sigma=math.inf, threshold=math.nan, extra=object()))
    rec = store.snapshot()["nodes"]["5"][0]["records"][0]
    assert rec["metric"] == 0.5 and rec["sigma"] is None and rec["threshold"] is None
    assert "extra" not in rec
    store.add(events.STEP_EVENT, {"run": 1})     # no node: ignored
    store.add(events.STEP_EVENT, None)
    assert list(store.snapshot()["nodes"]) == ["5"]


def test_snapshot_of_one_node(events):
    store = events.RunStore()
    store.add(events.STEP_EVENT, step(node="5"))
    store.add(events.STEP_EVENT, step(node="2:7"))
    assert list(store.snapshot("2:7")["nodes"]) == ["2:7"]
    assert store.snapshot("nope") == {"nodes": {}}


def test_send_without_a_server_only_stores(events, monkeypatch):
    monkeypatch.setattr(events, "_server", lambda: None)
    events.STORE.clear()
    events.send(events.STEP_EVENT, step(node="9"))
    assert list(events.STORE.snapshot()["nodes"]) == ["9"]


def test_send_with_a_server(events, monkeypatch):
    sent = []

    class FakeServer:
        client_id = "abc"
        last_prompt_id = "p9"

        def send_sync(self, event, data, sid):
            sent.append((event, data["node"], sid))

    monkeypatch.setattr(events, "_server", lambda: FakeServer())
    events.send(events.STEP_EVENT, step(node="9"))
    assert sent == [(events.STEP_EVENT, "9", "abc")]
    assert events._prompt_id() == "p9"


def test_route_returns_the_store(events, monkeypatch):
    web = pytest.importorskip("aiohttp.web")
    from aiohttp.test_utils import TestClient, TestServer

    class FakeServer:
        routes = web.RouteTableDef()

    monkeypatch.setattr(events, "_server", lambda: FakeServer)
    assert events.register_routes() is True
    assert events.register_routes() is True     # once only
    assert len(list(FakeServer.routes)) == 1
    events.STORE.clear()
    events.STORE.add(events.STEP_EVENT, step(node="3"))
    events.STORE.add(events.STEP_EVENT, step(node="4:1"))

    async def fetch():
        app = web.Application()
        app.add_routes(FakeServer.routes)
        async with TestClient(TestServer(app)) as client:
            everything = await (await client.get(events.ROUTE)).json()
            one = await (await client.get(events.ROUTE, params={"node": "4:1"})).json()
            return everything, one

    everything, one = asyncio.run(fetch())
    assert sorted(everything["nodes"]) == ["3", "4:1"]
    assert list(one["nodes"]) == ["4:1"]
    assert one["nodes"]["4:1"][0]["records"][0]["decision"] == "computed"


def test_no_server_no_route(events, monkeypatch):
    monkeypatch.setattr(events, "_server", lambda: None)
    assert events.register_routes() is False


def test_methods_route_serves_the_registry(events, monkeypatch):
    """With the registry's description, GET /diffusion_cache/methods is registered next to the runs route
    and serves it as it is: per method (auto first) the inputs, the advanced ones and the tooltips."""
    web = pytest.importorskip("aiohttp.web")
    from aiohttp.test_utils import TestClient, TestServer

    from cache_core.methods import METHODS, ui_description

    class FakeServer:
        routes = web.RouteTableDef()

    monkeypatch.setattr(events, "_server", lambda: FakeServer)
    description = ui_description()
    assert events.register_routes(description) is True
    assert events.register_routes(description) is True      # once only
    assert sorted(r.path for r in FakeServer.routes) == sorted([events.ROUTE, events.METHODS_ROUTE])

    async def fetch():
        app = web.Application()
        app.add_routes(FakeServer.routes)
        async with TestClient(TestServer(app)) as client:
            return await (await client.get(events.METHODS_ROUTE)).json()

    served = asyncio.run(fetch())
    assert served == json.loads(json.dumps(description))
    assert list(served) == ["auto", *METHODS]
    for entry in served.values():
        assert set(entry["advanced"]) <= set(entry["inputs"]) == set(entry["tooltips"])
        assert len(entry["inputs"]) - len(entry["advanced"]) <= 4     # with method and the toggle: 6 at most
