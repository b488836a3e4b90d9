"""The HDR viewer (js/hdr_viewer.js) on "Preview HDR" nodes, in the real frontend (Chromium).

The module runs once per node mode (classic, Vue "Nodes 2.0"). One run feeds three viewers:
a crafted array of flat patches at exact stops (plus NaN, +/-Inf
and out-of-gamut pixels) and the HDR test chart. Every check reads the displayed canvas
back through the viewer's test hook (``node.hdrViewer``) and compares it with an oracle:
colour-science's sRGB encoding of the half-float value, the false-colour table, NumPy's
counts on the very ``.npy`` proxy the browser loaded, and the node's SDR PNG.
"""

from __future__ import annotations

import io
import urllib.parse
import urllib.request

import colour
import numpy as np
import pytest
from PIL import Image

from comfyui_hdr.harness.browser import WAIT_FOR_RUN_JS, comfy_page

pytestmark = pytest.mark.browser

PATCHES_ARRAY = "hdr_viewer_patches.npy"
PATCH_STOPS = range(-6, 11)
PATCH_WIDTH, HEIGHT = 8, 80
WIDTH = PATCH_WIDTH * len(PATCH_STOPS)
ORANGE = (0.5, 0.1, 0.02)
BOTTOM_GREY = 0.09
NAN_BLOCK = (slice(60, 64), slice(100, 104))  # 16 pixels
POS_INF_BLOCK = (slice(60, 62), slice(112, 114))  # 4 pixels
NEG_INF_PIXELS = (70, slice(120, 123))  # 3 pixels, green channel only
NEGATIVE_PIXELS = (75, slice(125, 130))  # 5 pixels, red channel -0.01 (out of gamut)
# ITU-R BT.709-6 item 3.2 (an oracle independent of the viewer's own constant).
REC709_LUMA = (0.2126, 0.7152, 0.0722)

CLIP_ARRAY = "hdr_viewer_clip.npy"
CLIP_STOPS = (-2, 3, 8)  # flat frames of 0.18 * 2**stops, one per frame
PATCHES, CHART, CLIP = 2, 4, 6  # the Preview HDR node ids in the graph below
GRAPH = {
    "1": {"class_type": "HDRLoadFloatArray", "inputs": {"array": PATCHES_ARRAY}},
    "2": {"class_type": "HDRPreview", "inputs": {"image": ["1", 0]},
          "_meta": {"title": "Preview HDR (stop patches)"}},
    "3": {"class_type": "HDRTestChart", "inputs": {"width": 512, "height": 288,
                                                   "gamut": "rec709", "sun_stops": 10.0,
                                                   "frames": 1}},
    "4": {"class_type": "HDRPreview", "inputs": {"image": ["3", 0]},
          "_meta": {"title": "Preview HDR (test chart)"}},
    "5": {"class_type": "HDRLoadFloatArray", "inputs": {"array": CLIP_ARRAY}},
    "6": {"class_type": "HDRPreview", "inputs": {"image": ["5", 0]},
          "_meta": {"title": "Preview HDR (3-frame clip)"}},
}


def flat_clip() -> np.ndarray:
    """[3, 24, 40, 3] float32: frame k is 0.18 * 2**CLIP_STOPS[k] everywhere but a 4x4
    block of the next frame's value (so frames differ in the picture and in the stats)."""
    values = [0.18 * 2.0**stops for stops in CLIP_STOPS]
    clip = np.empty((len(values), 24, 40, 3), np.float32)
    for index, value in enumerate(values):
        clip[index] = value
        clip[index, :4, :4] = values[(index + 1) % len(values)]
    return clip


def stop_patches() -> np.ndarray:
    """[80, 136, 3] float32: 0.18 * 2**k patches on top, orange, grey and bad pixels below."""
    image = np.empty((HEIGHT, WIDTH, 3), np.float32)
    for index, stops in enumerate(PATCH_STOPS):
        image[:48, index * PATCH_WIDTH:(index + 1) * PATCH_WIDTH] = 0.18 * 2.0**stops
    image[48:] = BOTTOM_GREY
    image[48:, :32] = ORANGE
    image[NAN_BLOCK] = np.nan
    image[60, 100, 1:] = 0.18  # a NaN in one channel only still counts
    image[POS_INF_BLOCK] = np.inf
    image[NEG_INF_PIXELS + (1,)] = -np.inf
    image[NEGATIVE_PIXELS + (0,)] = -0.01
    return image


