"""Notebook views of tfopt-widgets: the Studio and its parts, built on anywidget.

The widgets are a view and a remote control over the engine (`inspect`, `Plan`, `optimize`, `convert`,
`evaluate`); they never call tfmot themselves. Their front-end is the ES module bundled from `js/` into
`tfopt_widgets/static/widget.js` when the package is built or installed.
"""
