"""Run statistics: every decision, as JSON-safe data."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, is_dataclass


def _json_float(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class DecisionRecord:
    step: int
    stage: int
    sigma: float
    branches: list
    decision: str
    metric: float | None
    threshold: float | None
    blocks_computed: int
    blocks_total: int
    reason: str = ""
    block_mask: str = ""      # first call's blocks in order: 1 computed, 0 cached ("" = whole-call caching)

    def to_json(self) -> dict:
        # field by field: it runs once per step (the timeline's event), where asdict's deep copy shows
        return {"step": self.step, "stage": self.stage, "sigma": _json_float(self.sigma),
                "branches": [asdict(b) if is_dataclass(b) else b for b in self.branches], "decision": self.decision, "metric": _json_float(self.metric),
                "threshold": _json_float(self.threshold), "blocks_computed": self.blocks_computed,
                "blocks_total": self.blocks_total, "reason": self.reason, "block_mask": self.block_mask}


@dataclass
class RunStats:
    run_id: int
    method: str
    total_steps: int
    records: list = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    wall_s: float | None = None
    peak_cache_bytes: int = 0
    resets: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)     # what caches beside the step's report (CFG-Cache, PAB)

    def add(self, record: DecisionRecord) -> None:
        self.records.append(record)

    def note_cache_bytes(self, nbytes: int) -> None:
        self.peak_cache_bytes = max(self.peak_cache_bytes, int(nbytes))

    def finish(self) -> None:
        self.wall_s = time.perf_counter() - self.started

    def counts(self) -> dict:
        out = {"computed": 0, "reused": 0, "forecast": 0}
        for r in self.records:
            out[r.decision] = out.get(r.decision, 0) + 1
        return out

    def compute_fraction(self) -> float:
        """Block evaluations computed / total, over every model evaluation of the run."""
        total = sum(r.blocks_total for r in self.records)
        done = sum(r.blocks_computed for r in self.records)
        return 1.0 if total == 0 else done / total

    def estimated_speedup(self) -> float:
        f = self.compute_fraction()
        return math.inf if f == 0 else 1.0 / f

    def summary(self) -> dict:
        counts = self.counts()
        return {
            "run_id": self.run_id,
            "method": self.method,
            "total_steps": self.total_steps,
            "evaluations": len(self.records),
            **counts,
            "compute_fraction": round(self.compute_fraction(), 4),
            "estimated_speedup": _json_float(round(self.estimated_speedup(), 3)),
            "wall_s": _json_float(self.wall_s),
            "peak_cache_mb": round(self.peak_cache_bytes / 2 ** 20, 3),
            "resets": list(self.resets),
            **self.extra,
        }

    def to_json(self) -> dict:
        return {"summary": self.summary(), "records": [r.to_json() for r in self.records],
                "notes": list(self.notes)}

    def log_line(self) -> str:
        s = self.summary()
        stage0 = [r for r in self.records if r.stage == 0]
        skipped_steps = sorted({r.step for r in stage0 if r.decision != "computed"})
        return (f"Diffusion Cache [{self.method}] - {s['computed']} computed, {s['reused']} reused, "
                f"{s['forecast']} forecast of {s['evaluations']} evaluations; "
                f"block compute fraction {s['compute_fraction']:.3f} (~{s['estimated_speedup']}x); "
                f"cached steps: {skipped_steps}")