def patch_centre(stops: int) -> tuple[int, int]:
    return (stops - PATCH_STOPS[0]) * PATCH_WIDTH + PATCH_WIDTH // 2, 24


def as_half(value) -> np.ndarray:
    """What the viewer receives: the value rounded once to IEEE half, as float64."""
    return np.asarray(value, np.float32).astype(np.float16).astype(np.float64)


def srgb_code(linear) -> np.ndarray:
    """8-bit sRGB code value of the display-referred linear value (colour-science oracle)."""
    encoded = colour.cctf_encoding(np.clip(linear, 0.0, 1.0), function="sRGB")
    return np.round(np.asarray(encoded) * 255.0)


def srgb_decode(code) -> np.ndarray:
    return np.asarray(colour.cctf_decoding(np.asarray(code, np.float64) / 255.0,
                                           function="sRGB"))


@pytest.fixture(scope="module")
def page(comfy_server, node_mode):
    np.save(comfy_server.input_dir / PATCHES_ARRAY, stop_patches())
    np.save(comfy_server.input_dir / CLIP_ARRAY, flat_clip())
    with comfy_page(comfy_server.url, node_mode=node_mode) as page:
        page.evaluate("(graph) => app.loadApiJson(graph, 'hdr_viewer_test')", GRAPH)
        # Events go to the client id the websocket was given: queue only once it has one.
        page.wait_for_function("window.comfyAPI.api.api.socket?.readyState === WebSocket.OPEN "
                               "&& !!window.comfyAPI.api.api.clientId", timeout=60_000)
        outcome = page.evaluate(WAIT_FOR_RUN_JS)
        assert outcome["type"] == "execution_success", outcome
        # Measured, and each node sized for its image.
        page.wait_for_function(f"() => [{PATCHES}, {CHART}, {CLIP}].every((id) => {{ "
                               "const v = app.graph.getNodeById(id)?.hdrViewer; "
                               "return v?.stats && v.fitted; })", timeout=60_000)
        page.evaluate("""() => {
            const place = {1: [20, 430], 2: [920, 140], 3: [20, 60], 4: [360, 60],
                           5: [20, 900], 6: [360, 900]};
            for (const [id, pos] of Object.entries(place)) app.graph.getNodeById(+id).pos = pos;
            app.canvas.ds.scale = 1;
            app.canvas.ds.offset = [70, 50];
            app.canvas.setDirty(true, true);
        }""")
        yield page


def viewer(page, node_id: int, script: str, arg=None):
    """Evaluate ``script`` with ``v`` bound to the node's viewer hook (``node.hdrViewer``)."""
    return page.evaluate(f"(arg) => {{ const v = app.graph.getNodeById({node_id}).hdrViewer; "
                         f"return ({script}); }}", arg)


def reset(page, node_id: int) -> None:
    viewer(page, node_id, "(v.setExposure(0), v.setMode('image'), v.setClipMarkers(false), "
                          "v.setNonFiniteMarkers(true), v.setWipe(null), 0)")


def fetch_view(url: str, entry: dict) -> bytes:
    query = urllib.parse.urlencode({key: entry[key] for key in ("filename", "subfolder", "type")})
    with urllib.request.urlopen(f"{url}/view?{query}", timeout=30) as response:
        return response.read()


def artifact(artifacts_dir, name: str, node_mode: str):
    """``name``.png in classic mode (the README's pictures), ``name``-vue.png in Vue mode."""
    return artifacts_dir / (f"{name}.png" if node_mode == "classic" else f"{name}-vue.png")


def next_frames(page) -> None:
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => "
                  "requestAnimationFrame(done)))")


def screenshot_node(page, node_id: int, path) -> None:
    next_frames(page)
    box = page.evaluate("""(id) => {
        const node = app.graph.getNodeById(id), ds = app.canvas.ds, margin = 8;
        // Vue mode: the node is a DOM element; classic mode: drawn from pos and size.
        const element = document.querySelector(`[data-node-id="${id}"]:not(.hdrv)`);
        if (element) {
            const r = element.getBoundingClientRect();
            return {x: r.left - margin, y: r.top - margin, width: r.width + 2 * margin,
                    height: r.height + 2 * margin};
        }
        const canvas = app.canvas.canvas.getBoundingClientRect();
        const title = LiteGraph.NODE_TITLE_HEIGHT;
        return {x: canvas.left + (node.pos[0] + ds.offset[0]) * ds.scale - margin,
                y: canvas.top + (node.pos[1] - title + ds.offset[1]) * ds.scale - margin,
                width: node.size[0] * ds.scale + 2 * margin,
                height: (node.size[1] + title) * ds.scale + 2 * margin};
    }""", node_id)
    page.screenshot(path=str(path), clip=box)


