// Styles of the layer table (scoped under .tfopt-table) and of the Studio parts around it that are plain ipywidgets
// (scoped under .tfopt-studio; the table's view injects them, and a Studio always holds a table).
//
// Colours come from the host's theme: VS Code's --vscode-* variables first (its notebook renderer sets them, light or
// dark), then JupyterLab's --jp-* (light, dark, high contrast), then light defaults elsewhere. Every colour below
// reads one of the --tfopt-* variables, so a theme is one place.

export const THEME = `
.tfopt-studio, .tfopt-table {
  --tfopt-fg: var(--vscode-editor-foreground, var(--jp-ui-font-color1, #222));
  --tfopt-fg-muted: var(--vscode-descriptionForeground, var(--jp-ui-font-color2, #666));
  --tfopt-bg: var(--vscode-editor-background, var(--jp-layout-color1, #fff));
  --tfopt-bg-head: var(--vscode-editorWidget-background, var(--jp-layout-color2, #f3f3f3));
  --tfopt-bg-input: var(--vscode-input-background, var(--jp-layout-color1, #fff));
  --tfopt-fg-input: var(--vscode-input-foreground, var(--tfopt-fg));
  --tfopt-border: var(--vscode-input-border, var(--vscode-panel-border, var(--jp-border-color1, #bbb)));
  --tfopt-border-light: var(--vscode-panel-border, var(--jp-border-color2, #ddd));
  --tfopt-accent: var(--vscode-button-background, var(--jp-brand-color1, #1976d2));
  /* A primary button: white text needs the darker brand blue (JupyterLab Dark's brand-color1 is too light). */
  --tfopt-bg-primary: var(--vscode-button-background, var(--jp-brand-color0, #0d47a1));
  --tfopt-fg-primary: var(--vscode-button-foreground, #fff);
  --tfopt-focus: var(--vscode-focusBorder, var(--jp-brand-color1, #1976d2));
  --tfopt-link: var(--vscode-textLink-foreground, var(--jp-content-link-color, #1565c0));
  --tfopt-bg-error: var(--vscode-inputValidation-errorBackground, var(--jp-rendermime-error-background, #fdd));
  --tfopt-border-error: var(--vscode-inputValidation-errorBorder, var(--jp-error-color1, #d32f2f));
  /* Tints of the text colour over the background: a stripe and a selection that read in light and dark themes. */
  --tfopt-bg-odd: color-mix(in srgb, var(--tfopt-fg) 5%, var(--tfopt-bg));
  --tfopt-bg-selected: color-mix(in srgb, var(--tfopt-accent) 28%, var(--tfopt-bg));
}
/* The error line above the table: the message on a tinted background in the text colour (a red text colour that
   reads on white does not on a dark background), and a Dismiss button that never shrinks. */
.tfopt-studio .tfopt-error { background: var(--tfopt-bg-error); border-left: 3px solid var(--tfopt-border-error);
  align-items: flex-start; padding: 2px 4px; gap: 8px; }
.tfopt-studio .tfopt-error-message { color: var(--tfopt-fg); white-space: pre-wrap; overflow-wrap: anywhere;
  line-height: 1.4; padding: 3px 0; }
.tfopt-studio .tfopt-error button { flex: 0 0 auto; min-width: max-content; overflow: visible; }
`;

