// Node outputs for the pack's widgets, through the frontend's public extension API only
// (scripts/app.js): a node's UI message arrives with `onExecuted` after a run and again through
// the `onNodeOutputsUpdated` extension hook when the frontend restores the outputs it keeps
// (a workflow-tab switch, a workflow reopened from the queue or Media Assets), the way core's
// audio and text previews come back. Frontends 1.32.9, 1.49.6 and 1.58.1 call both.

import { app } from "../../scripts/app.js";

/**
 * The node an output key names: a node id of the root graph, or "<graph id>:<node id>" for a
 * node of the subgraph shown now; null when that node is not in the graph on screen.
 */
function nodeOf(key) {
  const root = app.rootGraph ?? app.graph;
  const separator = String(key).lastIndexOf(":");
  if (separator < 0) return root?.getNodeById(key) ?? null;
  const graph = app.graph;
  return graph && String(graph.id) === String(key).slice(0, separator)
    ? graph.getNodeById(String(key).slice(separator + 1)) ?? null : null;
}

/**
 * Register extension `name`: `show(node, output)` runs for every node's UI message, when it
 * is executed and when its kept output is restored.
 */
export function registerOutputWidget(name, show) {
  app.registerExtension({
    name,
    async beforeRegisterNodeDef(nodeType) {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output) {
        onExecuted?.apply(this, arguments);
        if (output) show(this, output);
      };
    },
    onNodeOutputsUpdated(outputs) {
      for (const [key, output] of Object.entries(outputs ?? {})) {
        const node = output && nodeOf(key);
        if (node) show(node, output);
      }
    },
  });
}
