// The layer table view: one row per layer with quantize / prune / cluster controls that edit the live tw.Plan
// through messages (see "Edits" below); Python shows the plan in the synced `plan_state` trait. Rows are
// virtualised: only the rows in view are in the DOM, so a model with thousands of layers stays responsive. The
// header and the rows share one scroll container: narrower than its columns need, the table scrolls sideways.
// Every field from Python is read by name: the layers arrive as named columns ({name: [...], params: [...], ...},
// see layer_columns in layer_table.py) and are turned into one object per layer here.
// Layer names come from user models and may contain markup: they are only ever set with textContent.

import { CSS } from "./layer_table_css.js";

const ROW_HEIGHT = 30;
const OVERSCAN = 8;
const HEAT_CELL = 22; // px per heat map column
// Heat map colours: within the budget, over it, ten times over (the Studio's legend shows the same three).
const HEAT_OK = [199, 235, 201];
const HEAT_OVER = [253, 230, 176];
const HEAT_BAD = [244, 163, 163];
const AS_CONVERTED = "—: no precision of its own, the layer gets the conversion's mode";
const COLUMNS = [
  // row field (also the sort key), heading, numeric
  ["name", "layer", false],
  ["class_name", "type", false],
  ["output_shape", "output shape", false],
  ["weight_bytes", "size", true], // float32 weights in bytes; the parameter count is in the cell's title
];

function element(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else if (key.startsWith("aria-") || key === "role" || key === "title" || key === "data-key") {
      if (value !== undefined && value !== null) node.setAttribute(key, value);
    } else node[key] = value;
  }
  node.append(...children);
  return node;
}

// Text that may wrap onto a second line: break opportunities after spaces, underscores, slashes, dots and at
// CamelCase boundaries ("Batch|Normalization", "Conv2D|Transpose"). Built from text nodes: names may hold markup.
export function breakable(text) {
  const parts = String(text).split(/(?<=[_/.,-])|(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])/);
  const nodes = [];
  parts.forEach((part, i) => {
    if (i) nodes.push(document.createElement("wbr"));
    nodes.push(part);
  });
  return nodes;
}

// A block of at most two lines holding `text` (see .tfopt-lines in the CSS).
function lines(text) {
  return element("span", { className: "tfopt-lines" }, breakable(text));
}

// A number box commits on Enter as well as on blur (Chrome fires no "change" on Enter in a number input).
function onCommit(input, commit) {
  input.addEventListener("change", commit);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") commit();
  });
}

// The colour of a metric drop against the budget: green within it, amber to red up to ten times over (log scale).
export function heatColour(drop, budget) {
  if (drop <= budget) return `rgb(${HEAT_OK.join(",")})`;
  const t = budget > 0 ? Math.min(1, Math.log10(drop / budget)) : 1;
  const mix = HEAT_OVER.map((a, i) => Math.round(a + (HEAT_BAD[i] - a) * t));
  return `rgb(${mix.join(",")})`;
}

// One object per layer from the named columns of the `layers` trait.
function rowsOf(columns) {
  const fields = Object.keys(columns);
  const count = fields.length ? columns[fields[0]].length : 0;
  return Array.from({ length: count }, (_, i) => Object.fromEntries(fields.map((field) => [field, columns[field][i]])));
}

// A heat map column's short heading and its words: ["50", "prune to 50% sparsity"].
function heatHeading({ technique, level }) {
  if (technique === "quantize" && level === "int4") return ["4b", "int4 weights of this layer alone (LiteRT Quantizer)"];
  if (technique === "quantize") return ["8b", "int8 post-training quantization of this layer alone"];
  if (technique === "prune") return [String(Math.round(level * 100)), `prune to ${Math.round(level * 100)}% sparsity`];
  return [String(level), `cluster into ${level} shared values`];
}

// A random id for one view of the table: Python numbers edits per view.
function viewId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The row's precision words after setting one of them, as Python's table_state.precision_words: "" clears both;
// the first word given to a layer with a kernel fills in the other (float activations beside integer weights,
// int8 weights beside integer activations); a layer without a kernel has no weights word.
export function precisionWords(entry, field, value, hasKernel) {
  const words = { weights: entry.weights || "", activations: entry.activations || "", [field]: value };
  if (!value) return { weights: "", activations: "" };
  if (!hasKernel) return { weights: field === "weights" ? value : "", activations: words.activations };
  if (!words.activations) words.activations = "float";
  if (!words.weights) words.weights = words.activations === "float" ? "float" : "int8";
  return words;
}

