"""OCIO nodes: "OCIO Display Preview" (scene-linear -> display) and "OCIO Convert".

Configs: the built-in ``ocio://studio-config-latest`` and ``ocio://cg-config-latest``,
``$OCIO`` when set, and any ``.ocio`` file in ComfyUI's ``models/ocio`` folder. The widget
menus list the names of every available config (ComfyUI validates against them); the node
checks the names against the chosen config and lists that config's names when one is
missing. In the browser, js/ocio_widgets.js narrows the menus to the chosen config.
"""

from __future__ import annotations

import os

from ..hdr import ocio
from ._common import CATEGORY_COLOUR, join_alpha, require_image, split_alpha
from ._preview import hdr_view

SCENE_LINEAR_DEFAULT = "Linear Rec.709 (sRGB)"
ENV_CONFIG = "$OCIO"
NO_LOOK = "None"


def _register_folder() -> None:
    import folder_paths

    if "ocio" not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path("ocio", os.path.join(folder_paths.models_dir, "ocio"))
        folder_paths.folder_names_and_paths["ocio"] = (
            folder_paths.folder_names_and_paths["ocio"][0], {".ocio"})


def config_choices() -> list[str]:
    import folder_paths

    _register_folder()
    choices = [ocio.STUDIO_CONFIG, ocio.CG_CONFIG]
    if os.environ.get("OCIO"):
        choices.append(ENV_CONFIG)
    return choices + folder_paths.get_filename_list("ocio")


def resolve(config_choice: str):
    """The ``hdr.ocio`` config argument for a menu entry."""
    if config_choice.startswith("ocio://"):
        return config_choice
    if config_choice == ENV_CONFIG:
        return None
    import folder_paths

    _register_folder()
    path = folder_paths.get_full_path("ocio", config_choice)
    if path is None:
        raise ValueError(f"config {config_choice!r} is not in models/ocio; choose one of "
                         f"{', '.join(config_choices())}")
    return path


def config_names(config_choice: str) -> dict:
    """Every name of one config, for the widgets: colourspaces, displays, views, looks."""
    config = resolve(config_choice)
    displays = ocio.list_displays(config)
    return {"colourspaces": ocio.list_colourspaces(config), "displays": displays,
            "views": {display: ocio.list_views(display, config) for display in displays},
            "looks": [NO_LOOK, *ocio.list_looks(config)]}


def _union(key: str) -> list[str]:
    names: list[str] = []
    for choice in config_choices():
        try:
            found = config_names(choice)[key]
        except ValueError:
            continue
        values = [v for vs in found.values() for v in vs] if isinstance(found, dict) else found
        names += [name for name in values if name not in names]
    return names


def _config_input():
    return (config_choices(), {"default": ocio.STUDIO_CONFIG, "tooltip": (
        "OCIO config: the built-in ACES studio/CG configs, $OCIO, or a .ocio file placed in "
        "ComfyUI's models/ocio folder.")})


def colourspace_input(tooltip: str, default: str = SCENE_LINEAR_DEFAULT):
    return (_union("colourspaces"), {"default": default, "tooltip": tooltip})


class HDROCIODisplayPreview:
    CATEGORY = CATEGORY_COLOUR
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("display_image",)
    OUTPUT_NODE = True
    FUNCTION = "render"
    DESCRIPTION = ("Scene-linear in, display-referred out through an OCIO display/view "
                   "(e.g. ACES 2.0 SDR): what the artist should see. Also shows both in the HDR "
                   "viewer for an A/B wipe.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Image in the source colourspace (usually "
                                           "scene-linear)."}),
            "config": _config_input(),
            "colourspace": colourspace_input("OCIO colourspace the image is in."),
            "display": (_union("displays"), {"default": "sRGB - Display",
                                             "tooltip": "OCIO display device."}),
            "view": (_union("views"), {"default": "ACES 2.0 - SDR 100 nits (Rec.709)",
                                       "tooltip": "OCIO view of that display (its tone "
                                                  "mapping and look)."}),
            "look": (_union("looks") or [NO_LOOK], {"default": NO_LOOK, "tooltip": (
                "Optional OCIO look applied instead of the view's own looks.")}),
            "exposure_stops": ("FLOAT", {"default": 0.0, "min": -20.0, "max": 20.0, "step": 0.1,
                                         "tooltip": "Exposure before the view, in stops "
                                                    "(scene-linear gain 2^stops)."}),
        }}

    def render(self, image, config, colourspace, display, view, look, exposure_stops):
        rgb, alpha = split_alpha(require_image(image, "image", "OCIO Display Preview"))
        displayed = ocio.display_view(rgb, colourspace, display, view,
                                      look=None if look == NO_LOOK else look,
                                      exposure_stops=exposure_stops, config=resolve(config))
        result = join_alpha(displayed, alpha)
        return {"ui": hdr_view(rgb, displayed, colourspace=colourspace,
                               label=f"{display} / {view}"), "result": (result,)}


class HDROCIOConvert:
    CATEGORY = CATEGORY_COLOUR
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "convert"
    DESCRIPTION = "Converts an image between two OCIO colourspaces (nothing is clamped)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Image in the source colourspace."}),
            "config": _config_input(),
            "source": colourspace_input("OCIO colourspace the image is in."),
            "target": colourspace_input("OCIO colourspace to convert to.", "ACEScg"),
        }}

    def convert(self, image, config, source, target):
        rgb, alpha = split_alpha(require_image(image, "image", "OCIO Convert"))
        return (join_alpha(ocio.convert(rgb, source, target, config=resolve(config)), alpha),)


NODE_CLASS_MAPPINGS = {"HDROCIODisplayPreview": HDROCIODisplayPreview,
                       "HDROCIOConvert": HDROCIOConvert}
NODE_DISPLAY_NAME_MAPPINGS = {"HDROCIODisplayPreview": "OCIO Display Preview",
                              "HDROCIOConvert": "OCIO Convert"}