@pytest.mark.smoke
def test_viewer_appears_on_every_preview_node_with_webgl2(page):
    for node_id, size in ((PATCHES, (WIDTH, HEIGHT)), (CHART, (512, 288))):
        info = viewer(page, node_id, f"""({{renderer: v.renderer, width: v.stats.width,
            height: v.stats.height, entry: v.entry,
            widget: app.graph.getNodeById({node_id}).widgets.some((w) => w.name === 'hdr_viewer'),
            box: {{width: v.element.clientWidth, height: v.element.clientHeight,
                   zoom: app.canvas.ds.scale}},
            canvas: [v.element.querySelector('.hdrv-image').clientWidth,
                     v.element.querySelector('.hdrv-image').clientHeight]}})""")
        assert info["widget"] and info["renderer"] == "webgl2"
        assert (info["width"], info["height"]) == size
        assert info["entry"]["dtype"] == "float16"
        assert info["entry"]["float"]["filename"].endswith(".npy")
        # A usable size on the node (CSS pixels at canvas zoom 1): toolbars, the image and
        # the histogram all fit.
        assert info["box"]["width"] >= 450 and info["box"]["height"] >= 350, info["box"]
    # The chart's 512-pixel proxy is shown pixel for pixel (the node is sized for it).
    assert info["canvas"] == [512, 288]


def test_chart_canvas_is_the_proxy_pixel_for_pixel_on_screen(page, artifacts_dir, node_mode):
    """The canvas' pixel grid is the proxy's: backing store and CSS box both 512 x 288 at
    canvas zoom 1, and a screenshot of it equals the viewer's own read-back byte for byte
    (any CSS scaling would resample it)."""
    reset(page, CHART)
    page.mouse.move(0, 0)  # no pointer over the image: no read-out label on it
    page.evaluate("() => { app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); }")
    next_frames(page)
    image = page.locator(f'.hdrv[data-node-id="{CHART}"] .hdrv-image')
    grid = image.evaluate("(c) => ({store: [c.width, c.height], css: [c.clientWidth, "
                          "c.clientHeight], box: c.getBoundingClientRect().toJSON()})")
    assert grid["store"] == grid["css"] == [512, 288], grid
    assert (grid["box"]["width"], grid["box"]["height"]) == (512, 288), grid
    # Whole CSS pixels on screen (a fractional offset would blend neighbours).
    page.evaluate("""([dx, dy]) => { app.canvas.ds.offset[0] += dx; app.canvas.ds.offset[1] += dy;
                                   app.canvas.setDirty(true, true); }""",
                  [round(grid["box"]["x"]) - grid["box"]["x"],
                   round(grid["box"]["y"]) - grid["box"]["y"]])
    next_frames(page)
    box = image.bounding_box()
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB"))
    shown = viewer(page, CHART, "v.readImage()")
    rgba = np.array(shown["rgba"], np.uint8).reshape(shown["height"], shown["width"], 4)
    assert shot.shape == (288, 512, 3)
    np.testing.assert_array_equal(shot, rgba[..., :3])
    Image.fromarray(shot).save(artifact(artifacts_dir, "viewer-canvas-1to1", node_mode))


