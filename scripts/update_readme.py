#!/usr/bin/env python
"""Rewrite the README's generated sections from the method registry (cache_core.methods).

    python scripts/update_readme.py            # rewrite README.md in place
    python scripts/update_readme.py --check    # exit 1 when README.md is out of step (writes nothing)

Each section lies between two markers and is replaced whole:

* ``<!-- methods:begin -->`` ... ``<!-- methods:end -->``: the method table, ``methods_table_markdown()``;
* ``<!-- inputs:begin -->`` ... ``<!-- inputs:end -->``: what the node shows per method, and what its
  "advanced inputs" toggle adds, ``method_inputs_markdown()``.

tests/core/test_readme.py asserts that the README equals what :func:`render` makes of it.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def sections() -> dict[str, str]:
    """marker name -> the text the registry gives for it"""
    from cache_core.methods import method_inputs_markdown, methods_table_markdown
    return {"methods": methods_table_markdown(), "inputs": method_inputs_markdown()}


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- {name}:begin -->\n)(.*?)(<!-- {name}:end -->)", re.S)


def render(text: str) -> str:
    """``text`` with every generated section replaced by the registry's; raises when a marker pair is missing."""
    for name, body in sections().items():
        pattern = _pattern(name)
        if len(pattern.findall(text)) != 1:
            raise ValueError(f"README.md needs exactly one <!-- {name}:begin --> ... <!-- {name}:end --> pair")
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(3), text)
    return text


def section(text: str, name: str) -> str:
    """The text between one marker pair (without the trailing newline)."""
    found = _pattern(name).search(text)
    if found is None:
        raise ValueError(f"no <!-- {name}:begin --> ... <!-- {name}:end --> in the text")
    return found.group(2).rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether README.md is up to date")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        if new != text:
            print(f"{args.readme.name} is out of step with the method registry: "
                  "run python scripts/update_readme.py", file=sys.stderr)
            return 1
        print(f"{args.readme.name} is up to date")
        return 0
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
        print(f"rewrote the generated sections of {args.readme}")
    else:
        print(f"{args.readme.name} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
