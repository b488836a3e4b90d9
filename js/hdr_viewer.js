// The HDR viewer: on every node whose executed message carries `hdr_view` (Preview HDR,
// Save EXR, OCIO Display Preview), a widget that shows the real float image (WebGL2, half
// floats), with exposure in stops, false colour, a histogram in stops, clip and NaN/Inf
// markers and an A/B wipe against the node's SDR PNG.
//
// A batch shows its first frames (the server sends up to 48) with a frame slider; each
// frame is measured on its own (stats, histogram, clip count) when it is first shown.
//
// The node is sized so the image shows pixel for pixel (hdr_viewer_layout.js) in classic and
// Vue ("Nodes 2.0") node modes; the mouse wheel over the viewer sets the exposure (0.1 stop a
// notch, hdr_viewer_wheel.js; Ctrl/Cmd + wheel still zooms the canvas); the viewer comes back
// with the node's kept output after a workflow-tab switch (hdr_outputs.js).
//
// Test hook: `node.hdrViewer` (see `HdrViewer.hook`): setExposure(stops), setMode(mode),
// setClipMarkers(on), setNonFiniteMarkers(on), setWipe(fraction | null),
// setFrame(index) -> a promise, frameIndex, fitted (the node has been sized for the entry),
// readPixel(x, y) -> displayed [r, g, b, a] at image pixel (x, y) (y down from the top row),
// readImage() -> {width, height, rgba: every displayed pixel, rows top to bottom}, stats,
// entry (the hdr_view entry shown), state, falseColour (the band table), markers (clip and
// NaN/Inf colours), renderer ("webgl2").

import { api } from "../../scripts/api.js";
import { registerOutputWidget } from "./hdr_outputs.js";
import { analyse, countClipped, frameOf, parseNpy } from "./hdr_viewer_data.js";
import { HdrRenderer } from "./hdr_viewer_gl.js";
import { drawHistogram } from "./hdr_viewer_histogram.js";
import {
  CLIP_COLOUR, EXPOSURE_RANGE, FALSE_COLOUR, MID_GREY, NONFINITE_COLOUR, REC709_LUMA,
  VIEW_TRANSFORM, css,
} from "./hdr_viewer_palette.js";
import { NODE_WIDTH, chrome, growNodeToFit, stageTarget } from "./hdr_viewer_layout.js";
import { element, injectStyle } from "./hdr_viewer_style.js";
import { captureWheel } from "./hdr_viewer_wheel.js";

const WIDGET_NAME = "hdr_viewer";
const FRAME_CACHE = 8; // measured frames kept per viewer (~23 bytes a pixel each)

const viewURL = ({ filename, subfolder, type }) =>
  api.apiURL(`/view?${new URLSearchParams({ filename, subfolder, type })}`);

async function fetchOk(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response;
}

const signed = (value, digits = 1) =>
  `${value >= 0 ? "+" : "\u2212"}${Math.abs(value).toFixed(digits)}`;

class HdrViewer {
  constructor(node) {
    this.node = node;
    this.state = { exposure: 0, mode: "image", showClip: false, showNonFinite: true, wipe: null };
    this.entries = [];
    this.frame = null;
    this.frameIndex = 0;
    this.loaded = null; // {proxy, strip: decoded SDR strip, frames: Map index -> measured}
    this.frameRequests = 0;
    this.loads = 0;
    this.renderer = null;
    this.build();
  }

  /** A live WebGL2 renderer; a lost context (too many viewers open) gets a fresh canvas. */
  ensureRenderer() {
    if (this.renderer && !this.renderer.gl.isContextLost()) return;
    if (this.renderer) {
      const canvas = element("canvas", "hdrv-image");
      this.canvas.replaceWith(canvas);
      this.canvas = canvas;
    }
    this.renderer = new HdrRenderer(this.canvas);
    this.canvas.addEventListener("webglcontextlost", () => {
      this.status.textContent = "WebGL context lost (too many viewers open?): run the node again.";
    });
  }

