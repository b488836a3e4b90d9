// Size of the HDR viewer in its node, the same in classic (LiteGraph canvas) and Vue
// ("Nodes 2.0") node modes: nothing here assumes a frontend's paddings. The node is grown
// until the image stage the frontend laid out holds the proxy pixel for pixel (measured, then
// corrected, a few passes), so the canvas' pixel grid is the proxy's.

export const NODE_WIDTH = Object.freeze({ min: 480, max: 744 }); // a 512-wide proxy shows 1:1
export const IMAGE_HEIGHT = Object.freeze({ min: 140, max: 560 });
// The widget's own toolbars, histogram and status line before they are first measured (CSS
// pixels, frontend 1.32.9 classic mode); measured from the DOM once shown.
const DEFAULT_CHROME_HEIGHT = 186;
const DEFAULT_CHROME_WIDTH = 24; // node width less the stage width, likewise
const FIT_PASSES = 4;
const SETTLE_FRAMES = 30; // at most half a second at 60 Hz

/** Resolves after the next animation frame (the frontend lays DOM widgets out per frame). */
export const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));

/** Node width less stage width, and the widget's content height less stage height, as laid
 * out now (scrollHeight: the content, even where it overflows a widget too small for it). */
export function chrome(node, root, stage) {
  const laidOut = stage.clientWidth > 0 && stage.clientHeight > 0;
  return {
    width: laidOut ? node.size[0] - stage.clientWidth : DEFAULT_CHROME_WIDTH,
    height: laidOut ? root.scrollHeight - stage.clientHeight : DEFAULT_CHROME_HEIGHT,
  };
}

/**
 * The stage [width, height] for a width x height image: 1:1 when the node limits allow it,
 * else reduced to the widest node; a narrow image enlarged by the whole factor that fills
 * the narrowest node's width (the viewer enlarges by whole factors only).
 */
export function stageTarget(width, height, chromeWidth) {
  const stageWidth = Math.min(NODE_WIDTH.max - chromeWidth,
                              Math.max(NODE_WIDTH.min - chromeWidth, width));
  const fit = Math.min(stageWidth / width, IMAGE_HEIGHT.max / height);
  const scale = fit >= 1 ? Math.floor(fit) : fit;
  return [Math.round(width * scale),
          Math.max(IMAGE_HEIGHT.min, Math.round(height * scale))];
}

const layoutOf = (node, stage) =>
  [node.size[0], node.size[1], stage.clientWidth, stage.clientHeight].join();

/** Wait until the frontend has laid the node out: its size and the stage's unchanged over a
 * frame (Vue mode re-renders, then writes the rendered size back into node.size). */
async function settled(node, stage) {
  let last = layoutOf(node, stage);
  for (let frame = 0; frame < SETTLE_FRAMES; frame++) {
    await nextFrame();
    const now = layoutOf(node, stage);
    if (now === last) return;
    last = now;
  }
}

/**
 * Grow `node` (never shrink it) until `stage` is at least `targetOf()` CSS pixels (asked
 * again each pass: it depends on the node's chrome) and the widget `root` holds all its
 * content. Each pass adds what is missing, as measured once the frontend's own layout has
 * settled. Returns whether it fits, or null when the stage is not laid out (a hidden or
 * collapsed node): try again when shown.
 */
export async function growNodeToFit(node, root, stage, targetOf) {
  for (let pass = 0; pass <= FIT_PASSES; pass++) {
    await settled(node, stage);
    if (!(stage.clientWidth > 0 && stage.clientHeight > 0)) return pass ? false : null;
    const target = targetOf();
    // Vue mode sizes a DOM widget's row by its content when the node has other growing parts
    // (core's image preview under Save EXR): the stage asks for the image's height.
    stage.style.minHeight = `${target[1]}px`;
    const overflow = root.scrollHeight - root.clientHeight; // classic: widget too short
    const missing = [target[0] - stage.clientWidth,
                     Math.max(target[1] - stage.clientHeight, overflow)];
    if (missing[0] <= 0 && missing[1] <= 0) return true;
    if (pass === FIT_PASSES) break;
    node.setSize([node.size[0] + Math.max(0, missing[0]), node.size[1] + Math.max(0, missing[1])]);
    node.setDirtyCanvas(true, true);
  }
  return false;
}