def test_exposure_slider_scales_displayed_light_by_two_per_stop_within_8bit_rounding(page):
    reset(page, PATCHES)
    x, y = patch_centre(0)
    grey = as_half(0.18)
    read = f"[v.state.exposure, v.readPixel({x}, {y})]"
    slider = page.locator(f'.hdrv[data-node-id="{PATCHES}"] .hdrv-exposure')
    # Whole stops through the slider itself: ten arrow-key steps of 0.1 stop each.
    measured = [viewer(page, PATCHES, f"(v.setExposure(-3), {read})")]
    slider.focus()
    for _ in range(5):
        for _ in range(10):
            slider.press("ArrowRight")
        measured.append(viewer(page, PATCHES, read))
    # Fractional stops through the hook.
    for stops in (-0.5, 0.3):
        measured.append(viewer(page, PATCHES, f"(v.setExposure({stops}), {read})"))
    exposures = [stops for stops, _ in measured]
    assert exposures == [-3, -2, -1, 0, 1, 2, -0.5, 0.3]
    for _, pixel in measured:
        assert pixel[0] == pixel[1] == pixel[2] and pixel[3] == 255
    codes = [pixel[0] for _, pixel in measured]
    # Each code is colour-science's sRGB code of 0.18 (as half) * 2**stops. A GPU may round
    # the float -> 8-bit conversion either way (GLES 3.0 section 2.1.6.2), so +/-1 code.
    expected = srgb_code(grey * 2.0 ** np.array(exposures))
    assert np.abs(np.array(codes) - expected).max() <= 1, (codes, expected.tolist())
    # Decoded back to linear, one stop is a factor of 2: the ratio of consecutive whole
    # stops lies inside the interval that +/-1 code value of rounding allows.
    for low, high in zip(codes[:5], codes[1:6], strict=True):
        ratio = srgb_decode(high) / srgb_decode(low)
        ratio_min = srgb_decode(high - 1) / srgb_decode(low + 1)
        ratio_max = srgb_decode(high + 1) / srgb_decode(low - 1)
        assert ratio_min <= 2.0 <= ratio_max, (low, high, ratio)
        assert ratio == pytest.approx(2.0, rel=0.03)  # 1 code in 50..220: at most 2.7 %


def test_every_patch_at_every_exposure_step_is_the_srgb_code_of_its_half_float(page):
    reset(page, PATCHES)
    exposures = np.arange(-100, 101) / 10  # the slider's whole range, 0.1-stop steps
    centres = [patch_centre(stops) for stops in PATCH_STOPS]
    codes = np.array(viewer(page, PATCHES, """arg.exposures.map((stops) => {
        v.setExposure(stops);
        const { width, rgba } = v.readImage();
        return arg.centres.map(([x, y]) => rgba[4 * (y * width + x) + 1]);
    })""", {"exposures": exposures.tolist(), "centres": centres}))
    linear = as_half([0.18 * 2.0**stops for stops in PATCH_STOPS])[None, :] \
        * 2.0 ** exposures[:, None]
    # +/-1 code: GLES 3.0 section 2.1.6.2 lets a GPU round float -> 8 bit either way
    # (SwiftShader here rounds to nearest: all 3417 codes measured exact).
    assert np.abs(codes - srgb_code(linear)).max() <= 1


def test_image_mode_shows_the_srgb_code_of_every_channel_in_rgb_order(page):
    reset(page, PATCHES)
    pixel = viewer(page, PATCHES, "v.readPixel(20, 70)")
    expected = srgb_code(as_half(ORANGE))
    assert pixel[:3] == expected.astype(int).tolist()
    assert pixel[0] > pixel[1] > pixel[2]  # red stays red: no R/B swap


def test_false_colour_paints_each_stop_patch_with_its_band_colour(page):
    reset(page, PATCHES)
    table = viewer(page, PATCHES, "v.falseColour")
    colours = {band["stops"]: band["rgb"] for band in table}
    assert sorted(colours) == list(PATCH_STOPS)
    shown = {}
    for stops in PATCH_STOPS:
        x, y = patch_centre(stops)
        shown[stops] = viewer(page, PATCHES, f"(v.setMode('falsecolour'), v.readPixel({x}, {y}))")
    assert {stops: rgb[:3] for stops, rgb in shown.items()} == colours
    # 0.18 * 8 = 1.44, three stops over mid grey, is the +3 colour; +1 stop of viewer
    # exposure makes it +4 (false colour measures what the viewer shows).
    x, y = patch_centre(3)
    assert shown[3][:3] == colours[3]
    assert viewer(page, PATCHES, f"(v.setExposure(1), v.readPixel({x}, {y}))")[:3] == colours[4]
    assert len({tuple(rgb) for rgb in colours.values()}) == len(colours)


