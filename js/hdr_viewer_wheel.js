// The mouse wheel over the HDR viewer is the viewer's, in classic and Vue ("Nodes 2.0") node
// modes alike; Ctrl/Cmd + wheel (the frontends' pinch and zoom gesture) stays the canvas'.
//
// Vue node mode hands every wheel event to the canvas (its zoom) from a capturing listener
// above the nodes, unless the event comes from inside an element marked
// data-capture-wheel="true" that holds the keyboard focus (frontends 1.49-1.58,
// useCanvasInteractions): the viewer takes the focus while the pointer is over it, unless
// another control is being typed into, and gives it back when the pointer leaves.

// A mouse-wheel notch: 100 CSS pixels of deltaY in Chromium and Firefox (deltaMode 0), or
// 3 lines (deltaMode 1); trackpads send smaller deltas, summed until a notch.
const NOTCH = { pixels: 100, lines: 3 };

function typingElsewhere(root) {
  const active = document.activeElement;
  return Boolean(active) && active !== document.body && !root.contains(active) &&
    (active.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName));
}

/** Make the wheel over `root` call `onNotches(n)` (n > 0: wheel down, towards the user). */
export function captureWheel(root, onNotches) {
  root.dataset.captureWheel = "true";
  root.tabIndex = -1;
  let sum = 0;
  root.addEventListener("wheel", (event) => {
    if (event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    event.stopPropagation(); // the node (Vue mode) would hand it to the canvas' zoom
    sum += event.deltaMode === 1 ? (event.deltaY * NOTCH.pixels) / NOTCH.lines : event.deltaY;
    const notches = Math.trunc(sum / NOTCH.pixels);
    if (!notches) return;
    sum -= notches * NOTCH.pixels;
    onNotches(notches);
  }, { passive: false });
  root.addEventListener("pointerenter", () => {
    if (!typingElsewhere(root)) root.focus({ preventScroll: true });
  });
  root.addEventListener("pointerleave", () => {
    if (document.activeElement === root) root.blur();
  });
}
