"""Make PyPI's tensorrt-stubs parseable by mypy.

The generated stubs (10.13) have two kinds of syntax errors: parameters named ``in`` (a keyword)
and parameters without a default after ones with a default. Both are fixed in a copy; the API
surface (names, types) is unchanged, which is what the mypy check is for.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path


def _split_params(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _fix_def(line: str) -> str:
    m = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not m:
        return line
    params = _split_params(m.group(2))
    seen_default = False
    out = []
    for p in params:
        if "=" in p:
            seen_default = True
        elif seen_default and p.strip() and not p.strip().startswith("*"):
            p = p + " = ..."
        out.append(p)
    return m.group(1) + ",".join(out) + m.group(3)


def fixed_stub_copy(site_packages: Path, dest: Path) -> Path:
    for pkg in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site_packages / pkg, dest / pkg, ignore=shutil.ignore_patterns("*.py", "*.so", "__pycache__"))
    for f in dest.rglob("*.pyi"):
        text = re.sub(r"([(,]\s*)in(\s*:)", r"\1in_\2", f.read_text())
        f.write_text("\n".join(_fix_def(l) for l in text.splitlines()) + "\n")
    return dest
