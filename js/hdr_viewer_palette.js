// Constants of the HDR viewer: its view transform, the false-colour bands and marker colours.
// The shader (hdr_viewer_gl.js), the histogram legend and the tests all read them from here.

// Scene-linear 0.18 is 18% grey, the zero of every "stops" scale in the viewer.
export const MID_GREY = 0.18;

// ITU-R BT.709-6, item 3.2: luminance Y = 0.2126 R + 0.7152 G + 0.0722 B (linear Rec.709).
export const REC709_LUMA = Object.freeze([0.2126, 0.7152, 0.0722]);

export const EXPOSURE_RANGE = Object.freeze({ min: -10, max: 10, step: 0.1 });

// log2(1.0 / 0.18): display white (scene-linear 1.0) sits 2.47 stops above mid grey.
export const DISPLAY_WHITE_STOPS = Math.log2(1 / MID_GREY);

export const VIEW_TRANSFORM =
  "Display = sRGB encoding (IEC 61966-2-1) of clamp(scene-linear x 2^exposure, 0, 1), per " +
  "channel: everything above display white (1.0 after exposure) clips. Data: IEEE half floats " +
  "(relative precision 2^-11), sampled texel by texel, no filtering.";

// One colour per whole stop of luminance relative to 0.18 (after the viewer exposure).
// Bands are centred on whole stops: band k covers [k - 0.5, k + 0.5) stops, so a patch at
// exactly +3 stops (0.18 * 8 = 1.44) is +3 even after half-float rounding.
// Cool colours under mid grey, grey at mid grey, warm colours up to display white and
// beyond, then pale tints towards white for the specular range.
export const FALSE_COLOUR = Object.freeze([
  { stops: -6, rgb: [59, 15, 112] },
  { stops: -5, rgb: [96, 32, 176] },
  { stops: -4, rgb: [40, 60, 214] },
  { stops: -3, rgb: [24, 120, 232] },
  { stops: -2, rgb: [20, 170, 224] },
  { stops: -1, rgb: [30, 180, 150] },
  { stops: 0, rgb: [140, 140, 140] },
  { stops: 1, rgb: [60, 180, 75] },
  { stops: 2, rgb: [170, 210, 40] },
  { stops: 3, rgb: [255, 225, 25] },
  { stops: 4, rgb: [255, 160, 32] },
  { stops: 5, rgb: [240, 96, 28] },
  { stops: 6, rgb: [214, 32, 32] },
  { stops: 7, rgb: [150, 20, 40] },
  { stops: 8, rgb: [255, 128, 128] },
  { stops: 9, rgb: [255, 190, 160] },
  { stops: 10, rgb: [255, 236, 210] },
].map(Object.freeze));

// Below the lowest band (below -6.5 stops, and zero or negative luminance) / above the
// highest band (+10.5 stops and up).
export const FALSE_COLOUR_UNDER = Object.freeze({ rgb: [0, 0, 0] });
export const FALSE_COLOUR_OVER = Object.freeze({ rgb: [255, 255, 255] });

// Markers: any channel above display white (image mode, when "clip" is on) and NaN/Inf
// pixels (both modes, when "NaN/Inf" is on). Neither colour appears in the false-colour table.
export const CLIP_COLOUR = Object.freeze([255, 0, 0]);
export const NONFINITE_COLOUR = Object.freeze([255, 0, 255]);

export const css = (rgb) => `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;

export const stopsLabel = (stops) => (stops > 0 ? `+${stops}` : `${stops}`);
