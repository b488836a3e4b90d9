// WebGL2 renderer of the HDR viewer: the float image in an RGB16F texture, one fragment per
// image pixel (the canvas has the proxy's size; CSS scales it to the node).
//
// Precision: texels are the server's IEEE half floats uploaded bit for bit (HALF_FLOAT,
// relative step 2^-11) and read with texelFetch (no filtering, no interpolation); exposure,
// false colour and the sRGB encoding run in highp (IEEE single) float; the only rounding
// after that is the 8-bit canvas itself.

import {
  CLIP_COLOUR, FALSE_COLOUR, FALSE_COLOUR_OVER, FALSE_COLOUR_UNDER, MID_GREY, NONFINITE_COLOUR,
  REC709_LUMA,
} from "./hdr_viewer_palette.js";

const PALETTE = [FALSE_COLOUR_UNDER, ...FALSE_COLOUR, FALSE_COLOUR_OVER];
const LOWEST_BAND = FALSE_COLOUR[0].stops;
const glslVec3 = (values) => `vec3(${values.map((v) => v.toFixed(8)).join(", ")})`;
const rgbVec3 = (rgb) => glslVec3(rgb.map((v) => v / 255));

const VERTEX = `#version 300 es
void main() {
  // One triangle covering the viewport.
  vec2 corner = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(corner * 2.0 - 1.0, 0.0, 1.0);
}`;

const FRAGMENT = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;

uniform sampler2D u_scene;      // RGB16F: scene-linear, NaN -> 0, +/-Inf -> +/-65504
uniform sampler2D u_nonFinite;  // R8: 1 where the source pixel had a NaN or Inf
uniform sampler2D u_sdr;        // RGBA8: the server's SDR PNG, bytes as they are
uniform float u_gain;           // 2^exposure
uniform int u_mode;             // 0 image, 1 false colour
uniform bool u_showClip;
uniform bool u_showNonFinite;
uniform int u_wipeColumn;       // columns >= this show the SDR PNG

const vec3 LUMA = ${glslVec3(REC709_LUMA)};
const vec3 PALETTE[${PALETTE.length}] = vec3[](
  ${PALETTE.map((band) => rgbVec3(band.rgb)).join(",\n  ")});
const vec3 CLIP = ${rgbVec3(CLIP_COLOUR)};
const vec3 NON_FINITE = ${rgbVec3(NONFINITE_COLOUR)};

out vec4 colour;

// IEC 61966-2-1:1999, section 5.2: the sRGB encoding of linear [0, 1].
vec3 srgbEncode(vec3 linear) {
  vec3 low = 12.92 * linear;
  vec3 high = 1.055 * pow(linear, vec3(1.0 / 2.4)) - 0.055;
  return mix(high, low, lessThanEqual(linear, vec3(0.0031308)));  // a select, no arithmetic
}

vec3 falseColour(vec3 linear) {
  float luminance = dot(linear, LUMA);
  if (!(luminance > 0.0)) return PALETTE[0];
  // Bands centred on whole stops: round to the nearest stop; PALETTE[0] is "under".
  float band = floor(log2(luminance / ${MID_GREY.toFixed(2)}) + 0.5);
  return PALETTE[int(clamp(band + ${1 - LOWEST_BAND}.0, 0.0, ${PALETTE.length - 1}.0))];
}

