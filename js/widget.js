// Placeholder view of tfopt-widgets: shows the synced `summary` trait.
// The Studio views replace this file; the build path (esbuild -> tfopt_widgets/static/widget.js) stays.

function render({ model, el }) {
  const summary = document.createElement("pre");
  summary.className = "tfopt-summary";
  // textContent, never innerHTML: layer names come from user models and may contain markup.
  const show = () => {
    summary.textContent = model.get("summary") ?? "";
  };
  show();
  model.on("change:summary", show);
  el.replaceChildren(summary);
  return () => model.off("change:summary", show);
}

export default { render };