  build() {
    injectStyle();
    const root = (this.root = element("div", "hdrv"));
    root.dataset.nodeId = this.node.id;
    const bar = element("div", "hdrv-bar");
    this.exposure = element("input", "hdrv-exposure", {
      type: "range", min: EXPOSURE_RANGE.min, max: EXPOSURE_RANGE.max, step: EXPOSURE_RANGE.step,
      value: 0, title: `Exposure in stops (double-click: 0).\n${VIEW_TRANSFORM}`,
    });
    this.exposureText = element("span", "hdrv-value");
    this.mode = element("select", "hdrv-mode", { title: "Image: the view transform below. " +
      "False colour: one colour per stop of luminance (Rec.709) relative to 0.18." });
    this.mode.append(new Option("Image (sRGB)", "image"),
                     new Option("False colour (stops)", "falsecolour"));
    this.entryChoice = element("select", "hdrv-entry", { hidden: true });
    this.frameSlider = element("input", "hdrv-frame-slider", {
      type: "range", min: 0, max: 0, step: 1, value: 0, hidden: true,
      title: "Frame of the batch (the first ones the server sent)",
    });
    this.frameText = element("span", "hdrv-value", { hidden: true });
    const info = (this.info = element("span", "hdrv-info", { textContent: "i",
                                                          title: VIEW_TRANSFORM }));
    bar.append(element("span", "hdrv-label", { textContent: "Exposure" }), this.exposure,
               this.exposureText, this.mode, this.entryChoice, info);

    const toggles = element("div", "hdrv-bar");
    this.clip = this.toggle(toggles, "clip", "Mark pixels with a channel above display white " +
                            "(1.0 after exposure)", CLIP_COLOUR);
    this.nonFinite = this.toggle(toggles, "NaN/Inf", "Mark NaN and \u00B1Inf pixels",
                                 NONFINITE_COLOUR);
    this.wipeToggle = this.toggle(toggles, "A/B wipe", "Left: this HDR view (A). Right: the " +
                                  "node's SDR PNG (B). Drag on the image to move the split.");
    this.wipe = element("input", "hdrv-wipe", { type: "range", min: 0, max: 1, step: 0.001,
                                                value: 0.5, disabled: true });
    toggles.append(this.wipe, this.frameSlider, this.frameText);

    this.stage = element("div", "hdrv-stage");
    this.frameBox = element("div", "hdrv-frame");
    this.canvas = element("canvas", "hdrv-image");
    this.split = element("div", "hdrv-split", { hidden: true });
    this.split.append(element("span", "hdrv-tag hdrv-tag-a", { textContent: "A  HDR" }),
                      element("span", "hdrv-tag hdrv-tag-b", { textContent: "B  SDR PNG" }));
    this.frameBox.append(this.canvas, this.split);
    this.readout = element("span", "hdrv-readout", { hidden: true });
    this.stage.append(this.frameBox, this.readout);
    this.histogram = element("canvas", "hdrv-histogram", {
      title: "Luminance (Rec.709) in stops relative to 0.18, after the viewer exposure; the " +
             "strip is the false-colour key.",
    });
    this.status = element("div", "hdrv-status", {
      textContent: "waiting for a run\u2026",
      title: "clipped: pixels with a channel above display white at this exposure. negative: " +
             "pixels with a channel below 0 (outside the gamut). NaN/Inf: pixels with a NaN " +
             "or infinite channel (each pixel counted once: NaN, then +Inf, then \u2212Inf).",
    });
    root.append(bar, toggles, this.stage, this.histogram, this.status);

    this.nonFinite.checked = this.state.showNonFinite;
    this.clip.checked = this.state.showClip;
    this.listen();
    new ResizeObserver(() => this.layout()).observe(this.stage);
  }

  toggle(parent, text, title, rgb) {
    const label = element("label", "hdrv-toggle", { title });
    const box = element("input", "", { type: "checkbox" });
    label.append(box);
    if (rgb) label.append(element("i", "hdrv-swatch", { style: `background: ${css(rgb)}` }));
    label.append(text);
    parent.append(label);
    return box;
  }

