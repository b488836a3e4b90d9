// Shows the text an HDR node returns in its UI message (`ui.text`) inside the node:
// "HDR Stats" prints peak, percentiles and headroom; "Save EXR" the files it wrote; the
// CFA nodes which exposure branches are off; "Gain Map Merge" any resampling it did.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const TEXT_NODES = new Set([
  "HDRStats", "HDRMetrics", "HDRSaveEXR", "HDRGainMapMerge", "HDRCFAPatch", "HDRCFASampler",
]);
const WIDGET_NAME = "hdr_text";

function showText(node, lines) {
  let widget = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (!widget) {
    widget = ComfyWidgets["STRING"](node, WIDGET_NAME, ["STRING", { multiline: true }], app).widget;
    widget.inputEl.readOnly = true;
    widget.inputEl.style.opacity = 0.85;
    widget.serialize = false;
  }
  widget.value = lines.join("\n");
  node.setSize([Math.max(node.size[0], 320), Math.max(node.size[1], node.computeSize()[1])]);
  node.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "comfyui_hdr.text_output",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!TEXT_NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      if (message?.text) showText(this, message.text);
    };
  },
});
