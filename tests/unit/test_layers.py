"""One-way layers (docs/layout.md, .importlinter): every package imports only those below
it, and no modules import each other in a circle, imports inside functions included."""

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
    assert "Contracts: 2 kept, 0 broken." in out.stdout


def lint(tmp_path: Path, contract: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / ".importlinter").write_text(
        f"[importlinter]\nroot_package = shop\n\n[importlinter:contract:c]\n{contract}"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [LINT, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True
    )


def test_a_circle_hidden_in_a_function_is_caught(tmp_path: Path) -> None:
    """The circle contract on a package whose two modules import each other, one of them
    inside a function body: broken, naming the pair."""
    pkg = tmp_path / "shop"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "till.py").write_text("from shop import stock\n")
    (pkg / "stock.py").write_text("def f():\n    from shop import till\n")
    out = lint(tmp_path, "name = circles\ntype = acyclic_siblings\nancestors = shop\n")
    assert out.returncode != 0 and "No cycles are allowed in shop" in out.stdout
    assert ".till -> .stock" in out.stdout or ".stock -> .till" in out.stdout
    (pkg / "stock.py").write_text("def f():\n    return 1\n")  # the circle cut: kept
    assert (
        lint(tmp_path, "name = circles\ntype = acyclic_siblings\nancestors = shop\n").returncode
        == 0
    )


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
    out = lint(tmp_path, "name = layers\ntype = layers\nlayers =\n    shop.high\n    shop.low\n")
    assert out.returncode != 0 and "shop.low.base -> shop.high.top" in out.stdout


def test_no_module_passes_300_lines() -> None:
    """Small modules, one job each (docs/layout.md): a module that grows past this is split."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "pipeline").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > 300
    }
    assert not long, long