// The row grid: fixed or minimum widths that fit the widest content of each column (a type name may wrap to two
// lines). Rows are positioned one by one (the body is virtualised), so they cannot size columns to content.
const COLUMNS = [
  "22px", // select
  "minmax(96px, 2fr)", // layer
  "minmax(96px, 1.3fr)", // type: "Normalization", "GlobalAverage" on a line
  "minmax(56px, 1fr)", // output shape: "8, 8, 16"; longer ones wrap
  "64px", // size: "131.3 KB"
  "var(--tfopt-heat, 0px)",
  "36px", // QAT
  "36px", // float
  "60px", // sparsity
  "58px", // clusters
  "98px", // init: "kmeans++" in a select
  "58px", // weights: "float" in a select
  "62px", // activations: "int16" in a select
  "48px", // error over step: "⚠ 1.25", "±0.013"
  "90px", // placement: "Hexagon DSP", "CPU fallback"
];
const GAP = 5;
const PAD = 4;
const FIXED = COLUMNS.map((c) => Number((c.match(/^(?:minmax\()?(\d+)px/) || [0, 0])[1])).reduce((a, b) => a + b, 0);
// The narrowest a row can be: the columns' minimum widths, the gaps and the padding. Narrower, the grid scrolls.
const MIN_ROW_WIDTH = FIXED + GAP * (COLUMNS.length - 1) + 2 * PAD;

export const CSS = `${THEME}
.tfopt-table { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 12px; color: var(--tfopt-fg);
  width: 100%; min-width: 0; }
.tfopt-table .tfopt-toolbar { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 4px 0; }
.tfopt-table input, .tfopt-table select, .tfopt-table button { font: inherit; color: var(--tfopt-fg-input);
  background: var(--tfopt-bg-input); border: 1px solid var(--tfopt-border); border-radius: 3px;
  padding: 1px 4px; height: 22px; box-sizing: border-box; }
.tfopt-table input[type=checkbox] { height: auto; margin: 0; }
.tfopt-table input[type=number] { width: 84px; }
.tfopt-table input[type=search] { width: 200px; max-width: 100%; }
.tfopt-table button { cursor: pointer; }
.tfopt-table button.tfopt-primary { background: var(--tfopt-bg-primary); color: var(--tfopt-fg-primary); border-color: transparent; }
.tfopt-table :disabled { opacity: 0.45; cursor: not-allowed; }
.tfopt-table :focus-visible { outline: 2px solid var(--tfopt-focus); outline-offset: 1px; }
.tfopt-table .tfopt-muted, .tfopt-table .tfopt-status { color: var(--tfopt-fg-muted); }

/* One scroll container for the header and the rows: they scroll sideways together and share the same width (a
   vertical scrollbar in the body alone would make the header wider than the rows). */
.tfopt-table .tfopt-grid { border: 1px solid var(--tfopt-border-light); overflow: auto; position: relative;
  max-height: calc(13 * 30px + 18px); background: var(--tfopt-bg); }
.tfopt-table .tfopt-row { display: grid; align-items: center; height: 30px; box-sizing: border-box;
  grid-template-columns: ${COLUMNS.join(" ")}; column-gap: ${GAP}px; padding: 0 ${PAD}px;
  min-width: calc(${MIN_ROW_WIDTH}px + var(--tfopt-heat, 0px)); }
.tfopt-table .tfopt-row > span { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-width: 0; }
.tfopt-table .tfopt-row input[type=number], .tfopt-table .tfopt-row select { width: 100%; }
/* Names, types, shapes and headings wrap onto a second line (at spaces, underscores and CamelCase breaks) rather
   than being cut; the cell's title holds the whole text when even two lines are not enough. */
.tfopt-table .tfopt-lines { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 2; overflow: hidden;
  white-space: normal; overflow-wrap: anywhere; line-height: 13px; text-align: inherit; }
.tfopt-table .tfopt-head { font-weight: 600; background: var(--tfopt-bg-head);
  border-bottom: 1px solid var(--tfopt-border-light); position: sticky; top: 0; z-index: 2; }
.tfopt-table .tfopt-head button.tfopt-sort { border: none; background: none; padding: 0; font-weight: 600; height: auto;
  text-align: inherit; color: inherit; max-width: 100%; }
.tfopt-table .tfopt-head [aria-sort=ascending] button::after { content: " ▲"; }
.tfopt-table .tfopt-head [aria-sort=descending] button::after { content: " ▼"; }
.tfopt-table .tfopt-body { position: relative; min-width: calc(${MIN_ROW_WIDTH}px + var(--tfopt-heat, 0px)); }
.tfopt-table .tfopt-rows { position: absolute; top: 0; left: 0; right: 0; }
.tfopt-table .tfopt-rows .tfopt-row { position: absolute; left: 0; right: 0; }
.tfopt-table .tfopt-odd { background: var(--tfopt-bg-odd); }
.tfopt-table .tfopt-selected { background: var(--tfopt-bg-selected) !important; }
.tfopt-table .tfopt-row > span.tfopt-cell-name { display: flex; align-items: center; }
.tfopt-table .tfopt-name { border: none; background: none; padding: 0; text-align: left; max-width: 100%; height: auto;
  color: var(--tfopt-link); text-decoration: underline dotted; }
.tfopt-table .tfopt-num { text-align: right; font-variant-numeric: tabular-nums; }
.tfopt-table .tfopt-center { text-align: center; }
.tfopt-table .tfopt-heat { display: flex; gap: 2px; }
.tfopt-table .tfopt-heat-cell, .tfopt-table .tfopt-heat-head { width: 20px; min-width: 20px; height: 20px; padding: 0;
  border: 1px solid transparent; border-radius: 2px; font-size: 10px; }
.tfopt-table .tfopt-heat-cell { border-color: rgba(0, 0, 0, 0.08); }
.tfopt-table .tfopt-heat-none { display: inline-block; background: repeating-linear-gradient(45deg,
  transparent 0 3px, var(--tfopt-border-light) 3px 4px); }
.tfopt-table .tfopt-heat-on { border: 2px solid var(--tfopt-fg); }
.tfopt-table .tfopt-heat-head { background: none; font-weight: 600; border: none; border-bottom: 2px solid; color: inherit; }
.tfopt-table .tfopt-heat-quantize { border-bottom-color: #7e57c2; }
.tfopt-table .tfopt-heat-prune { border-bottom-color: #ef6c00; }
.tfopt-table .tfopt-heat-cluster { border-bottom-color: #00897b; }
.tfopt-table .tfopt-head [aria-sort=ascending].tfopt-heat-head::after { content: "▲"; font-size: 7px; }
.tfopt-table .tfopt-head [aria-sort=descending].tfopt-heat-head::after { content: "▼"; font-size: 7px; }
/* Badges carry their own light background and dark text, so they read in every theme. */
.tfopt-table .tfopt-badge { border-radius: 8px; padding: 1px 6px; font-size: 11px; white-space: nowrap; }
.tfopt-table .tfopt-badge-yes { background: #d6f5dd; color: #11622a; }
.tfopt-table .tfopt-badge-no { background: #fde2cf; color: #8a3a00; }
.tfopt-table .tfopt-badge-unknown { background: #eee; color: #555; }
/* The error column's coloured cells carry dark text, as the heat map's do, so they read in every theme. */
.tfopt-table .tfopt-error-cell { font-variant-numeric: tabular-nums; }
.tfopt-table .tfopt-error-cell[style*=background] { color: #222; border-radius: 2px; padding: 0 3px; }
.tfopt-table .tfopt-flagged { font-weight: 600; }
.tfopt-table .tfopt-errors-note { margin: 4px 0; line-height: 1.4; }
`;
