// The HDR viewer's stylesheet (a module, so the pack ships JS files only) and DOM helpers.

const STYLE = `
.hdrv { display: flex; flex-direction: column; gap: 4px; height: 100%; box-sizing: border-box;
  padding: 2px 2px 4px; font: 11px/1.3 system-ui, sans-serif; color: #ddd; }
.hdrv:focus { outline: none; }
.hdrv-bar { display: flex; align-items: center; gap: 8px; min-height: 22px; flex-wrap: nowrap;
  flex: none; }
.hdrv-label { color: #aaa; }
.hdrv-exposure { flex: 1; min-width: 80px; accent-color: #e8b04a; }
.hdrv-frame-slider { width: 96px; flex: none; accent-color: #8ab4f8; }
.hdrv-value { width: 48px; flex: none; white-space: nowrap; font-variant-numeric: tabular-nums;
               text-align: right; }
.hdrv select { background: #2a2a2a; color: #ddd; border: 1px solid #555; border-radius: 4px;
  font-size: 11px; padding: 1px 4px; }
.hdrv-info { cursor: help; color: #9ad; border: 1px solid #9ad; border-radius: 50%;
  width: 13px; height: 13px; line-height: 13px; text-align: center; font: italic 600 10px serif;
  flex: none; }
.hdrv-toggle { display: inline-flex; align-items: center; gap: 4px; cursor: pointer;
  white-space: nowrap; }
.hdrv-toggle input { margin: 0; }
.hdrv-swatch { display: inline-block; width: 9px; height: 9px; border-radius: 2px; }
.hdrv-wipe { flex: 1; min-width: 60px; }
.hdrv-stage { position: relative; flex: 1; min-height: 0; display: flex; align-items: center;
  justify-content: center; background: #111; overflow: hidden; touch-action: none; }
.hdrv-frame { position: relative; }
.hdrv-image { display: block; width: 100%; height: 100%; }
.hdrv-split { position: absolute; top: 0; bottom: 0; width: 0;
  border-left: 1px solid rgba(255, 255, 255, 0.85); pointer-events: none; }
.hdrv-tag { position: absolute; top: 4px; padding: 1px 5px; border-radius: 3px;
  background: rgba(0, 0, 0, 0.6); color: #fff; white-space: pre; font-size: 10px; }
.hdrv-tag-a { right: 4px; }
.hdrv-tag-b { left: 4px; }
.hdrv-histogram { display: block; width: 100%; height: 96px; flex: none; background: #181818;
  border-radius: 4px; }
.hdrv-status { color: #bbb; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
  font-variant-numeric: tabular-nums; flex: none; }
.hdrv-bad { color: #f6f; font-weight: 600; }
.hdrv-readout { position: absolute; left: 4px; bottom: 4px; padding: 1px 6px; border-radius: 3px;
  background: rgba(0, 0, 0, 0.7); color: #eee; white-space: pre; pointer-events: none;
  font: 11px/1.4 ui-monospace, monospace; }
`;

export function element(tag, className, properties = {}) {
  const node = Object.assign(document.createElement(tag), properties);
  if (className) node.className = className;
  return node;
}

/** Add the stylesheet to the page once. */
export function injectStyle() {
  if (document.getElementById("comfyui-hdr-viewer-style")) return;
  document.head.append(element("style", "", { id: "comfyui-hdr-viewer-style",
                                              textContent: STYLE }));
}