def test_nan_and_inf_pixels_are_counted_and_marked(page):
    reset(page, PATCHES)
    stats = viewer(page, PATCHES, "v.stats")
    assert (stats["nan"], stats["posInf"], stats["negInf"], stats["negative"]) == (16, 4, 3, 5)
    marker = viewer(page, PATCHES, "[...v.markers.nonFinite, 255]")
    for x, y in ((101, 61), (100, 60), (113, 61), (121, 70)):  # NaN, one-channel NaN, +Inf,
        assert viewer(page, PATCHES, f"v.readPixel({x}, {y})") == marker  # -Inf in green
    # Distinct: neither a false colour nor the clip marker.
    others = viewer(page, PATCHES, "[...v.falseColour.map((band) => band.rgb), v.markers.clip]")
    assert marker[:3] not in others
    assert viewer(page, PATCHES, "(v.setMode('falsecolour'), v.readPixel(101, 61))") == marker
    status = viewer(page, PATCHES, "v.element.querySelector('.hdrv-status').textContent")
    assert "NaN 16" in status and "+Inf 4" in status and "\u2212Inf 3" in status
    # Markers off: NaN shows as 0 (black), +Inf as the largest half (white).
    viewer(page, PATCHES, "(v.setMode('image'), v.setNonFiniteMarkers(false), 0)")
    assert viewer(page, PATCHES, "v.readPixel(101, 61)") == [0, 0, 0, 255]
    assert viewer(page, PATCHES, "v.readPixel(113, 61)") == [255, 255, 255, 255]


def test_clip_markers_flag_channels_above_display_white_at_the_current_exposure(page):
    reset(page, PATCHES)
    x, y = patch_centre(0)

    def clip_markers_at(stops):
        return viewer(page, PATCHES, f"(v.setExposure({stops}), v.setClipMarkers(true), "
                                     f"[v.readPixel({x}, {y}), v.stats.clipped])")

    below, clipped_below = clip_markers_at(2)  # 0.72: under display white
    above, clipped_above = clip_markers_at(3)  # 1.44: over it
    assert below[:3] == [int(srgb_code(as_half(0.18) * 4))] * 3
    assert above == viewer(page, PATCHES, "[...v.markers.clip, 255]")
    # The count is NumPy's on the same half floats: finite pixels with a channel > 2**-stops.
    halves = as_half(stop_patches())
    finite = np.isfinite(halves).all(axis=-1)
    peak = np.where(finite[..., None], halves, -np.inf).max(axis=-1)
    assert clipped_below == int((peak * 4 > 1).sum())
    assert clipped_above == int((peak * 8 > 1).sum())


def test_histogram_in_stops_equals_numpy_on_the_proxy_the_browser_loaded(page, comfy_server):
    reset(page, PATCHES)
    hook = viewer(page, PATCHES, "({entry: v.entry, histogram: v.stats.histogram})")
    proxy = np.load(io.BytesIO(fetch_view(comfy_server.url, hook["entry"]["float"])))
    assert proxy.dtype == np.dtype("<f2") and proxy.shape == (HEIGHT, WIDTH, 3)
    rgb = proxy.astype(np.float64)
    luminance = REC709_LUMA[0] * rgb[..., 0] + REC709_LUMA[1] * rgb[..., 1] \
        + REC709_LUMA[2] * rgb[..., 2]
    lit = np.isfinite(rgb).all(axis=-1) & (luminance > 0)
    histogram = hook["histogram"]
    bins = np.floor((np.log2(luminance[lit] / 0.18) - histogram["low"])
                    / histogram["binWidth"] + 0.5).astype(int)
    expected = np.bincount(bins, minlength=len(histogram["counts"]))
    assert histogram["counts"] == expected.tolist()
    # The +3 patch (8 x 48 pixels) sits in the bin centred on +3.0 stops.
    assert histogram["counts"][round((3 - histogram["low"]) / histogram["binWidth"])] == 384