  listen() {
    // Keys typed into the viewer's controls are theirs (arrows on the exposure slider); with
    // the focus on the viewer itself, shortcuts (Ctrl+Enter: queue) still reach the app.
    this.root.addEventListener("keydown", (event) => {
      if (event.target !== this.root) event.stopPropagation();
    });
    // Wheel up brightens, 0.1 stop a notch.
    captureWheel(this.root, (notches) => {
      const stops = this.state.exposure - notches * EXPOSURE_RANGE.step;
      this.setExposure(Math.round(stops / EXPOSURE_RANGE.step) * EXPOSURE_RANGE.step);
    });
    this.exposure.addEventListener("input", () => this.setExposure(Number(this.exposure.value)));
    this.exposure.addEventListener("dblclick", () => this.setExposure(0));
    this.mode.addEventListener("change", () => this.setMode(this.mode.value));
    this.clip.addEventListener("change", () => this.setClipMarkers(this.clip.checked));
    this.nonFinite.addEventListener("change",
                                    () => this.setNonFiniteMarkers(this.nonFinite.checked));
    this.wipeToggle.addEventListener("change", () => this.setWipe(
      this.wipeToggle.checked ? Number(this.wipe.value) : null));
    this.wipe.addEventListener("input", () => this.setWipe(Number(this.wipe.value)));
    this.entryChoice.addEventListener("change",
                                      () => this.load(this.entries[this.entryChoice.value]));
    this.frameSlider.addEventListener("input", () => this.setFrame(Number(this.frameSlider.value)));
    let dragging = false;
    const dragTo = (event) => {
      const rect = this.canvas.getBoundingClientRect();
      this.setWipe(Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)));
    };
    this.stage.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || this.state.wipe === null) return;
      event.stopPropagation();
      dragging = true;
      this.stage.setPointerCapture(event.pointerId);
      dragTo(event);
    });
    this.stage.addEventListener("pointermove", (event) => {
      if (dragging) dragTo(event);
      this.showReadout(event);
    });
    this.stage.addEventListener("pointerup", () => { dragging = false; });
    this.stage.addEventListener("pointerleave", () => { this.readout.hidden = true; });
  }

  /** Show the entries of an `hdr_view` message (the first one; a menu when there are more). */
  show(entries) {
    this.entries = entries;
    this.entryChoice.replaceChildren(...entries.map((entry, index) =>
      new Option(entry.label || entry.float.filename, index)));
    this.entryChoice.hidden = entries.length < 2;
    return this.load(entries[0]);
  }

  /** Fetch one entry and show its first frame; a failure is shown in the status line. */
  async load(entry) {
    const load = ++this.loads;
    this.status.textContent = "loading\u2026";
    let strip = null;
    try {
      const [npy, png] = await Promise.all([fetchOk(viewURL(entry.float)),
                                            fetchOk(viewURL(entry.sdr))]);
      const proxy = parseNpy(await npy.arrayBuffer());
      // Decoded once, bytes as the PNG holds them (no colour management, no
      // premultiplication); each frame is cropped from it.
      strip = await createImageBitmap(await png.blob(), {
        colorSpaceConversion: "none", premultiplyAlpha: "none",
      });
      if (strip.width !== proxy.width || strip.height !== proxy.height * proxy.frames) {
        throw new Error(`SDR PNG is ${strip.width}x${strip.height}, the float proxy ` +
                        `${proxy.frames} x ${proxy.width}x${proxy.height}`);
      }
      if (load !== this.loads) return;
      this.dropLoaded();
      this.loaded = { proxy, strip, frames: new Map() };
      strip = null;
      this.entry = entry;
      this.frameSlider.max = proxy.frames - 1;
      this.frameSlider.hidden = this.frameText.hidden = proxy.frames < 2;
      await this.showFrame(0);
    } catch (error) {
      if (load === this.loads) this.status.textContent = `HDR viewer: ${error.message}`;
    } finally {
      strip?.close();
    }
  }

  /** Forget the loaded entry (its decoded strip and measured frames). */
  dropLoaded() {
    this.loaded?.strip.close();
    this.loaded = null;
  }

  /** The measured frame `index` of the loaded entry; the last few are kept. */
  measured(index) {
    const { proxy, frames } = this.loaded;
    let frame = frames.get(index);
    if (frame) {
      frames.delete(index); // re-inserted below: most recently used last
    } else {
      frame = analyse(frameOf(proxy, index));
      if (frames.size >= FRAME_CACHE) frames.delete(frames.keys().next().value);
    }
    frames.set(index, frame);
    return frame;
  }

  /**
   * Upload frame `index` of the loaded entry. A newer request (another frame, another
   * run) that starts while this one waits for its SDR crop wins; this one then does nothing.
   */
  async showFrame(index) {
    const loaded = this.loaded;
    const request = ++this.frameRequests;
    const { proxy } = loaded;
    let sdr;
    try {
      sdr = await createImageBitmap(loaded.strip, 0, index * proxy.height, proxy.width,
                                    proxy.height);
    } catch (error) {
      if (loaded !== this.loaded) return; // replaced or released meanwhile: nothing to show
      throw error;
    }
    try {
      if (loaded !== this.loaded || request !== this.frameRequests) return;
      const frame = this.measured(index);
      this.ensureRenderer();
      this.renderer.upload(proxy.width, proxy.height, frame.texture, frame.nonFinite, sdr);
      this.frame = frame;
      this.frameIndex = index;
      this.frameSlider.value = index;
      this.frameText.textContent = `${index + 1}/${proxy.frames}`;
      this.info.title = `${VIEW_TRANSFORM}\nData: ${this.entry.colourspace}, shown as it is ` +
                        "(no gamut conversion).";
      this.layout();
      this.render();
    } finally {
      sdr.close();
    }
  }

  /** Show frame `index` (0-based, clamped to the frames sent). */
  setFrame(index) {
    if (!this.loaded) return Promise.resolve();
    const last = this.loaded.proxy.frames - 1;
    return this.showFrame(Math.min(last, Math.max(0, Math.round(Number(index)))));
  }

  set(changes) {
    Object.assign(this.state, changes);
    this.render();
  }

  setExposure(stops) {
    const value = Math.min(EXPOSURE_RANGE.max, Math.max(EXPOSURE_RANGE.min, Number(stops)));
    this.exposure.value = value;
    this.set({ exposure: value });
  }

  setMode(mode) {
    if (mode !== "image" && mode !== "falsecolour") {
      throw new Error(`mode must be 'image' or 'falsecolour', got ${mode}`);
    }
    this.mode.value = mode;
    this.set({ mode });
  }

  setClipMarkers(on) {
    this.clip.checked = on;
    this.set({ showClip: Boolean(on) });
  }

  setNonFiniteMarkers(on) {
    this.nonFinite.checked = on;
    this.set({ showNonFinite: Boolean(on) });
  }

  setWipe(fraction) {
    const wipe = fraction === null ? null : Math.min(1, Math.max(0, Number(fraction)));
    this.wipeToggle.checked = wipe !== null;
    this.wipe.disabled = wipe === null;
    if (wipe !== null) this.wipe.value = wipe;
    this.set({ wipe });
  }

  wipeColumn() {
    const { width } = this.frame.stats;
    return this.state.wipe === null ? width : Math.round(this.state.wipe * width);
  }

  render() {
    this.exposureText.textContent = `${signed(this.state.exposure)} st`;
    if (!this.frame) return;
    const { stats } = this.frame;
    stats.exposure = this.state.exposure;
    stats.clipped = countClipped(this.frame.sortedMaxChannel, this.state.exposure);
    this.draw();
    this.split.hidden = this.state.wipe === null;
    this.split.style.left = `${(100 * this.wipeColumn()) / stats.width}%`;
    drawHistogram(this.histogram, stats, this.state);
    const pixels = stats.width * stats.height;
    const { source_width: sourceWidth, source_height: sourceHeight, frames } = this.entry;
    const size = `${stats.width}\u00D7${stats.height} half` +
      (sourceWidth !== stats.width ? ` (of ${sourceWidth}\u00D7${sourceHeight})` : "") +
      (frames > 1 ? `, frame ${this.frameIndex + 1} of ${frames}` : "") +
      (frames > (this.entry.shown_frames ?? 1)
        ? ` (the first ${this.entry.shown_frames ?? 1} sent)` : "");
    const parts = [size,
                   `clipped ${((100 * stats.clipped) / pixels).toFixed(1)}%`,
                   stats.peakStops === null ? "no light" : `peak ${signed(stats.peakStops)} st`];
    if (stats.negative) parts.push(`negative ${stats.negative}`);
    const bad = [["NaN", stats.nan], ["+Inf", stats.posInf], ["\u2212Inf", stats.negInf]]
      .filter(([, count]) => count).map(([name, count]) => `${name} ${count}`);
    this.status.textContent = parts.join(" \u00B7 ");
    if (bad.length) {
      this.status.append(" \u00B7 ", element("b", "hdrv-bad", { textContent: bad.join(" ") }));
    }
  }

  layout() {
    if (!this.frame) return;
    const { width, height } = this.frame.stats;
    if (this.fitPending && this.stage.clientWidth > 0) this.fitNode();
    const fit = Math.min(this.stage.clientWidth / width, this.stage.clientHeight / height);
    if (!(fit > 0)) return;
    // Enlarged by whole factors only (a node larger than its image shows it 1:1, 2:1, ...):
    // each proxy pixel stays a square of screen pixels; reduced smoothly when it must.
    const scale = fit >= 1 ? Math.floor(fit) : fit;
    this.frameBox.style.width = `${Math.floor(width * scale)}px`;
    this.frameBox.style.height = `${Math.floor(height * scale)}px`;
    this.canvas.style.imageRendering = scale >= 2 ? "pixelated" : "auto";
    drawHistogram(this.histogram, this.frame.stats, this.state);
  }

  /** The stage size that shows the frame 1:1 (or as large as the node limits allow). */
  target() {
    const { width, height } = this.frame?.stats ?? { width: 1, height: 0 };
    return stageTarget(width, height, chrome(this.node, this.root, this.stage).width);
  }

  /** The widget height (classic mode's layout asks for it): its chrome and the stage. */
  minHeight() {
    return chrome(this.node, this.root, this.stage).height + this.target()[1];
  }

  /** Grow the node until the stage holds the frame at its target size; once per entry shown
   * (afterwards the node is the user's to resize). */
  async fitNode() {
    if (this.fitting) return;
    this.fitting = true;
    try {
      if (this.node.size[0] < NODE_WIDTH.min) {
        this.node.setSize([NODE_WIDTH.min, this.node.size[1]]);
      }
      const fits = await growNodeToFit(this.node, this.root, this.stage, () => this.target());
      if (fits !== null) this.fitPending = false; // tried on a laid-out stage: done
    } finally {
      this.fitting = false;
    }
  }

  showReadout(event) {
    if (!this.frame) return;
    const rect = this.canvas.getBoundingClientRect();
    const { width, height } = this.frame.stats;
    const x = Math.floor(((event.clientX - rect.left) / rect.width) * width);
    const y = Math.floor(((event.clientY - rect.top) / rect.height) * height);
    this.readout.hidden = x < 0 || y < 0 || x >= width || y >= height;
    if (this.readout.hidden) return;
    const rgb = this.frame.scene.subarray(3 * (y * width + x), 3 * (y * width + x) + 3);
    const luminance = rgb.reduce((sum, value, c) => sum + REC709_LUMA[c] * value, 0);
    const stops = luminance > 0 ? `${signed(Math.log2(luminance / MID_GREY), 2)} st` : "no light";
    this.readout.textContent = `${x},${y}  ${Array.from(rgb, (v) => v.toPrecision(4)).join(" ")}` +
                               `  ${stops}`;
  }

  draw() {
    this.renderer.draw({ ...this.state, wipeColumn: this.wipeColumn() });
  }

  readPixel(x, y) {
    this.draw();
    return this.renderer.readPixels(x, y, 1, 1);
  }

  readImage() {
    this.draw();
    const { width, height } = this.frame.stats;
    return { width, height, rgba: this.renderer.readPixels(0, 0, width, height) };
  }

  release() {
    this.loads++; // a load still in flight finds itself outdated and does nothing
    this.frameRequests++;
    this.dropLoaded();
    this.frame = null;
    this.renderer?.release();
  }

  /** The small API the browser tests (and curious users in the console) drive. */
  get hook() {
    const viewer = this;
    return {
      get renderer() { return viewer.renderer ? "webgl2" : null; },
      get stats() { return viewer.frame?.stats ?? null; },
      get entry() { return viewer.entry ?? null; },
      get state() { return { ...viewer.state }; },
      get frameIndex() { return viewer.frameIndex; },
      get fitted() { return !viewer.fitPending && !viewer.fitting; },
      falseColour: FALSE_COLOUR,
      markers: { clip: CLIP_COLOUR, nonFinite: NONFINITE_COLOUR },
      element: viewer.root,
      setExposure: (stops) => viewer.setExposure(stops),
      setMode: (mode) => viewer.setMode(mode),
      setClipMarkers: (on) => viewer.setClipMarkers(on),
      setNonFiniteMarkers: (on) => viewer.setNonFiniteMarkers(on),
      setWipe: (fraction) => viewer.setWipe(fraction),
      setFrame: (index) => viewer.setFrame(index),
      readPixel: (x, y) => viewer.readPixel(x, y),
      readImage: () => viewer.readImage(),
    };
  }
}

const sameEntry = (a, b) => a?.float.filename === b?.float.filename &&
  a?.float.subfolder === b?.float.subfolder;

function showHdrView(node, entries) {
  let viewer = node.hdrViewerInstance;
  if (viewer && sameEntry(viewer.entry, entries[0])) return; // restored, already shown
  if (!viewer) {
    viewer = node.hdrViewerInstance = new HdrViewer(node);
    node.addDOMWidget(WIDGET_NAME, "hdr_viewer", viewer.root, {
      serialize: false, hideOnZoom: false, getMinHeight: () => viewer.minHeight(),
    });
    node.hdrViewer = viewer.hook;
    const onRemoved = node.onRemoved;
    node.onRemoved = function () {
      viewer.release();
      return onRemoved?.apply(this, arguments);
    };
  }
  viewer.fitPending = true;
  viewer.show(entries).then(() => viewer.fitNode());
}

// By message, not by node name: every node that sends `hdr_view` gets the viewer.
registerOutputWidget("comfyui_hdr.hdr_viewer", (node, output) => {
  if (output.hdr_view?.length) showHdrView(node, output.hdr_view);
});
