// A page that renders widgets the way VS Code's notebook renderer does, for tests/browser/test_vscode.py.
//
// It uses VS Code's own widget manager (@vscode/jupyter-ipywidgets8, what the Jupyter extension ships) and loads
// third-party widget front-ends (anywidget, bqplot, ...) from the kernel environment's
// share/jupyter/nbextensions/<module>/index.js through requirejs: what VS Code does for a local kernel when CDNs are
// off (its default). The test's static server serves that folder under /nbextensions/.
//
// window.vscodeProxy.renderSaved(state): saved notebook widget state (ipywidgets.embed.embed_data), no kernel.
// window.vscodeProxy.connect(...) / execute(code): a live kernel through @jupyterlab/services' KernelConnection.

import { activate } from "@vscode/jupyter-ipywidgets8";
import { KernelAPI, KernelConnection, ServerConnection } from "@jupyterlab/services";

const WIDGET_VIEW = "application/vnd.jupyter.widget-view+json";
const log = [];
const errors = [];

activate();
window.vscIPyWidgets8.load();
const { WidgetManager } = window.vscIPyWidgets;

// VS Code's ScriptLoader contract: register a module's script with requirejs when the manager asks for it.
const scriptLoader = {
  widgetsRegisteredInRequireJs: new Set(),
  async loadWidgetScript(moduleName) {
    window.requirejs.config({ paths: { [moduleName]: `${location.origin}/nbextensions/${moduleName}/index` } });
    this.widgetsRegisteredInRequireJs.add(moduleName);
  },
  successHandler(className, moduleName, moduleVersion) {
    log.push(`loaded ${moduleName}@${moduleVersion}:${className}`);
  },
  errorHandler(className, moduleName, moduleVersion, error) {
    errors.push(`failed to load ${moduleName}@${moduleVersion}:${className}: ${error}`);
  },
};

function logger(message) {
  log.push(String(message));
}

async function show(manager, modelId, container) {
  const node = document.createElement("div");
  node.className = "vscode-widget";
  node.dataset.modelId = modelId;
  container.appendChild(node);
  const model = await manager.get_model(modelId);
  const view = await manager.create_view(model);
  await manager.display_view(undefined, view, { node });
  return node;
}

// Saved state: no kernel. The manager only subscribes to a kernel's signals and registers its comm target; with
// widget state and a kernel that has no id it asks for no live comms.
const quietSignal = { connect() {}, disconnect() {} };
const offlineKernel = {
  name: "python3",
  status: "unknown",
  connectionStatus: "disconnected",
  statusChanged: quietSignal,
  connectionStatusChanged: quietSignal,
  iopubMessage: quietSignal,
  unhandledMessage: quietSignal,
  anyMessage: quietSignal,
  disposed: quietSignal,
  registerCommTarget() {},
  removeCommTarget() {},
  requestCommInfo: async () => ({ content: { status: "ok", comms: {} } }),
};

async function renderSaved(state) {
  const container = document.getElementById("saved");
  const manager = new WidgetManager(offlineKernel, container, scriptLoader, logger, state.manager_state);
  await manager.set_state(state.manager_state);
  for (const spec of state.view_specs) {
    await show(manager, spec.model_id, container);
  }
  return state.view_specs.length;
}

let live = null;

async function connect({ baseUrl, token }) {
  const serverSettings = ServerConnection.makeSettings({
    baseUrl,
    wsUrl: baseUrl.replace(/^http/, "ws"),
    token,
    appendToken: true, // WebSockets cannot carry the Authorization header
  });
  const model = await KernelAPI.startNew({ name: "python3" }, serverSettings);
  const kernel = new KernelConnection({ model, serverSettings, handleComms: true });
  const container = document.getElementById("live");
  const manager = new WidgetManager(kernel, container, scriptLoader, logger, undefined);
  live = { kernel, manager, container };
  await kernel.info;
  return model.id;
}

// Runs code in the live kernel; widgets it displays are rendered by the VS Code manager, printed text is returned.
async function execute(code) {
  const { kernel, manager, container } = live;
  const future = kernel.requestExecute({ code, store_history: false });
  const views = [];
  let out = "";
  let error = null;
  future.onIOPub = (msg) => {
    const type = msg.header.msg_type;
    if (type === "stream") out += msg.content.text;
    else if (type === "error") error = `${msg.content.ename}: ${msg.content.evalue}`;
    else if ((type === "display_data" || type === "execute_result") && msg.content.data[WIDGET_VIEW]) {
      views.push(msg.content.data[WIDGET_VIEW].model_id);
    }
  };
  await future.done;
  for (const modelId of views) await show(manager, modelId, container);
  return { out, error, views };
}

async function disconnect() {
  if (!live) return;
  const { kernel } = live;
  live = null;
  await kernel.shutdown();
  kernel.dispose();
}

window.vscodeProxy = { renderSaved, connect, execute, disconnect, log, errors };
document.body.dataset.ready = "true";