def test_ab_wipe_shows_the_sdr_png_right_of_the_split(page, comfy_server):
    reset(page, PATCHES)
    entry = viewer(page, PATCHES, "v.entry")
    png = np.asarray(Image.open(io.BytesIO(fetch_view(comfy_server.url, entry["sdr"]))))
    assert png.shape[:2] == (HEIGHT, WIDTH)
    # +2 stops on the HDR side so A and B differ; the split at half width is column 68.
    image = viewer(page, PATCHES, "(v.setExposure(2), v.setWipe(0.5), v.readImage())")
    shown = np.array(image["rgba"], np.uint8).reshape(HEIGHT, WIDTH, 4)[..., :3]
    np.testing.assert_array_equal(shown[:, 68:], png[:, 68:, :3])
    grey_a = int(srgb_code(as_half(BOTTOM_GREY) * 4))
    assert shown[56, 50].tolist() == [grey_a] * 3
    assert png[56, 50, 0] != grey_a
    # The split at 0: the whole canvas is the PNG, byte for byte.
    image = viewer(page, PATCHES, "(v.setWipe(0), v.readImage())")
    shown = np.array(image["rgba"], np.uint8).reshape(HEIGHT, WIDTH, 4)[..., :3]
    np.testing.assert_array_equal(shown, png[..., :3])


def test_a_batch_steps_frame_by_frame_each_measured_on_its_own(page, comfy_server):
    entry = viewer(page, CLIP, "v.entry")
    assert (entry["frames"], entry["shown_frames"]) == (3, 3)
    proxy = np.load(io.BytesIO(fetch_view(comfy_server.url, entry["float"])))
    png = np.asarray(Image.open(io.BytesIO(fetch_view(comfy_server.url, entry["sdr"]))))
    assert proxy.shape == (3, 24, 40, 3) and png.shape[:2] == (3 * 24, 40)
    clip = flat_clip()
    for index in (2, 0, 1):  # out of order: each frame is measured when first shown
        shown = page.evaluate(f"""async () => {{
            const v = app.graph.getNodeById({CLIP}).hdrViewer;
            await v.setFrame({index});
            v.setExposure(0); v.setWipe(null);
            return {{index: v.frameIndex, peak: v.stats.peak, pixel: v.readPixel(20, 12),
                     corner: v.readPixel(1, 1), status: v.element.querySelector(
                         '.hdrv-status').textContent,
                     slider: v.element.querySelector('.hdrv-frame-slider').value}};
        }}""")
        assert shown["index"] == index and shown["slider"] == str(index)
        assert f"frame {index + 1} of 3" in shown["status"]
        # The frame's own values, as the half floats the browser received (oracle: the
        # float32 array written, rounded once to half; luminance of a grey is the grey).
        np.testing.assert_allclose(shown["peak"], as_half(clip[index].max()), rtol=1e-6)
        for key, (y, x) in (("pixel", (12, 20)), ("corner", (1, 1))):
            value = as_half(clip[index, y, x, 0])
            assert shown[key][:3] == [int(srgb_code(value))] * 3, (index, key)
        # The A/B wipe shows this frame's slice of the SDR strip.
        image = viewer(page, CLIP, "(v.setWipe(0), v.readImage())")
        pixels = np.array(image["rgba"], np.uint8).reshape(24, 40, 4)[..., :3]
        np.testing.assert_array_equal(pixels, png[index * 24:(index + 1) * 24, :, :3])
    viewer(page, CLIP, "(v.setWipe(null), 0)")


def test_the_last_frame_asked_for_wins_when_requests_overlap(page):
    clip = flat_clip()
    shown = page.evaluate(f"""async () => {{
        const v = app.graph.getNodeById({CLIP}).hdrViewer;
        await Promise.all([v.setFrame(2), v.setFrame(0), v.setFrame(1)]);
        return {{index: v.frameIndex, peak: v.stats.peak}};
    }}""")
    assert shown["index"] == 1
    np.testing.assert_allclose(shown["peak"], as_half(clip[1].max()), rtol=1e-6)


