"""The README's generated sections are the method registry's, and what the node shows per method is small.

Nothing here writes a file: a README out of step is fixed with ``python scripts/update_readme.py``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from cache_core.methods import (COMMON_KNOBS, METHODS, method_inputs_markdown, methods_table_markdown,
                                node_inputs, ui_description)

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def update_readme():
    spec = importlib.util.spec_from_file_location("update_readme_under_test", ROOT / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_method_table_is_the_registrys(update_readme):
    text = README.read_text(encoding="utf-8")
    assert update_readme.section(text, "methods") == methods_table_markdown(), \
        "README's method table is out of step with cache_core.methods: run python scripts/update_readme.py"


def test_readme_inputs_per_method_are_the_registrys(update_readme):
    text = README.read_text(encoding="utf-8")
    assert update_readme.section(text, "inputs") == method_inputs_markdown(), \
        "README's inputs per method are out of step with cache_core.methods: run python scripts/update_readme.py"


def test_update_readme_changes_nothing_in_an_up_to_date_readme(update_readme):
    text = README.read_text(encoding="utf-8")
    assert update_readme.render(text) == text
    stale = text.replace("| `dbcache` |", "| `dbcache (old)` |", 1)
    assert update_readme.render(stale) == text        # a stale table is replaced whole, in memory
    with pytest.raises(ValueError, match="methods:begin"):
        update_readme.render(text.replace("<!-- methods:end -->", ""))


def test_every_method_row_is_in_the_table():
    table = methods_table_markdown()
    for mid in METHODS:
        assert f"| `{mid}` |" in table
    inputs = method_inputs_markdown()
    for mid in ("auto", *METHODS):
        assert f"| `{mid}` |" in inputs


def test_the_node_shows_few_inputs_per_method():
    """Besides model and method, at most four inputs per method before the advanced toggle; every node
    input belongs to some method; a method's tooltip names a useful range or what 0 means where it has one."""
    described = ui_description()
    assert list(described) == ["auto", *METHODS]
    for mid, d in described.items():
        shown = [n for n in d["inputs"] if n not in d["advanced"]]
        assert 1 <= len(shown) <= 4, (mid, shown)
        assert set(d["advanced"]) <= set(d["inputs"]) == set(d["tooltips"])
        assert all(d["tooltips"][n] for n in d["inputs"]), mid
    names = {n for d in described.values() for n in d["inputs"]}
    assert names == {k.name for k in node_inputs()}
    for knob in COMMON_KNOBS:
        assert knob.name in names


def test_auto_shows_what_either_method_reads():
    auto = ui_description()["auto"]
    assert [n for n in auto["inputs"] if n not in auto["advanced"]] == ["threshold"]
    tip = auto["tooltips"]["threshold"]
    assert tip.startswith("first_block: ") and " | easycache: " in tip
