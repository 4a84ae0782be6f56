"""One-way layers (docs/layout.md, .importlinter): every package imports only those below
it, imports inside functions included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def test_the_pipeline_keeps_its_layers() -> None:
    out = subprocess.run(
        [LINT, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken." in out.stdout


def test_an_upward_import_hidden_in_a_function_is_caught(tmp_path: Path) -> None:
    """The same kind of contract on a two-layer package whose lower layer imports the
    upper one inside a function body: broken."""
    pkg = tmp_path / "shop"
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    for init in (pkg, pkg / "low", pkg / "high"):
        (init / "__init__.py").write_text("")
    (pkg / "high" / "top.py").write_text("from shop.low import base\n")
    (pkg / "low" / "base.py").write_text("def f():\n    from shop.high import top\n")
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_package = shop\n\n[importlinter:contract:layers]\n"
        "name = layers\ntype = layers\nlayers =\n    shop.high\n    shop.low\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [LINT, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode != 0 and "shop.low.base -> shop.high.top" in out.stdout
