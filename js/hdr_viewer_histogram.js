// The HDR viewer's histogram in stops and its false-colour legend, drawn on a 2D canvas.
//
// The x axis is luminance in stops relative to 0.18 after the viewer exposure, the same
// scale the false colours use, so the legend strip under the bars is the colour key.

import {
  DISPLAY_WHITE_STOPS, FALSE_COLOUR, FALSE_COLOUR_OVER, FALSE_COLOUR_UNDER, css, stopsLabel,
} from "./hdr_viewer_palette.js";

export const AXIS = Object.freeze({ low: -8.5, high: 12.5 });
const LEGEND_HEIGHT = 16;
const BAR_COLOUR = "rgb(190, 190, 190)";
const CLIPPED_BAR_COLOUR = "rgb(235, 80, 80)";

function bandOf(stops) {
  const band = Math.floor(stops + 0.5);
  if (band < FALSE_COLOUR[0].stops) return FALSE_COLOUR_UNDER;
  if (band > FALSE_COLOUR[FALSE_COLOUR.length - 1].stops) return FALSE_COLOUR_OVER;
  return FALSE_COLOUR[band - FALSE_COLOUR[0].stops];
}

function readableText(rgb) {
  const brightness = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
  return brightness > 140 ? "#111" : "#f4f4f4";
}

/** Draw `stats.histogram` shifted by `state.exposure`, bars coloured for `state.mode`. */
export function drawHistogram(canvas, stats, state) {
  const scale = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  const context = canvas.getContext("2d");
  context.setTransform(scale, 0, 0, scale, 0, 0);
  context.clearRect(0, 0, width, height);
  const x = (stops) => ((stops - AXIS.low) / (AXIS.high - AXIS.low)) * width;
  const plotHeight = height - LEGEND_HEIGHT - 2;

  const { low, binWidth, counts } = stats.histogram;
  let tallest = 1, leftOut = stats.under, rightOut = stats.over;
  for (let bin = 0; bin < counts.length; bin++) {
    const stops = low + bin * binWidth + state.exposure;
    if (stops < AXIS.low) leftOut += counts[bin];
    else if (stops >= AXIS.high) rightOut += counts[bin];
    else tallest = Math.max(tallest, counts[bin]);
  }
  const barWidth = Math.max(1, x(binWidth) - x(0));
  for (let bin = 0; bin < counts.length; bin++) {
    const stops = low + bin * binWidth + state.exposure;
    if (!counts[bin] || stops < AXIS.low || stops >= AXIS.high) continue;
    const barHeight = Math.max(1, Math.sqrt(counts[bin] / tallest) * (plotHeight - 4));
    if (state.mode === "falsecolour") context.fillStyle = css(bandOf(stops).rgb);
    else context.fillStyle = stops > DISPLAY_WHITE_STOPS ? CLIPPED_BAR_COLOUR : BAR_COLOUR;
    context.fillRect(x(stops - binWidth / 2), plotHeight - barHeight, barWidth, barHeight);
  }

  context.font = "10px sans-serif";
  context.textBaseline = "top";
  for (const [stops, label, colour] of [[0, "18% grey", "#9ad"],
                                        [DISPLAY_WHITE_STOPS, "display white", "#e66"]]) {
    context.strokeStyle = colour;
    context.setLineDash([3, 3]);
    context.beginPath();
    context.moveTo(x(stops) + 0.5, 0);
    context.lineTo(x(stops) + 0.5, plotHeight);
    context.stroke();
    context.fillStyle = colour;
    context.fillText(label, x(stops) + 3, 2);
  }
  context.setLineDash([]);
  context.fillStyle = "#bbb";
  // The axis name, and the pixels beyond the axis ends counted at the top corners.
  context.textAlign = "right";
  context.fillText("luminance, stops re 0.18", width - 3, 2);
  if (rightOut) context.fillText(`${rightOut} \u25B8`, width - 3, 14);
  context.textAlign = "left";
  if (leftOut) context.fillText(`\u25C2 ${leftOut}`, 3, 2);

  // The legend: one swatch per stop band, labelled; the ends hold the out-of-range colours.
  const top = height - LEGEND_HEIGHT;
  const first = FALSE_COLOUR[0].stops, last = FALSE_COLOUR[FALSE_COLOUR.length - 1].stops;
  const swatches = [[AXIS.low, first - 0.5, FALSE_COLOUR_UNDER.rgb, "under"],
                    ...FALSE_COLOUR.map((band) => [band.stops - 0.5, band.stops + 0.5, band.rgb,
                                                   stopsLabel(band.stops)]),
                    [last + 0.5, AXIS.high, FALSE_COLOUR_OVER.rgb, "over"]];
  context.textAlign = "center";
  context.textBaseline = "middle";
  for (const [from, to, rgb, label] of swatches) {
    context.fillStyle = css(rgb);
    context.fillRect(x(from), top, x(to) - x(from), LEGEND_HEIGHT);
    context.fillStyle = readableText(rgb);
    context.fillText(label, (x(from) + x(to)) / 2, top + LEGEND_HEIGHT / 2 + 1);
  }
  context.textAlign = "left";
}
