"""Where the built front-end bundle of the widgets lives.

`js/widget.js` is bundled by esbuild into `tfopt_widgets/static/widget.js` when the package is built or installed
(`pip install .`, `pip install -e .`, a wheel or sdist), or by hand with `npm run build`. The bundle is not in git.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import Error

BUNDLE = Path(__file__).parent.parent / "static" / "widget.js"


class FrontendMissingError(Error):
    """The widget front-end bundle was not built, so the widgets cannot render."""


def bundle() -> Path:
    """The path of the built ES module, for an anywidget's `_esm`; raises FrontendMissingError if it is absent.

    >>> bundle().name
    'widget.js'
    """
    if not BUNDLE.is_file() or BUNDLE.stat().st_size == 0:
        raise FrontendMissingError(
            f"The widget front-end bundle is missing: {BUNDLE} does not exist or is empty. "
            "Reinstall the package (`pip install --force-reinstall tfopt-widgets`, or `pip install -e .` in a "
            "checkout), or build it from a checkout with `npm install && npm run build`.",
            field="static/widget.js")
    return BUNDLE