// `state` (a plan_state) with one edit applied as Python applies it: quantizing a layer unticks its keep float and
// keeping it float unticks its quantization; a convolution and the BatchNormalization/activation folded into it
// (`groups`: {member: convolution}) are quantized or released together; `kernels` holds the layers whose weights a
// precision can set.
export function withEdit(state, { layer, field, value }, groups, empty, kernels = new Set()) {
  const next = { ...state };
  const set = (name, changes) => {
    const entry = { ...empty, ...(next[name] || {}), ...changes };
    if (!entry.quantize && !entry.sparsity && !entry.clusters && !entry.keep_float && !entry.weights && !entry.activations) delete next[name];
    else next[name] = entry;
  };
  const head = groups[layer] ?? layer;
  const others = [head, ...Object.keys(groups).filter((name) => groups[name] === head)].filter((name) => name !== layer);
  const wasQuantized = !!(next[layer] || {}).quantize;
  if (field === "quantize") {
    set(layer, value ? { quantize: true, keep_float: false } : { quantize: false });
    if (wasQuantized !== !!value) for (const name of others) set(name, { quantize: !!value });
  } else if (field === "keep_float" && value) {
    set(layer, { keep_float: true, quantize: false });
    if (wasQuantized) for (const name of others) set(name, { quantize: false });
  } else if (field === "weights" || field === "activations") {
    set(layer, precisionWords({ ...empty, ...(next[layer] || {}) }, field, value, kernels.has(layer)));
  } else set(layer, { [field]: value });
  return next;
}

function signed(x) {
  return `${x >= 0 ? "+" : ""}${x.toFixed(4)}`;
}

