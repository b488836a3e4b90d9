// The float side of the HDR viewer: parse the server's float16 .npy proxy and measure it.
//
// Precision: the proxy holds IEEE 754 binary16 values (10-bit mantissa, relative step 2^-11,
// largest finite 65504). They are decoded exactly (every half is a float32) and counted in
// float64; nothing here rounds the data.

import { MID_GREY, REC709_LUMA } from "./hdr_viewer_palette.js";

// Histogram of luminance in stops relative to 0.18: bins 0.1 stop wide centred on multiples
// of 0.1 stop (bin k holds [k - 0.05, k + 0.05) tenths), over -20..+20 stops.
export const HISTOGRAM = Object.freeze({ low: -20, high: 20, binWidth: 0.1 });

const HALF = (() => {
  // binary16: sign, 5-bit exponent (bias 15), 10-bit mantissa; exponent 31 is Inf/NaN.
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const mantissa = bits & 0x3ff;
    if (exponent === 0) table[bits] = sign * mantissa * 2 ** -24;
    else if (exponent === 31) table[bits] = mantissa ? NaN : sign * Infinity;
    else table[bits] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  return table;
})();

const HALF_MAX_BITS = 0x7bff; // 65504
const NEGATIVE_HALF_MAX_BITS = 0xfbff;

/**
 * Parse a NumPy .npy v1.0 file holding little-endian float16 [height, width, 3] (one frame)
 * or [frames, height, width, 3] (the first frames of a clip).
 */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.subarray(0, 6));
  if (magic !== "\x93NUMPY") throw new Error("not a .npy file (bad magic)");
  if (bytes[6] !== 1 || bytes[7] !== 0) {
    throw new Error(`.npy format v${bytes[6]}.${bytes[7]}; the viewer reads v1.0`);
  }
  const headerLength = bytes[8] | (bytes[9] << 8);
  const header = new TextDecoder("latin1").decode(bytes.subarray(10, 10 + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1]
    .split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (descr !== "<f2" || fortran !== "False" || !(shape?.length === 3 || shape?.length === 4) ||
      shape[shape.length - 1] !== 3) {
    throw new Error(`.npy header ${header.trim()}: expected '<f2', C order, ` +
                    "[h, w, 3] or [frames, h, w, 3]");
  }
  const [frames, height, width] = shape.length === 4 ? shape : [1, ...shape];
  const offset = 10 + headerLength;
  const halves = new Uint16Array(buffer, offset, frames * height * width * 3);
  return { width, height, frames, halves };
}

/** One frame of a parsed proxy, as `analyse` takes it (a view, no copy). */
export function frameOf({ width, height, halves }, index) {
  const size = width * height * 3;
  return { width, height, halves: halves.subarray(index * size, (index + 1) * size) };
}

/**
 * Decode the halves and measure them.
 *
 * Returns the decoded scene-linear RGB, a texture-ready copy whose NaN become 0 and +/-Inf
 * become +/-65504 (the `nonFinite` mask keeps the truth for the markers), and the stats.
 */
export function analyse({ width, height, halves }) {
  const pixels = width * height;
  const scene = new Float32Array(pixels * 3);
  const texture = new Uint16Array(halves);
  const nonFinite = new Uint8Array(pixels);
  const maxChannel = new Float32Array(pixels);
  const bins = Math.round((HISTOGRAM.high - HISTOGRAM.low) / HISTOGRAM.binWidth) + 1;
  const counts = new Array(bins).fill(0);
  const stats = { width, height, nan: 0, posInf: 0, negInf: 0, negative: 0, dark: 0,
                  under: 0, over: 0, peak: 0 };
  let finite = 0;
  for (let p = 0; p < pixels; p++) {
    let flag = 0;
    for (let c = 0; c < 3; c++) {
      const i = 3 * p + c;
      const value = HALF[halves[i]];
      scene[i] = value;
      if (Number.isNaN(value)) { flag |= 1; texture[i] = 0; }
      else if (value === Infinity) { flag |= 2; texture[i] = HALF_MAX_BITS; }
      else if (value === -Infinity) { flag |= 4; texture[i] = NEGATIVE_HALF_MAX_BITS; }
    }
    if (flag) {
      nonFinite[p] = 255;
      if (flag & 1) stats.nan++;
      else if (flag & 2) stats.posInf++;
      else stats.negInf++;
      continue;
    }
    const r = scene[3 * p], g = scene[3 * p + 1], b = scene[3 * p + 2];
    maxChannel[finite++] = Math.max(r, g, b);
    if (r < 0 || g < 0 || b < 0) stats.negative++;
    const luminance = REC709_LUMA[0] * r + REC709_LUMA[1] * g + REC709_LUMA[2] * b;
    if (!(luminance > 0)) { stats.dark++; continue; }
    stats.peak = Math.max(stats.peak, luminance);
    const bin = Math.round((Math.log2(luminance / MID_GREY) - HISTOGRAM.low) / HISTOGRAM.binWidth);
    if (bin < 0) stats.under++;
    else if (bin >= bins) stats.over++;
    else counts[bin]++;
  }
  stats.histogram = { ...HISTOGRAM, counts };
  stats.peakStops = stats.peak > 0 ? Math.log2(stats.peak / MID_GREY) : null;
  return { scene, texture, nonFinite, sortedMaxChannel: maxChannel.subarray(0, finite).sort(),
           stats };
}

/** How many finite pixels have a channel above display white at `stops` of exposure. */
export function countClipped(sortedMaxChannel, stops) {
  // channel * 2^stops > 1  <=>  channel > 2^-stops; binary search for the first such value.
  const threshold = 2 ** -stops;
  let low = 0, high = sortedMaxChannel.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (sortedMaxChannel[middle] > threshold) high = middle;
    else low = middle + 1;
  }
  return sortedMaxChannel.length - low;
}
