"""Build step that hatch-jupyter-builder runs before packaging: bundle js/ into tfopt_widgets/static/.

Not part of the installed package. It runs `npm ci` (`npm install` when there is no package-lock.json) and then
`npm run build` (esbuild), but only when the bundle is missing or older than the front-end sources, so building a
wheel from an sdist (which ships the bundle) needs no Node.js, and re-running `pip install -e .` is quick.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BUNDLE = ROOT / "tfopt_widgets" / "static" / "widget.js"
SOURCES = [ROOT / "js", ROOT / "package.json", ROOT / "package-lock.json"]


def _newest_source_mtime() -> float:
    files = [p for source in SOURCES if source.exists()
             for p in ([source] if source.is_file() else source.rglob("*")) if p.is_file()]
    return max((p.stat().st_mtime for p in files), default=0.0)


def is_stale() -> bool:
    """True when the bundle is missing or older than any front-end source file.

    Equal times count as up to date: a reproducible sdist gives every file the same time, bundle included.
    """
    return not BUNDLE.exists() or BUNDLE.stat().st_mtime < _newest_source_mtime()


def build(target_name: str, version: str, **_: object) -> None:
    """Entry point named in pyproject.toml; `target_name` is wheel or sdist, `version` standard or editable."""
    if not is_stale():
        print(f"tfopt-widgets: front-end bundle is up to date ({BUNDLE.relative_to(ROOT)})", file=sys.stderr)
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm was not found, and it is needed to build the widget front-end (js/ -> tfopt_widgets/static/). "
            "Install Node.js 18 or newer with npm, or install tfopt-widgets from a wheel or sdist, which ship the "
            "built bundle.")
    install = "ci" if (ROOT / "package-lock.json").exists() else "install"
    for command in ([npm, install, "--no-audit", "--no-fund"], [npm, "run", "build"]):
        print(f"tfopt-widgets: running {' '.join(command[1:])!r} for the {target_name} ({version})", file=sys.stderr)
        subprocess.run(command, cwd=ROOT, check=True)