export function formatBytes(n) {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} KB`;
  return `${(n / 1e6).toFixed(2)} MB`;
}

export function renderLayerTable({ model, el }) {
  const view = { sortKey: null, sortDescending: false, filter: "", order: [], start: -1, end: -1 };
  const style = element("style", { text: CSS });
  const root = element("div", { className: "tfopt-table" });

  // -- toolbar: filter, select by type, bulk edit ------------------------------------------------------------
  const filter = element("input", { type: "search", placeholder: "filter by name or type", "aria-label": "filter layers" });
  const typePicker = element("select", { "aria-label": "layer type to select" });
  const selectType = element("button", { text: "select all of type", type: "button" });
  const clearSelection = element("button", { text: "clear selection", type: "button" });
  const bulkQuantize = element("select", { "aria-label": "bulk quantize for selected layers" }, [
    element("option", { value: "", text: "quantize: leave" }),
    element("option", { value: "1", text: "quantize: on" }),
    element("option", { value: "0", text: "quantize: off" }),
  ]);
  const bulkSparsity = element("input", {
    type: "number", min: 0, max: 0.99, step: 0.05, placeholder: "sparsity",
    "aria-label": "bulk prune sparsity for selected layers", title: "blank: leave; 0: no pruning",
  });
  const bulkClusters = element("input", {
    type: "number", min: 0, step: 1, placeholder: "clusters",
    "aria-label": "bulk cluster count for selected layers", title: "blank: leave; 0: no clustering",
  });
  const bulkInit = element("select", { "aria-label": "bulk cluster init for selected layers" });
  const bulkWeights = element("select", { "aria-label": "bulk weights precision for selected layers" });
  const bulkActivations = element("select", { "aria-label": "bulk activations precision for selected layers" });
  const bulkApply = element("button", { text: "apply to selected", type: "button", className: "tfopt-primary" });
  const status = element("span", { className: "tfopt-status", role: "status" });
  root.append(
    element("div", { className: "tfopt-toolbar" }, [filter, typePicker, selectType, clearSelection]),
    element("div", { className: "tfopt-toolbar" }, [
      element("span", { text: "bulk edit:", className: "tfopt-muted" }),
      bulkQuantize, bulkSparsity, bulkClusters, bulkInit, bulkWeights, bulkActivations, bulkApply, status,
    ]),
  );

  // -- header and virtualised body, in one scroll container -----------------------------------------------------
  const header = element("div", { className: "tfopt-row tfopt-head", role: "row" });
  const selectAll = element("input", { type: "checkbox", "aria-label": "select all shown layers" });
  const sortButtons = {};
  header.append(element("span", { role: "columnheader" }, [selectAll]));
  for (const [key, heading, numeric] of COLUMNS) {
    const button = element("button", { type: "button", className: "tfopt-sort" }, [lines(heading)]);
    button.addEventListener("click", () => {
      view.sortDescending = view.sortKey === key ? !view.sortDescending : false;
      view.sortKey = key;
      refreshOrder();
    });
    // Numbers are right-aligned, their headings too: "output shape" and "size" stay apart.
    sortButtons[key] = element("span", { role: "columnheader", "aria-sort": "none", className: numeric ? "tfopt-num" : "" }, [button]);
    header.append(sortButtons[key]);
  }
  const heatHeader = element("span", { role: "columnheader", className: "tfopt-heat" });
  header.append(heatHeader);
  for (const [heading, title] of [["QAT", "quantize: quantization-aware training (int8)"],
    ["float", "keep float: stays float when the rest is converted to int8"], ["sparsity", ""], ["clusters", ""], ["init", ""],
    ["weights", `post-training precision of the layer's weights (LiteRT Quantizer, after conversion); ${AS_CONVERTED}`],
    ["activ\u00adations", `post-training precision of the layer's activations (LiteRT Quantizer); ${AS_CONVERTED}`]]) {
    header.append(element("span", { role: "columnheader", title: title || undefined }, [lines(heading)]));
  }
  // The error column: after a run, each layer's output error in the file over its quantization step.
  const errorSort = element("button", {
    type: "button", className: "tfopt-sort", "aria-label": "sort by each layer's error in the last converted file",
    title: "each layer's output error in the last converted file over its quantization step; click to sort",
  }, [lines("error")]);
  errorSort.addEventListener("click", () => {
    view.sortDescending = view.sortKey === "error" ? !view.sortDescending : true; // worst first
    view.sortKey = "error";
    refreshOrder();
  });
  // Centred, heading and numbers: right-aligned they would read as one heading with the placement column's.
  const errorHeading = element("span", { role: "columnheader", className: "tfopt-center", "aria-sort": "none" }, [errorSort]);
  header.append(errorHeading);
  const placementHeading = element("span", { role: "columnheader" });
  header.append(placementHeading);
  const body = element("div", { className: "tfopt-body", role: "rowgroup" });
  const rowsBox = element("div", { className: "tfopt-rows" });
  body.append(rowsBox);
  const grid = element("div", { className: "tfopt-grid", role: "table", "aria-label": "layers" }, [header, body]);
  const errorsNote = element("div", { className: "tfopt-muted tfopt-errors-note", role: "note" });
  root.append(grid, errorsNote);
  el.replaceChildren(style, root);

  // -- state helpers -----------------------------------------------------------------------------------------
  let rowsFrom = null;
  let rowsCache = [];
  const rows = () => {
    const columns = model.get("layers") || {};
    if (columns !== rowsFrom) {
      rowsFrom = columns;
      rowsCache = rowsOf(columns);
    }
    return rowsCache;
  };
  const reasons = () => model.get("reasons") || [];
  const inits = () => model.get("cluster_inits") || ["kmeans++"];
  const checked = () => new Set(model.get("checked") || []);
  const reasonText = (index) => (index >= 0 ? reasons()[index] || "" : "");
  const heat = () => model.get("sensitivity") || {};
  // Python's EMPTY_ENTRY: an unplanned layer.
  const emptyEntry = () => ({ quantize: false, sparsity: 0, clusters: 0, init: inits()[0], keep_float: false, weights: "", activations: "" });
  const choices = () => model.get("precision_choices") || {};
  const errors = () => model.get("layer_errors") || {};
  let kernelsFrom = null;
  let kernelSet = new Set();
  const kernels = () => {
    if (kernelsFrom !== rows()) {
      kernelsFrom = rows();
      kernelSet = new Set(kernelsFrom.filter((row) => row.has_kernel).map((row) => row.name));
    }
    return kernelSet;
  };
  const entryOf = (name) => ({ ...emptyEntry(), ...(plan()[name] || {}) });

  // -- Edits ---------------------------------------------------------------------------------------------------
  // An edit is {layer, field, value}: one field of one row. The view sends them as a message numbered in its own
  // sequence ({kind: "edits", view, seq, edits}); Python applies each message in that order to the live plan,
  // sets `plan_state` and then answers {kind: "applied", view, seq}. Until that answer the table shows Python's
  // `plan_state` with the view's pending edits on top, so a state Python sent before it saw an edit never undoes
  // that edit on screen, and a tick made before Python's answer to the previous one cannot undo what Python added.
  const viewName = viewId();
  let sent = 0;
  let pending = []; // [{seq, edits}] sent, not yet answered
  let shown = { from: null, pending: null, state: {} };
  function plan() {
    const state = model.get("plan_state") || {};
    if (shown.from !== state || shown.pending !== pending) {
      const groups = model.get("quantize_groups") || {};
      let next = state;
      for (const message of pending) for (const edit of message.edits) next = withEdit(next, edit, groups, emptyEntry(), kernels());
      shown = { from: state, pending, state: next };
    }
    return shown.state;
  }

  function edit(edits) {
    if (!edits.length) return;
    sent += 1;
    pending = [...pending, { seq: sent, edits }];
    model.send({ kind: "edits", view: viewName, seq: sent, edits });
    renderRows(true);
  }

  // A number box's value as an edit; leaving the box unchanged sends nothing.
  function commitNumber(name, field, input) {
    const value = input.value === "" ? 0 : Number(input.value);
    input.defaultValue = input.value; // committed: a re-render may replace the box
    if (value !== entryOf(name)[field]) edit([{ layer: name, field, value }]);
  }

  function onMessage(message) {
    if (!message || message.kind !== "applied" || message.view !== viewName) return;
    pending = pending.filter((m) => m.seq > message.seq);
    renderRows(true);
  }

  function setChecked(names) {
    model.set("checked", [...names]);
    model.save_changes();
  }

  function refreshOrder() {
    const all = rows();
    const needle = view.filter.trim().toLowerCase();
    let order = all.map((_, i) => i);
    if (needle) {
      order = order.filter((i) => all[i].name.toLowerCase().includes(needle) || all[i].class_name.toLowerCase().includes(needle));
    }
    const sign = view.sortDescending ? -1 : 1;
    const errorOf = (i) => {
      const found = (errors().layers || {})[all[i].name];
      return found ? found.ratio ?? null : null;
    };
    if (view.sortKey === "error") {
      // By error over step, layers without one (float outputs, before a run) last whichever the direction.
      order.sort((a, b) => {
        const x = errorOf(a), y = errorOf(b);
        if (x === null || y === null) return (x === null) - (y === null) || a - b;
        return sign * (x - y) || a - b;
      });
    } else if (view.sortKey && view.sortKey.startsWith("heat:")) {
      // A heat map column: by that drop, unmeasured layers last whichever the direction.
      const column = Number(view.sortKey.slice(5));
      const drops = heat().drops || {};
      const drop = (i) => ((drops[all[i].name] || [])[column] ?? null);
      order.sort((a, b) => {
        const x = drop(a), y = drop(b);
        if (x === null || y === null) return (x === null) - (y === null) || a - b;
        return sign * (x - y) || a - b;
      });
    } else if (view.sortKey) {
      const [field, , numeric] = COLUMNS.find((c) => c[0] === view.sortKey);
      order.sort((a, b) => {
        const x = all[a][field], y = all[b][field];
        return sign * (numeric ? x - y : String(x).localeCompare(String(y))) || a - b;
      });
    }
    for (const [key, cell] of Object.entries(sortButtons)) {
      cell.setAttribute("aria-sort", key !== view.sortKey ? "none" : view.sortDescending ? "descending" : "ascending");
    }
    errorHeading.setAttribute("aria-sort", view.sortKey !== "error" ? "none" : view.sortDescending ? "descending" : "ascending");
    for (const button of heatHeader.querySelectorAll("button")) {
      const key = button.getAttribute("data-sort");
      button.setAttribute("aria-sort", key !== view.sortKey ? "none" : view.sortDescending ? "descending" : "ascending");
    }
    view.order = order;
    body.style.height = `${order.length * ROW_HEIGHT}px`;
    status.textContent = `${order.length} of ${all.length} layers shown, ${checked().size} selected`;
    renderRows(true);
  }

  function refreshTypes() {
    const counts = new Map();
    for (const row of rows()) counts.set(row.class_name, (counts.get(row.class_name) || 0) + 1);
    const types = [...counts.entries()].sort((a, b) => b[1] - a[1]);
    typePicker.replaceChildren(...types.map(([type, n]) => element("option", { value: type, text: `${type} (${n})` })));
    bulkInit.replaceChildren(
      element("option", { value: "", text: "init: leave" }),
      ...inits().map((init) => element("option", { value: init, text: `init: ${init}` })),
    );
  }

  // The bulk precision pickers offer what the target runs ("none" clears the layers' precision).
  function refreshBulkPrecision() {
    for (const [picker, field] of [[bulkWeights, "weights"], [bulkActivations, "activations"]]) {
      const kept = picker.options.length ? picker.value : "leave"; // a new picker leaves the layers as they are
      picker.replaceChildren(
        element("option", { value: "leave", text: `${field}: leave` }),
        element("option", { value: "", text: `${field}: none`, title: AS_CONVERTED }),
        ...precisionOptions(field).map((option) => { option.text = `${field}: ${option.text}`; return option; }),
      );
      picker.value = [...picker.options].some((o) => o.value === kept && !o.disabled) ? kept : "leave";
    }
  }

  // The <option>s of a precision word, those the target cannot run disabled with its reason.
  function precisionOptions(field) {
    const offered = choices()[field] || {};
    return Object.entries(offered).map(([word, reason]) => element("option", {
      value: word, text: word, disabled: !!reason, title: reason || undefined,
    }));
  }

  // Under the table once a run has measured them: what the error column's numbers mean.
  function refreshErrorsNote() {
    const { run = "", samples = 0, ideal = 0.29, flagged_above: flagged = 0.7, layers = {} } = errors();
    errorsNote.textContent = Object.keys(layers).length
      ? `error: each layer's output error in the file of “${run}” against the float model, over the `
        + `output's quantization step (${samples} samples). About ${Number(ideal).toFixed(2)} is rounding alone; above ${flagged} on an 8-bit `
        + "output is flagged ⚠. A float output shows its RMS error (±); an int16 output's number measures its weights' error."
      : "";
  }

  // The heat map columns: a sort button per column in the header, and the grid's width for them.
  function refreshHeat() {
    const columns = heat().columns || [];
    root.style.setProperty("--tfopt-heat", columns.length ? `${columns.length * HEAT_CELL + 8}px` : "0px");
    const metric = heat().metric || "metric";
    heatHeader.replaceChildren(...columns.map((column, i) => {
      const [short, words] = heatHeading(column);
      const button = element("button", {
        type: "button", text: short, className: `tfopt-heat-head tfopt-heat-${column.technique}`,
        title: `${words}: ${metric} drop of the layer compressed alone; click to sort by it`,
        "aria-label": `sort by sensitivity to ${words}`, "data-sort": `heat:${i}`,
      });
      button.addEventListener("click", () => {
        const key = `heat:${i}`;
        view.sortDescending = view.sortKey === key ? !view.sortDescending : true; // most sensitive first
        view.sortKey = key;
        refreshOrder();
      });
      return button;
    }));
    if (!columns.length && view.sortKey && view.sortKey.startsWith("heat:")) view.sortKey = null;
  }

  // One layer's heat map cells; a click plans that level (or removes it), the int8 cell toggles keep float.
  function heatCells(name, entry, disabled) {
    const { columns = [], drops = {}, sizes = {}, metric = "metric" } = heat();
    const budget = model.get("budget") ?? 0.01;
    const layerDrops = drops[name];
    const { before, after = [] } = sizes[name] || {};
    return columns.map((column, i) => {
      const { technique, level } = column;
      const drop = layerDrops ? layerDrops[i] : null;
      if (drop === null || drop === undefined) return element("span", { className: "tfopt-heat-cell tfopt-heat-none" });
      const [, words] = heatHeading(column);
      const int4 = technique === "quantize" && level === "int4";
      const planned = int4 ? entry.weights === "int4" : technique === "quantize" ? !!entry.keep_float
        : technique === "prune" ? entry.sparsity === level : entry.clusters === level;
      let detail = `${words}: ${metric} drop ${signed(drop)}`;
      if (before && after[i]) {
        detail += `; kernel ${formatBytes(before)} → ${formatBytes(after[i])} gzipped ${int4 ? "(int8 → int4)" : "as int8"}`;
      }
      const action = int4 ? (planned ? "click: remove its precision" : "click: give it int4 weights")
        : technique === "quantize" ? (planned ? "click: quantize it again" : "click: keep it float")
          : planned ? "click: remove from the plan" : "click: plan it";
      const cell = element("button", {
        type: "button", className: `tfopt-heat-cell${planned ? " tfopt-heat-on" : ""}`, disabled,
        title: `${detail} (${action})`, "aria-label": `sensitivity of ${name} to ${words}: ${signed(drop)}`,
        "aria-pressed": String(planned), "data-key": `heat${i}\u0000${name}`,
      });
      cell.style.background = heatColour(drop, budget);
      cell.addEventListener("click", () => {
        const e = entryOf(name);
        if (int4) edit([{ layer: name, field: "weights", value: e.weights === "int4" ? "" : "int4" }]);
        else if (technique === "quantize") edit([{ layer: name, field: "keep_float", value: !e.keep_float }]);
        else if (technique === "prune") edit([{ layer: name, field: "sparsity", value: e.sparsity === level ? 0 : level }]);
        else edit([{ layer: name, field: "clusters", value: e.clusters === level ? 0 : level }]);
      });
      return cell;
    });
  }

  // One layer's error in the last converted file: its output's error over the quantization step, coloured against
  // the flag threshold on 8-bit outputs (⚠ above it); a float output shows its RMS error (±).
  function errorCell(name) {
    const { layers = {}, ideal = 0.29, flagged_above: flagged = 0.7 } = errors();
    const found = layers[name];
    if (!found) return element("span", { role: "cell" });
    const { ratio, rms, accumulated, activations, flagged: isFlagged } = found;
    const eightBit = activations === "int8" || activations === "uint8";
    const text = ratio === null ? `±${(rms ?? 0).toPrecision(2)}` : `${isFlagged ? "⚠ " : ""}${ratio.toFixed(2)}`;
    const words = ratio === null
      ? `${name}: float output, RMS error ${rms} against the float model (layer alone), ${accumulated} with every layer before`
      : `${name}: error ${ratio.toFixed(3)} of its ${activations} output's quantization step (about ${Number(ideal).toFixed(2)} is rounding alone, `
        + `above ${flagged} flagged${eightBit ? "" : "; an int16 step is fine, so this measures the weights' error"}); `
        + `RMS error ${rms}, ${accumulated} with every layer before`;
    const cell = element("span", {
      role: "cell", className: `tfopt-center tfopt-error-cell${isFlagged ? " tfopt-flagged" : ""}`, text, title: words,
      "aria-label": `error of ${name}: ${text}${isFlagged ? ", flagged" : ""}`,
    });
    if (ratio !== null && eightBit) cell.style.background = `rgb(${(isFlagged ? HEAT_BAD : HEAT_OK).join(",")})`;
    return cell;
  }

  // -- one row -----------------------------------------------------------------------------------------------
  function renderRow(index, position) {
    const row = rows()[index];
    const { name } = row;
    const entry = entryOf(name);
    const disabled = model.get("disabled");
    const supports = (technique) => !!row[`supports_${technique}`];
    const tip = (technique) => {
      const reason = reasonText(row[`${technique}_reason`]);
      return supports(technique) ? reason || undefined : reason || `cannot ${technique} this layer`;
    };
    const key = (control) => `${control}\u0000${name}`;

    const select = element("input", { type: "checkbox", checked: checked().has(name), "aria-label": `select ${name}`, "data-key": key("select") });
    select.addEventListener("change", () => {
      const names = checked();
      if (select.checked) names.add(name);
      else names.delete(name);
      setChecked(names);
    });
    const show = element("button", {
      type: "button", className: "tfopt-name", title: name,
      "aria-label": `show weights of ${name}`, "aria-pressed": String(model.get("selected") === name), "data-key": key("show"),
    }, [lines(name)]);
    show.addEventListener("click", () => {
      model.set("selected", name);
      model.save_changes();
    });
    // A BatchNormalization/activation is quantized folded into its convolution: its box follows that one's.
    const head = (model.get("quantize_groups") || {})[name];
    const quantized = !!entry.quantize || (head !== undefined && !!(plan()[head] || {}).quantize);
    const quantize = element("input", {
      type: "checkbox", checked: quantized, disabled: disabled || !supports("quantize"),
      "aria-label": `quantize ${name}`, title: tip("quantize"), "data-key": key("quantize"),
    });
    // Toggling a folded layer toggles its convolution (Python quantizes or releases the whole group).
    quantize.addEventListener("change", () => edit([{ layer: head ?? name, field: "quantize", value: quantize.checked }]));
    // Keep float: the layer stays float when the rest is converted to int8 (not with quantization-aware training).
    const keepFloat = element("input", {
      type: "checkbox", checked: !!entry.keep_float, disabled: disabled || (!row.params && !supports("quantize")),
      "aria-label": `keep ${name} float`, "data-key": key("float"),
      title: "keep float: this layer stays float when the rest is converted to int8 (selective post-training quantization)",
    });
    keepFloat.addEventListener("change", () => edit([{ layer: name, field: "keep_float", value: keepFloat.checked }]));
    const sparsity = element("input", {
      type: "number", min: 0, max: 0.99, step: 0.05, placeholder: "off", defaultValue: entry.sparsity ? String(entry.sparsity) : "",
      disabled: disabled || !supports("prune"), "aria-label": `prune sparsity for ${name}`,
      title: tip("prune") || "fraction of weights set to zero (blank or 0: no pruning)", "data-key": key("prune"),
    });
    onCommit(sparsity, () => commitNumber(name, "sparsity", sparsity));
    const clusters = element("input", {
      type: "number", min: 0, step: 1, placeholder: "off", defaultValue: entry.clusters ? String(entry.clusters) : "",
      disabled: disabled || !supports("cluster"), "aria-label": `cluster count for ${name}`,
      title: tip("cluster") || "number of shared weight values (blank or 0: no clustering)", "data-key": key("clusters"),
    });
    onCommit(clusters, () => commitNumber(name, "clusters", clusters));
    const init = element("select", {
      disabled: disabled || !supports("cluster") || !entry.clusters, "aria-label": `cluster init for ${name}`,
      title: tip("cluster") || "how cluster centroids start", "data-key": key("init"),
    }, inits().map((value) => element("option", { value, text: value })));
    init.value = entry.init || inits()[0];
    init.addEventListener("change", () => edit([{ layer: name, field: "init", value: init.value }]));
    // Post-training precision (LiteRT Quantizer): weights only where the layer has a kernel.
    const precision = (field, enabled, why) => {
      const picker = element("select", {
        disabled: disabled || !enabled, "aria-label": `${field} precision for ${name}`, "data-key": key(field),
        title: why || `${field} precision after conversion; ${AS_CONVERTED}`,
      }, [element("option", { value: "", text: "—" }), ...precisionOptions(field)]);
      picker.value = entry[field] || "";
      picker.addEventListener("change", () => edit([{ layer: name, field, value: picker.value }]));
      return picker;
    };
    // A layer folded into a convolution's op (BatchNormalization, activation) or with no op of its own (input,
    // dropout) takes the precision of the op it is part of, if any.
    const weights = precision("weights", row.has_kernel, row.has_kernel ? "" : "no kernel: only its activations take a precision");
    const ownOp = row.has_kernel || (supports("quantize") && head === undefined);
    const activations = precision("activations", ownOp, ownOp ? "" : head !== undefined
      ? `folded into ${head} in the file: set ${head}'s precision` : "no op of its own in the file");

    const place = (model.get("placement") || {})[name];
    let badge = element("span");
    if (place) {
      const { accelerated, reason: reasonIndex } = place;
      const reason = reasonIndex >= 0 ? (model.get("placement_reasons") || [])[reasonIndex] : "";
      // Name the chip itself ("Edge TPU", "CPU"): "accelerator" reads wrong when the target is the CPU.
      const words = accelerated === true ? model.get("target_title") || "accelerator"
        : accelerated === false ? "CPU fallback" : "no op";
      badge = element("span", {
        className: `tfopt-badge tfopt-badge-${accelerated === true ? "yes" : accelerated === false ? "no" : "unknown"}`,
        text: words, title: reason || words, "aria-label": `placement of ${name}: ${words}${reason ? `: ${reason}` : ""}`,
      });
    }
    const line = element("div", {
      className: `tfopt-row${model.get("selected") === name ? " tfopt-selected" : ""}${position % 2 ? " tfopt-odd" : ""}`,
      role: "row",
    }, [
      element("span", { role: "cell" }, [select]),
      element("span", { role: "cell", className: "tfopt-cell-name" }, [show]),
      element("span", { role: "cell", title: row.class_name }, [lines(row.class_name)]),
      element("span", { role: "cell", title: row.output_shape }, [lines(row.output_shape)]),
      element("span", {
        role: "cell", className: "tfopt-num", text: row.weight_bytes ? formatBytes(row.weight_bytes) : "",
        title: `${row.params.toLocaleString("en-US")} parameters`,
      }),
      element("span", { role: "cell", className: "tfopt-heat" }, heatCells(name, entry, disabled)),
      element("span", { role: "cell", className: "tfopt-center", title: tip("quantize") }, [quantize]),
      element("span", { role: "cell", className: "tfopt-center" }, [keepFloat]),
      element("span", { role: "cell", title: tip("prune") }, [sparsity]),
      element("span", { role: "cell", title: tip("cluster") }, [clusters]),
      element("span", { role: "cell" }, [init]),
      element("span", { role: "cell" }, [weights]),
      element("span", { role: "cell" }, [activations]),
      errorCell(name),
      element("span", { role: "cell" }, [badge]),
    ]);
    line.style.transform = `translateY(${position * ROW_HEIGHT}px)`;
    return line;
  }

  function renderRows(force = false) {
    const visible = Math.ceil((grid.clientHeight || 360) / ROW_HEIGHT);
    const start = Math.max(0, Math.floor(grid.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const end = Math.min(view.order.length, start + visible + 2 * OVERSCAN);
    if (!force && start === view.start && end === view.end) return;
    view.start = start;
    view.end = end;
    // Keep keyboard focus on the same control of the same layer across re-renders, and what is typed in a number
    // box but not yet committed (Python's answer to another edit re-renders the rows).
    const active = rowsBox.contains(document.activeElement) ? document.activeElement : null;
    const focused = active ? active.getAttribute("data-key") : null;
    const typing = active && active.type === "number" && active.value !== active.defaultValue ? active.value : null;
    const rendered = [];
    for (let position = start; position < end; position++) rendered.push(renderRow(view.order[position], position));
    rowsBox.replaceChildren(...rendered);
    if (focused) {
      const again = [...rowsBox.querySelectorAll("[data-key]")].find((node) => node.getAttribute("data-key") === focused);
      if (again && typing !== null) again.value = typing;
      if (again) again.focus({ preventScroll: true });
    }
    const title = model.get("target_title");
    placementHeading.replaceChildren(lines(title ? `on ${title}` : "placement"));
    placementHeading.title = title ? `placement of each layer on ${title}` : "placement after a conversion";
    bulkApply.disabled = model.get("disabled");
  }

  // Up/down arrows move between rows on checkboxes and name buttons (number inputs keep their own arrows).
  body.addEventListener("keydown", (event) => {
    const target = event.target;
    const key = target.getAttribute && target.getAttribute("data-key");
    if (!key || !["ArrowUp", "ArrowDown"].includes(event.key) || target.type === "number" || target.tagName === "SELECT") return;
    const control = key.split("\u0000")[0];
    const name = key.slice(control.length + 1);
    const position = view.order.findIndex((i) => rows()[i].name === name);
    const next = position + (event.key === "ArrowDown" ? 1 : -1);
    if (position < 0 || next < 0 || next >= view.order.length) return;
    event.preventDefault();
    const nextKey = `${control}\u0000${rows()[view.order[next]].name}`;
    // Rows sit below the sticky header (one row high) in the scroll container.
    const top = next * ROW_HEIGHT;
    if (top < grid.scrollTop) grid.scrollTop = top;
    else if (top + 2 * ROW_HEIGHT > grid.scrollTop + grid.clientHeight) grid.scrollTop = top + 2 * ROW_HEIGHT - grid.clientHeight;
    renderRows(true);
    const node = [...rowsBox.querySelectorAll("[data-key]")].find((n) => n.getAttribute("data-key") === nextKey);
    if (node) node.focus();
  });

  // -- toolbar actions ---------------------------------------------------------------------------------------
  filter.addEventListener("input", () => {
    view.filter = filter.value;
    refreshOrder();
  });
  selectType.addEventListener("click", () => {
    const names = checked();
    for (const row of rows()) if (row.class_name === typePicker.value) names.add(row.name);
    setChecked(names);
  });
  clearSelection.addEventListener("click", () => setChecked([]));
  selectAll.addEventListener("change", () => {
    const names = checked();
    for (const i of view.order) {
      if (selectAll.checked) names.add(rows()[i].name);
      else names.delete(rows()[i].name);
    }
    setChecked(names);
  });
  bulkApply.addEventListener("click", () => {
    const byName = new Map(rows().map((row) => [row.name, row]));
    const names = [...checked()].filter((name) => byName.has(name));
    const groups = model.get("quantize_groups") || {};
    let skipped = 0;
    const edits = [];
    for (const name of names) {
      const row = byName.get(name);
      const can = (technique) => !!row[`supports_${technique}`];
      const set = (technique, field, value) => {
        if (can(technique)) edits.push({ layer: field === "quantize" ? groups[name] ?? name : name, field, value });
        else skipped++;
      };
      if (bulkQuantize.value !== "") set("quantize", "quantize", bulkQuantize.value === "1");
      if (bulkSparsity.value !== "") set("prune", "sparsity", Number(bulkSparsity.value));
      // The cluster count before its init: Python keeps the init only of a layer that is clustered.
      if (bulkClusters.value !== "") set("cluster", "clusters", Number(bulkClusters.value));
      if (bulkInit.value !== "" && can("cluster")) edits.push({ layer: name, field: "init", value: bulkInit.value });
      if (bulkWeights.value !== "leave") {
        if (row.has_kernel || bulkWeights.value === "") edits.push({ layer: name, field: "weights", value: bulkWeights.value });
        else skipped++;
      }
      if (bulkActivations.value !== "leave") edits.push({ layer: name, field: "activations", value: bulkActivations.value });
    }
    edit(edits);
    status.textContent = `applied to ${names.length} selected layers` + (skipped ? `; ${skipped} settings skipped where a layer does not support them` : "");
  });

  grid.addEventListener("scroll", () => renderRows(false), { passive: true });

  const onRows = () => { refreshTypes(); refreshOrder(); };
  const onState = () => renderRows(true);
  const onPrecision = () => { refreshBulkPrecision(); renderRows(true); };
  const onErrors = () => { refreshErrorsNote(); refreshOrder(); };
  const onChecked = () => {
    selectAll.checked = view.order.length > 0 && view.order.every((i) => checked().has(rows()[i].name));
    status.textContent = `${view.order.length} of ${rows().length} layers shown, ${checked().size} selected`;
    renderRows(true);
  };
  const stateEvents = "change:plan_state change:selected change:placement change:disabled change:target_title change:budget";
  const onHeat = () => { refreshHeat(); refreshOrder(); };
  model.on("change:layers change:reasons change:cluster_inits change:quantize_groups", onRows);
  model.on(stateEvents, onState);
  model.on("change:checked", onChecked);
  model.on("change:sensitivity", onHeat);
  model.on("msg:custom", onMessage);
  model.on("change:precision_choices", onPrecision);
  model.on("change:layer_errors", onErrors);
  refreshBulkPrecision();
  refreshErrorsNote();
  refreshHeat();
  onRows();
  // The element has no size until it is attached; render again once it has one.
  const resize = new ResizeObserver(() => renderRows(false));
  resize.observe(grid);
  return () => {
    resize.disconnect();
    model.off("change:layers change:reasons change:cluster_inits change:quantize_groups", onRows);
    model.off(stateEvents, onState);
    model.off("change:checked", onChecked);
    model.off("change:sensitivity", onHeat);
    model.off("msg:custom", onMessage);
    model.off("change:precision_choices", onPrecision);
    model.off("change:layer_errors", onErrors);
  };
}
