"""Packaging: the wheel and sdist built from a clean clone carry the front-end bundle, the package stays light.

The build tests clone the committed HEAD of this repository into a temporary folder and build there, so they test
what a fresh checkout gets: uncommitted changes in the working tree are NOT part of what they build (commit first
to test them), and a bundle left in the working tree's tfopt_widgets/static/ cannot hide a broken build path.
They need git, npm and the package registries (npm for esbuild, PyPI for the isolated build environment).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = "tfopt_widgets/static/widget.js"
BUILD_TIMEOUT_S = 300


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A clean clone of HEAD (no node_modules, no built bundle, no uncommitted edits)."""
    if subprocess.run(["git", "rev-parse", "--verify", "HEAD"], check=False, cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout with a commit: nothing to clone")
    target = tmp_path_factory.mktemp("clone") / "tfopt-widgets"
    _git("clone", "--quiet", "--no-hardlinks", str(ROOT), str(target))
    return target


def _build(clone: Path, kind: str, outdir: Path, env: dict | None = None) -> Path:
    result = subprocess.run([sys.executable, "-m", "build", f"--{kind}", "--outdir", str(outdir), str(clone)],
                            check=False, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env)
    assert result.returncode == 0, f"python -m build --{kind} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    (artifact,) = outdir.iterdir()
    return artifact


def _package_modules(clone: Path) -> set[str]:
    return {path for path in _git("ls-files", "tfopt_widgets", cwd=clone).split() if path.endswith(".py")}


@pytest.mark.slow
def test_wheel_from_clean_clone_contains_bundle_and_modules(clone, tmp_path):
    wheel = _build(clone, "wheel", tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        bundle = archive.read(BUNDLE).decode()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))

    assert bundle.strip() and "render" in bundle
    assert _package_modules(clone) <= names, f"modules missing from the wheel: {_package_modules(clone) - names}"
    assert not [n for n in names if n.startswith(("tests/", "js/", "node_modules/")) or "/node_modules/" in n]
    assert "tfopt-widgets = tfopt_widgets.cli:main" in entry_points


@pytest.fixture(scope="module")
def sdist(clone, tmp_path_factory) -> Path:
    return _build(clone, "sdist", tmp_path_factory.mktemp("sdist"))


@pytest.mark.slow
def test_sdist_from_clean_clone_ships_bundle_and_sources_not_tests(clone, sdist):
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
        bundle = archive.extractfile(f"{top}/{BUNDLE}").read().decode()

    assert bundle.strip() and "render" in bundle
    assert {"pyproject.toml", "package.json", "package-lock.json", "js/widget.js"} <= names
    assert _package_modules(clone) <= names
    assert not [n for n in names if n.split("/")[0] in {"tests", "node_modules", ".venv", ".ci"}]


@pytest.mark.slow
def test_wheel_from_sdist_builds_without_node(sdist, tmp_path):
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "src", filter="data")
    (unpacked,) = (tmp_path / "src").iterdir()
    # Only the Python environment on PATH: no npm, no node. The sdist's bundle must be used as it is.
    no_node = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    wheel = _build(unpacked, "wheel", tmp_path / "dist", env=no_node)
    with zipfile.ZipFile(wheel) as archive:
        assert "render" in archive.read(BUNDLE).decode()


def test_import_does_not_import_tensorflow():
    code = ("import sys, tfopt_widgets\n"
            "heavy = [m for m in ('tensorflow', 'tf_keras', 'tensorflow_model_optimization') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    return [block.strip() for block in blocks[:2]]


def test_readme_starts_with_two_one_line_commands_and_ci_runs_the_second():
    setup_and_demo, setup_and_test = _readme_commands()
    assert "\n" not in setup_and_demo and "\n" not in setup_and_test
    assert setup_and_demo.endswith("tfopt-widgets demo")
    assert setup_and_test.endswith("python -m pytest")

    ci = ROOT / ".ci" / "run"
    assert ci.stat().st_mode & 0o111, ".ci/run must be executable"
    commands = [line.strip() for line in ci.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert "set -euo pipefail" in commands
    assert commands[-1] == setup_and_test, "the last command of .ci/run must be the README's test command, verbatim"


def test_missing_bundle_error_says_how_to_build_it(monkeypatch, tmp_path):
    from tfopt_widgets.errors import Error
    from tfopt_widgets.widgets import frontend

    monkeypatch.setattr(frontend, "BUNDLE", tmp_path / "static" / "widget.js")
    with pytest.raises(Error, match="npm run build") as raised:
        frontend.bundle()
    assert "reinstall" in str(raised.value).lower()


def test_public_names_survive_importing_every_submodule():
    # A submodule named like a public function (tfopt_widgets/sensitivity.py beside tw.sensitivity) replaces the
    # function on the package once anything imports it; a fresh interpreter imports every module first.
    script = (
        "import importlib, pkgutil, types\n"
        "import tfopt_widgets as tw\n"
        "for module in pkgutil.walk_packages(tw.__path__, 'tfopt_widgets.'):\n"
        "    importlib.import_module(module.name)\n"
        "wrong = [name for name, where in tw._LAZY.items()\n"
        "         if where is not None and isinstance(getattr(tw, name), types.ModuleType)]\n"
        "print('MODULES', wrong)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "MODULES []" in done.stdout, done.stdout


def test_all_lists_every_public_name_once():
    import types

    import tfopt_widgets as tw

    eager = {name for name, value in vars(tw).items()
             if not name.startswith("_") and not isinstance(value, types.ModuleType) and name not in (
                 "annotations", "importlib", "load_ipython_extension")}
    assert len(tw.__all__) == len(set(tw.__all__))
    assert set(tw.__all__) == eager | set(tw._LAZY)


def test_ruff_finds_nothing():
    # The project's own ruff configuration (pyproject.toml) over the whole tree: CI lints through this test.
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run([str(ruff), "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def _package_imports():
    """{module: {modules it imports from the package}} from every relative import, lazy ones included."""
    import ast

    package = ROOT / "tfopt_widgets"
    edges = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        base = parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                where = base[:len(base) - node.level + 1]
                target = ".".join([*where, *([node.module] if node.module else [])])
                found = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
                edges.setdefault(name, set()).update(found)
                edges[name].update(f"private:{alias.name}" for alias in node.names
                                   if alias.name.startswith("_") and alias.name != "__version__")
    return edges


def test_the_package_keeps_its_shape():
    # README's Layout: imports run one way (no module imports itself back), nothing imports another module's
    # _private name, and no module grows past 450 lines.
    edges = _package_imports()

    def reaches(start):
        seen, stack = set(), [start]
        while stack:
            for target in edges.get(stack.pop(), ()):
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        return seen

    assert [name for name in edges if name in reaches(name)] == []
    assert sorted(t for targets in edges.values() for t in targets if t.startswith("private:")) == []
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "tfopt_widgets").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert long == {}
