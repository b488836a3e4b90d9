// Narrows the OCIO menus of our nodes to the chosen config (the server lists every config's
// names so any of them validates; this shows only the ones the selected config has), and
// the view menu to the chosen display.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const COLOURSPACE_WIDGETS = {
  HDROCIODisplayPreview: ["colourspace"],
  HDROCIOConvert: ["source", "target"],
};
const cache = new Map();

async function namesOf(config) {
  if (!cache.has(config)) {
    cache.set(config, api.fetchApi(`/comfyui_hdr/ocio?config=${encodeURIComponent(config)}`)
      .then((response) => (response.ok ? response.json() : null)));
  }
  return cache.get(config);
}

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function restrict(target, values) {
  if (!target || !values?.length) return;
  target.options.values = values;
  if (!values.includes(target.value)) target.value = values[0];
}

async function refresh(node) {
  const config = widget(node, "config")?.value;
  if (!config) return;
  const names = await namesOf(config);
  if (!names) return;
  for (const name of COLOURSPACE_WIDGETS[node.comfyClass] ?? []) {
    restrict(widget(node, name), names.colourspaces);
  }
  const display = widget(node, "display");
  if (display) {
    restrict(display, names.displays);
    restrict(widget(node, "view"), names.views[display.value]);
    restrict(widget(node, "look"), names.looks);
  }
  node.setDirtyCanvas(true, true);
}

function watch(node, name) {
  const target = widget(node, name);
  if (!target) return;
  const callback = target.callback;
  target.callback = function () {
    const result = callback?.apply(this, arguments);
    node.hdrOcioReady = refresh(node); // resolves once the menus show the new names
    return result;
  };
}

app.registerExtension({
  name: "comfyui_hdr.ocio_widgets",
  async nodeCreated(node) {
    if (!(node.comfyClass in COLOURSPACE_WIDGETS)) return;
    watch(node, "config");
    watch(node, "display");
    node.hdrOcioReady = refresh(node);
  },
});