def on_screen(page, node_id: int, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of image position (x, y) (pixel units) in the node's viewer."""
    box = page.locator(f'.hdrv[data-node-id="{node_id}"] .hdrv-image').bounding_box()
    width, height = viewer(page, node_id, "[v.stats.width, v.stats.height]")
    return box["x"] + x / width * box["width"], box["y"] + y / height * box["height"]


def test_hovering_reads_out_the_scene_linear_value_and_its_stops(page):
    reset(page, PATCHES)
    x, y = patch_centre(3)
    page.mouse.move(*on_screen(page, PATCHES, x + 0.5, y + 0.5))
    readout = page.locator(f'.hdrv[data-node-id="{PATCHES}"] .hdrv-readout')
    # 1.44 as half is 1.4404296875: log2(1.4404 / 0.18) = +3.0004 stops.
    assert readout.text_content() == f"{x},{y}  1.440 1.440 1.440  +3.00 st"


def test_dragging_on_the_image_moves_the_wipe(page):
    reset(page, PATCHES)
    viewer(page, PATCHES, "v.setWipe(0.5)")
    page.mouse.move(*on_screen(page, PATCHES, 0.5 * WIDTH, 20))
    page.mouse.down()
    page.mouse.move(*on_screen(page, PATCHES, 0.25 * WIDTH, 20), steps=4)
    page.mouse.up()
    # The split follows the pointer; 1 % of the width is about 5 screen pixels here.
    assert viewer(page, PATCHES, "v.state.wipe") == pytest.approx(0.25, abs=0.01)


def test_wheel_over_the_viewer_sets_its_exposure_and_leaves_the_canvas_zoom(page):
    reset(page, PATCHES)
    x, y = on_screen(page, PATCHES, WIDTH / 2, HEIGHT / 2)
    page.mouse.move(x, y)
    zoom = page.evaluate("app.canvas.ds.scale")
    for notches in (-1, -1, -3, 2):  # a notch is 100 px of deltaY; up (negative) brightens
        page.mouse.wheel(0, 100 * notches)
    page.wait_for_function(f"Math.abs(app.graph.getNodeById({PATCHES}).hdrViewer.state"
                           ".exposure - 0.3) < 1e-9", timeout=10_000)
    assert page.evaluate("app.canvas.ds.scale") == zoom
    slider = page.locator(f'.hdrv[data-node-id="{PATCHES}"] .hdrv-exposure')
    assert float(slider.input_value()) == pytest.approx(0.3)
    # The same wheel over empty canvas is the canvas' zoom (the control).
    empty = page.evaluate("""() => {
        const ds = app.canvas.ds, canvas = app.canvas.canvas.getBoundingClientRect();
        const [x, y] = [canvas.left + (150 + ds.offset[0]) * ds.scale,
                        canvas.top + (330 + ds.offset[1]) * ds.scale];  // between nodes 3 and 1
        const hit = document.elementFromPoint(x, y);
        return {x, y, onNode: !!hit.closest('[data-node-id], .hdrv, .side-tool-bar-container')};
    }""")
    assert not empty["onNode"], empty
    page.mouse.move(empty["x"], empty["y"])
    page.mouse.wheel(0, -100)
    page.wait_for_function(f"app.canvas.ds.scale > {zoom}", timeout=10_000)
    page.evaluate(f"() => {{ app.canvas.ds.scale = {zoom}; app.canvas.setDirty(true, true); }}")


def test_chart_viewer_screenshots(page, artifacts_dir, node_mode):
    reset(page, CHART)
    stats = viewer(page, CHART, "v.stats")
    # The sun, 10 stops over 0.18 (184.32), is the peak; as half it is 184.375:
    # log2(184.375 / 184.32) = 0.0004 stop.
    assert stats["peakStops"] == pytest.approx(10.0, abs=0.001)
    screenshot_node(page, CHART, artifact(artifacts_dir, "viewer-image", node_mode))
    viewer(page, CHART, "(v.setExposure(1), v.setClipMarkers(true), 0)")
    screenshot_node(page, CHART, artifact(artifacts_dir, "viewer-clip", node_mode))
    viewer(page, CHART, "(v.setExposure(0), v.setClipMarkers(false), v.setMode('falsecolour'), 0)")
    screenshot_node(page, CHART, artifact(artifacts_dir, "viewer-falsecolour", node_mode))
    viewer(page, CHART, "(v.setMode('image'), v.setExposure(-4), v.setWipe(0.5), 0)")
    screenshot_node(page, CHART, artifact(artifacts_dir, "viewer-wipe", node_mode))
    reset(page, PATCHES)
    screenshot_node(page, PATCHES, artifact(artifacts_dir, "viewer-patches", node_mode))
    page.screenshot(path=str(artifact(artifacts_dir, "viewer-graph", node_mode)))
    page.evaluate(f"""async () => {{
        await app.graph.getNodeById({CLIP}).hdrViewer.setFrame(1);
        app.canvas.ds.offset = [70, -800];
        app.canvas.setDirty(true, true);
    }}""")
    screenshot_node(page, CLIP, artifact(artifacts_dir, "viewer-clip-frame-2", node_mode))
    page.evaluate("() => { app.canvas.ds.offset = [70, 50]; app.canvas.setDirty(true, true); }")
