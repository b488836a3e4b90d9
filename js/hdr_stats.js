// Shows the text an HDR node returns in its UI message (`ui.text`) inside the node:
// "HDR Stats" prints peak, percentiles and headroom; "Save EXR" the files it wrote; the
// CFA nodes which exposure branches are off; "Gain Map Merge" any resampling it did.
// A read-only DOM widget (node.addDOMWidget), so classic and Vue ("Nodes 2.0") nodes show it
// alike; restored with the node's kept output after a workflow-tab switch.

import { registerOutputWidget } from "./hdr_outputs.js";

const TEXT_NODES = new Set([
  "HDRStats", "HDRMetrics", "HDRSaveEXR", "HDRGainMapMerge", "HDRCFAPatch", "HDRCFASampler",
]);
const WIDGET_NAME = "hdr_text";
const LINE_HEIGHT = 14; // CSS pixels (11 px monospace)
const PADDING = 3; // CSS pixels above and below the text
const MAX_LINES = 12; // longer text scrolls

function textWidget(node) {
  const existing = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (existing) return existing;
  const text = document.createElement("textarea");
  text.className = "comfy-multiline-input";
  Object.assign(text, { readOnly: true, spellcheck: false, wrap: "off", rows: 2 });
  Object.assign(text.style, {
    opacity: 0.85, font: `11px/${LINE_HEIGHT}px ui-monospace, monospace`,
    padding: `${PADDING}px 4px`, resize: "none", boxSizing: "border-box",
  });
  // The frontend (1.49+) leaves the wheel to a focused element inside this attribute.
  text.dataset.captureWheel = "true";
  // Classic mode sizes the widget by getMinHeight (less its margin on both sides), Vue mode
  // by the textarea's rows.
  let widget = null;
  const height = () => text.rows * LINE_HEIGHT + 2 * PADDING + 2 * (widget?.margin ?? 0);
  widget = node.addDOMWidget(WIDGET_NAME, "hdr_text", text, {
    serialize: false, hideOnZoom: false, getMinHeight: height, getMaxHeight: height,
    getValue: () => text.value,
    setValue: (value) => {
      text.value = value;
      text.rows = Math.min(MAX_LINES, Math.max(2, value.split("\n").length));
    },
  });
  return widget;
}

function showText(node, lines) {
  const widget = textWidget(node);
  const value = lines.join("\n");
  if (widget.value === value) return;
  widget.value = value;
  node.setSize([Math.max(node.size[0], 320), Math.max(node.size[1], node.computeSize()[1])]);
  node.setDirtyCanvas(true, true);
}

registerOutputWidget("comfyui_hdr.text_output", (node, output) => {
  if (TEXT_NODES.has(node.comfyClass) && output.text) showText(node, output.text);
});
