// The front-end bundle of tfopt-widgets: one ES module with every anywidget view, picked by the `_view` trait.
// esbuild bundles it into tfopt_widgets/static/widget.js (npm run build, or installing the package).

import { renderLayerTable } from "./layer_table.js";

const VIEWS = { "layer-table": renderLayerTable };

function render({ model, el }) {
  const name = model.get("_view");
  const view = VIEWS[name];
  if (!view) {
    const message = document.createElement("pre");
    message.textContent = `tfopt-widgets: no view named ${JSON.stringify(name)} in this bundle; reinstall the package.`;
    el.replaceChildren(message);
    return undefined;
  }
  return view({ model, el });
}

export default { render };