void main() {
  ivec2 size = textureSize(u_scene, 0);
  ivec2 pixel = ivec2(int(gl_FragCoord.x), size.y - 1 - int(gl_FragCoord.y));
  if (pixel.x >= u_wipeColumn) {
    colour = vec4(texelFetch(u_sdr, pixel, 0).rgb, 1.0);
    return;
  }
  vec3 linear = texelFetch(u_scene, pixel, 0).rgb * u_gain;
  vec3 display;
  if (u_mode == 1) {
    display = falseColour(linear);
  } else {
    display = srgbEncode(clamp(linear, 0.0, 1.0));
    if (u_showClip && any(greaterThan(linear, vec3(1.0)))) display = CLIP;
  }
  if (u_showNonFinite && texelFetch(u_nonFinite, pixel, 0).r > 0.5) display = NON_FINITE;
  colour = vec4(display, 1.0);
}`;

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
    throw new Error(`HDR viewer shader: ${gl.getShaderInfoLog(shader)}`);
  }
  return shader;
}

function texture(gl, unit) {
  const handle = gl.createTexture();
  gl.activeTexture(gl.TEXTURE0 + unit);
  gl.bindTexture(gl.TEXTURE_2D, handle);
  for (const filter of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) {
    gl.texParameteri(gl.TEXTURE_2D, filter, gl.NEAREST);
  }
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  return handle;
}

/** A WebGL2 renderer on `canvas`; throws if the browser has no WebGL2. */
export class HdrRenderer {
  constructor(canvas) {
    const gl = canvas.getContext("webgl2", {
      antialias: false, alpha: false, depth: false, preserveDrawingBuffer: true,
    });
    if (!gl) throw new Error("WebGL2 is not available in this browser");
    this.canvas = canvas;
    this.gl = gl;
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
      throw new Error(`HDR viewer program: ${gl.getProgramInfoLog(program)}`);
    }
    gl.useProgram(program);
    this.uniform = (name) => gl.getUniformLocation(program, name);
    this.textures = ["u_scene", "u_nonFinite", "u_sdr"].map((name, unit) => {
      gl.uniform1i(this.uniform(name), unit);
      return texture(gl, unit);
    });
    gl.bindVertexArray(gl.createVertexArray());
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
  }

  /** Upload a frame: half-float bits [h, w, 3], its non-finite mask and the SDR bitmap. */
  upload(width, height, halves, nonFinite, sdrBitmap) {
    const gl = this.gl;
    this.canvas.width = width;
    this.canvas.height = height;
    gl.viewport(0, 0, width, height);
    const [scene, mask, sdr] = this.textures;
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, scene);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB16F, width, height, 0, gl.RGB, gl.HALF_FLOAT, halves);
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, mask);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.R8, width, height, 0, gl.RED, gl.UNSIGNED_BYTE, nonFinite);
    gl.activeTexture(gl.TEXTURE2);
    gl.bindTexture(gl.TEXTURE_2D, sdr);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, sdrBitmap);
  }

  /** Draw with the viewer's state {exposure, mode, showClip, showNonFinite, wipeColumn}. */
  draw(state) {
    const gl = this.gl;
    gl.uniform1f(this.uniform("u_gain"), 2 ** state.exposure);
    gl.uniform1i(this.uniform("u_mode"), state.mode === "falsecolour" ? 1 : 0);
    gl.uniform1i(this.uniform("u_showClip"), state.showClip ? 1 : 0);
    gl.uniform1i(this.uniform("u_showNonFinite"), state.showNonFinite ? 1 : 0);
    gl.uniform1i(this.uniform("u_wipeColumn"), state.wipeColumn);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  }

  /** Displayed RGBA bytes of the image rectangle at (x, y), y down, rows top to bottom. */
  readPixels(x, y, width, height) {
    const gl = this.gl;
    const rgba = new Uint8Array(width * height * 4);
    gl.readPixels(x, this.canvas.height - y - height, width, height, gl.RGBA, gl.UNSIGNED_BYTE,
                  rgba);
    const stride = width * 4, topDown = new Uint8Array(rgba.length);
    for (let row = 0; row < height; row++) {
      const bottomUp = height - 1 - row;
      topDown.set(rgba.subarray(bottomUp * stride, (bottomUp + 1) * stride), row * stride);
    }
    return Array.from(topDown);
  }

  release() {
    this.gl.getExtension("WEBGL_lose_context")?.loseContext();
  }
}
