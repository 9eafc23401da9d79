"""A span of two block kinds whose second kind reads the first kind's streams joined (ComfyUI's
Flux: single blocks read cat(txt, img)) records one residual, of the joined stream, and a skipped
span adds it once; a host that does not join them keeps one residual per kind."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from toy import ToyModel, make_run

KINDS = (("double_block", 2), ("single_block", 2))
SIGMAS = [1.0 - i / 10 for i in range(10)] + [0.0]


class _CacheOps(TorchDispatchMode):
    """The full-size ops of the cache's block handler (the toy's own work and its blocks are not
    counted), by name."""

    def __init__(self, numel, run):
        super().__init__()
        self.numel, self.names, self.counting = numel, [], False
        self.run, self.block = run, run.block

        def counted_block(g, args, run_block, *a, **k):
            def host_block(block_args):
                self.counting = False
                try:
                    return run_block(block_args)
                finally:
                    self.counting = True
            self.counting = True
            try:
                return self.block(g, args, host_block, *a, **k)
            finally:
                self.counting = False
        run.block = counted_block

    def __exit__(self, *exc):
        self.run.block = self.block
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.counting and not func.is_view and isinstance(out, torch.Tensor) and out.numel() >= self.numel:
            self.names.append(func.__name__)
        return out


def _run_steps(model, run, x, txt, count=False):
    outs, ops = [], []
    for i, s in enumerate(SIGMAS[:-1]):
        run.begin_evaluation(s, ("cond",))
        mode = _CacheOps(x.numel() // 2, run) if count else None
        before = model.block_calls
        if mode is not None:
            with mode:
                out = run.model_call(x, ("cond",), lambda: model.forward(run, x, s, ("cond",), txt), s,
                                     adds_between_blocks=False)
        else:
            out = run.model_call(x, ("cond",), lambda: model.forward(run, x, s, ("cond",), txt), s,
                                 adds_between_blocks=False)
        run.end_evaluation()
        run.step_reported(i)
        outs.append(out)
        ops.append((model.block_calls - before, mode.names if mode else None))
    return outs, ops


@pytest.mark.parametrize("method,kw", [("fixed_interval", {"interval": 3}),
                                       ("taylorseer", {"interval": 3}),
                                       ("dbcache", {"threshold": 0.5})])
def test_a_joined_span_gives_the_outputs_of_one_residual_per_kind(method, kw):
    x, txt = torch.randn(1, 16, 8), torch.randn(1, 4, 8)
    results = []
    for joinable in (True, False):
        model = ToyModel([1.0, 2.0, 0.5, 0.25], kinds=KINDS, join=True)
        run = make_run(model, SIGMAS, method=method, warmup_steps=1, last_steps_computed=1, **kw)
        if not joinable:
            run.joinable = set()
        results.append((run, _run_steps(model, run, x, txt)[0], model.block_calls))
    (joined_run, joined, calls), (split_run, split, split_calls) = results
    assert calls == split_calls < 9 * 4 + 1          # the same schedule, and something was skipped
    for a, b in zip(joined, split):
        assert torch.allclose(a, b, atol=1e-5)
    spans = [s for s in joined_run.spans if s in joined_run.joinable]
    assert spans and all(joined_run.joins[s] == ("img", ("txt", "img")) for s in spans)
    for s in spans:                                   # one residual: the joined stream's
        assert joined_run.stream_keys[(s, 0)] == () and joined_run.stream_keys[(s, 1)] == ("img",)
        assert split_run.stream_keys[(s, 0)] == ("img", "txt")


def test_a_joined_span_records_one_full_size_op_and_a_skipped_one_adds_once():
    """After the first computed call (which learns the join and whether blocks write into their
    inputs), a computed call makes one full-size op for its span (the residual, subtracted part by
    part into one tensor) and a cached one the add at the span's end."""
    x, txt = torch.randn(1, 16, 8), torch.randn(1, 4, 8)
    model = ToyModel([1.0, 2.0, 0.5, 0.25], kinds=KINDS, join=True)
    run = make_run(model, SIGMAS, method="fixed_interval", interval=3, warmup_steps=1, last_steps_computed=1)
    _, ops = _run_steps(model, run, x, txt, count=True)
    computed = [names for blocks, names in ops[1:] if blocks == 4]
    skipped = [names for blocks, names in ops if blocks == 0]
    assert computed and skipped
    for names in computed:
        assert [n for n in names if n != "empty_like.default"] == ["sub.out"], names
    for names in skipped:
        assert names == ["add.Tensor"], names


def test_a_host_that_does_not_join_the_streams_keeps_a_residual_per_kind():
    x, txt = torch.randn(1, 16, 8), torch.randn(1, 4, 8)
    model = ToyModel([1.0, 2.0, 0.5, 0.25], kinds=KINDS)          # single blocks read img alone
    run = make_run(model, SIGMAS, method="fixed_interval", interval=3, warmup_steps=1, last_steps_computed=1)
    _run_steps(model, run, x, txt)
    span = run.spans[0]
    assert run.joins[span] is False
    assert run.stream_keys[(span, 0)] == ("img", "txt") and run.stream_keys[(span, 1)] == ("img",)
