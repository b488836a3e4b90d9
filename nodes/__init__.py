"""ComfyUI node classes: thin wrappers over ``hdr/``. One module per family."""

from . import (
    analysis,
    cfa,
    charts,
    colour,
    exr_io,
    gainmap_nodes,
    hdr_model_nodes,
    hdr_vae_nodes,
    metrics_nodes,
    ocio_nodes,
    raw_io,
    sampling_io,
    ultrahdr_nodes,
    viewer,
)
from .search_aliases import SEARCH_ALIASES

_FAMILIES = (
    charts, colour, ocio_nodes, gainmap_nodes, analysis, metrics_nodes, viewer, exr_io, raw_io,
    ultrahdr_nodes, sampling_io, cfa, hdr_vae_nodes, hdr_model_nodes,
)

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _family in _FAMILIES:
    NODE_CLASS_MAPPINGS.update(_family.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_family.NODE_DISPLAY_NAME_MAPPINGS)
for _name, _aliases in SEARCH_ALIASES.items():
    NODE_CLASS_MAPPINGS[_name].SEARCH_ALIASES = _aliases
