// Styles of the layer table, scoped under .tfopt-table. Colours follow JupyterLab's theme variables and fall
// back to plain values elsewhere (VS Code, Voila).

export const CSS = `
.tfopt-table { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 12px;
  color: var(--jp-ui-font-color1, #222); width: 100%; }
.tfopt-table .tfopt-toolbar { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 4px 0; }
.tfopt-table input, .tfopt-table select, .tfopt-table button { font: inherit; color: inherit;
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bbb); border-radius: 3px;
  padding: 1px 4px; height: 22px; box-sizing: border-box; }
.tfopt-table input[type=checkbox] { height: auto; }
.tfopt-table input[type=number] { width: 70px; }
.tfopt-table input[type=search] { width: 200px; }
.tfopt-table button { cursor: pointer; }
.tfopt-table button.tfopt-primary { background: var(--jp-brand-color1, #1976d2); color: #fff; border-color: transparent; }
.tfopt-table :disabled { opacity: 0.45; cursor: not-allowed; }
.tfopt-table :focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: 1px; }
.tfopt-table .tfopt-muted, .tfopt-table .tfopt-status { color: var(--jp-ui-font-color2, #666); }
.tfopt-table .tfopt-grid { border: 1px solid var(--jp-border-color2, #ddd); overflow-x: auto; }
.tfopt-table .tfopt-row { display: grid; align-items: center; height: 30px; box-sizing: border-box;
  grid-template-columns: 28px minmax(130px, 2fr) minmax(90px, 1.2fr) minmax(90px, 1.1fr) 80px 80px
    var(--tfopt-heat, 0px) 62px 40px 82px 78px 92px 110px; min-width: calc(1004px + var(--tfopt-heat, 0px));
  column-gap: 4px; padding: 0 4px; }
.tfopt-table .tfopt-row > span { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.tfopt-table .tfopt-head { font-weight: 600; background: var(--jp-layout-color2, #f3f3f3);
  border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.tfopt-table .tfopt-head button.tfopt-sort { border: none; background: none; padding: 0; font-weight: 600; height: auto; }
.tfopt-table .tfopt-head [aria-sort=ascending] button::after { content: " ▲"; }
.tfopt-table .tfopt-head [aria-sort=descending] button::after { content: " ▼"; }
.tfopt-table .tfopt-body { position: relative; overflow-y: auto; min-width: calc(1012px + var(--tfopt-heat, 0px)); }
.tfopt-table .tfopt-rows { position: absolute; top: 0; left: 0; right: 0; }
.tfopt-table .tfopt-rows .tfopt-row { position: absolute; left: 0; right: 0; }
.tfopt-table .tfopt-odd { background: var(--jp-layout-color2, #fafafa); }
.tfopt-table .tfopt-selected { background: var(--jp-brand-color3, #dbeafe) !important; }
.tfopt-table .tfopt-name { border: none; background: none; padding: 0; text-align: left; max-width: 100%;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; color: var(--jp-content-link-color, #1565c0);
  text-decoration: underline dotted; }
.tfopt-table .tfopt-num { text-align: right; font-variant-numeric: tabular-nums; }
.tfopt-table .tfopt-center { text-align: center; }
.tfopt-table .tfopt-heat { display: flex; gap: 2px; }
.tfopt-table .tfopt-heat-cell, .tfopt-table .tfopt-heat-head { width: 20px; min-width: 20px; height: 20px; padding: 0;
  border: 1px solid transparent; border-radius: 2px; font-size: 10px; }
.tfopt-table .tfopt-heat-cell { border-color: rgba(0, 0, 0, 0.08); }
.tfopt-table .tfopt-heat-none { display: inline-block; background: repeating-linear-gradient(45deg,
  transparent 0 3px, var(--jp-border-color2, #ddd) 3px 4px); }
.tfopt-table .tfopt-heat-on { border: 2px solid var(--jp-ui-font-color1, #222); }
.tfopt-table .tfopt-heat-head { background: none; font-weight: 600; border: none; border-bottom: 2px solid; }
.tfopt-table .tfopt-heat-quantize { border-bottom-color: #7e57c2; }
.tfopt-table .tfopt-heat-prune { border-bottom-color: #ef6c00; }
.tfopt-table .tfopt-heat-cluster { border-bottom-color: #00897b; }
.tfopt-table .tfopt-head [aria-sort=ascending].tfopt-heat-head::after { content: "▲"; font-size: 7px; }
.tfopt-table .tfopt-head [aria-sort=descending].tfopt-heat-head::after { content: "▼"; font-size: 7px; }
.tfopt-table .tfopt-badge { border-radius: 8px; padding: 1px 7px; font-size: 11px; }
.tfopt-table .tfopt-badge-yes { background: #d6f5dd; color: #11622a; }
.tfopt-table .tfopt-badge-no { background: #fde2cf; color: #8a3a00; }
.tfopt-table .tfopt-badge-unknown { background: #eee; color: #555; }
`;
