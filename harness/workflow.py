"""Workflow files as the server sees them: load, convert UI format to API format, override inputs.

A *UI-format* workflow is what the browser saves (``nodes``, ``links``, ``widgets_values``);
an *API-format* workflow is what ``POST /prompt`` takes (``{id: {class_type, inputs}}``).
:func:`ui_to_api` follows the frontend's ``graphToPrompt`` (ComfyUI_frontend 1.32,
``src/utils/executionUtil.ts`` and ``ExecutableNodeDTO.resolveInput``): widget values map to
input names in the node's ``input_order``, a value-control widget (``control_after_generate``)
and an upload button each take a slot of ``widgets_values`` but never reach the prompt, muted
and bypassed nodes are left out, links through Reroutes and bypassed nodes are followed, and
inputs whose source was left out are dropped.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PACK_ROOT = Path(__file__).resolve().parent.parent
# ComfyUI's template browser lists custom_nodes/<pack>/example_workflows/*.json (0.33 only
# notes other folder names at DEBUG level) and the frontend titles each card with its file
# name: the UI files carry human titles. API files keep short names for pipelines; the
# catalogue maps each name to its title and description.
SHIPPED_WORKFLOWS = PACK_ROOT / "example_workflows"
API_WORKFLOWS = SHIPPED_WORKFLOWS / "api"
CATALOGUE = API_WORKFLOWS / "catalogue.json"

# Node modes of LiteGraph's LGraphEventMode: NEVER (muted) and BYPASS are not executed.
MUTED, BYPASSED = 2, 4
# Input types the frontend draws as widgets (src/scripts/widgets.ts, ComfyWidgets).
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "MARKDOWN", "IMAGEUPLOAD", "COLOR",
                "IMAGECOMPARE", "CHART", "GALLERIA", "TEXTAREA"}
# Combo options that make the frontend add an upload button (extensions/core/uploadImage.ts).
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
# Nodes that live only in the browser: they shape the graph but are never queued.
FRONTEND_ONLY = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}
# The integer inputs that get a value-control widget by legacy convention (useIntWidget.ts).
SEED_NAMES = ("seed", "noise_seed")


class WorkflowError(ValueError):
    """A workflow, an override or an output folder the CLI cannot use (the message says why)."""


def shipped_workflows() -> dict[str, dict]:
    """The pack's workflows by name, in the catalogue's order: ``{name: {"title": str,
    "description": str, "ui": path, "api": path, "thumbnail": path}}``."""
    catalogue = json.loads(CATALOGUE.read_text())
    return {name: {"title": entry["title"], "description": entry["description"],
                   "ui": SHIPPED_WORKFLOWS / f"{entry['title']}.json",
                   "api": API_WORKFLOWS / f"{name}.json",
                   "thumbnail": SHIPPED_WORKFLOWS / f"{entry['title']}.jpg"}
            for name, entry in catalogue.items()}


def shipped_workflow(name: str) -> dict | None:
    """A shipped workflow by its name or its template title (any case), else None."""
    wanted = name.strip().casefold()
    return next((dict(entry, name=key) for key, entry in shipped_workflows().items()
                 if wanted in (key.casefold(), entry["title"].casefold())), None)


def load_workflow(source: str | Path | Mapping) -> dict:
    """Read a workflow from a dict, a JSON file, or the name or title of a shipped workflow."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    shipped = shipped_workflows()
    entry = shipped_workflow(str(source)) if not str(source).endswith(".json") else None
    path = Path(entry["api"] if entry else source)
    try:
        graph = json.loads(path.read_text())
    except FileNotFoundError:
        raise WorkflowError(f"workflow file {path} does not exist; pass a .json file or one of "
                            f"the shipped workflows: {', '.join(shipped)}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WorkflowError(f"workflow {path} is not readable JSON: {error}") from None
    if not isinstance(graph, dict):
        raise WorkflowError(f"workflow {path} holds a JSON {type(graph).__name__}, not a graph")
    return graph


def is_ui_format(graph: Mapping) -> bool:
    """True for a browser-saved graph, False for an API prompt; WorkflowError for neither."""
    if isinstance(graph.get("nodes"), list):
        return True
    if graph and all(isinstance(node, Mapping) and "class_type" in node
                     for node in graph.values()):
        return False
    raise WorkflowError("this JSON is neither a UI workflow (with 'nodes' and 'links') nor an API "
                        "prompt ({id: {class_type, inputs}}); save it from ComfyUI's Workflow menu")


def check_node_types(types_by_node: Mapping[str, str], object_info: Mapping,
                     packs: Mapping[str, str] | None = None) -> None:
    """Raise WorkflowError naming every node type the server lacks and the pack to install."""
    missing: dict[str, list[str]] = {}
    for node_id, class_type in types_by_node.items():
        if class_type not in object_info:
            missing.setdefault(class_type, []).append(node_id)
    if not missing:
        return
    reasons = []
    for class_type, node_ids in missing.items():
        if class_type.startswith("HDR"):
            pack = "ComfyUI-HDR (this pack; update it and restart ComfyUI)"
        elif (packs or {}).get(class_type):
            pack = f"the custom node pack '{packs[class_type]}'"
        else:
            pack = f"a custom node pack that provides {class_type}"
        reasons.append(f"'{class_type}' (node {', '.join(node_ids)}) from {pack}")
    raise WorkflowError("this ComfyUI lacks node types the workflow uses: " + "; ".join(reasons)
                        + "; install them (ComfyUI-Manager: Install Missing Custom Nodes)")


def _links(ui: Mapping) -> dict[int, tuple]:
    """Link id -> (origin_id, origin_slot, target_id, target_slot), for both link layouts."""
    links = {}
    for link in ui.get("links") or []:
        if isinstance(link, Mapping):
            link = [link["id"], link["origin_id"], link["origin_slot"], link["target_id"],
                    link["target_slot"]]
        links[link[0]] = (link[1], link[2], link[3], link[4])
    return links


def _widget_slots(node_def: Mapping, values: list) -> list[str | None]:
    """Input name of each ``widgets_values`` slot (None for slots that stay in the browser)."""
    inputs = {**node_def["input"].get("required", {}), **node_def["input"].get("optional", {})}
    order = node_def.get("input_order", {})
    names = [*order.get("required", []), *order.get("optional", [])]
    names += [name for name in inputs if name not in names]
    if any(_is_combo(spec) and any(_options(spec).get(o) for o in UPLOAD_OPTIONS)
           for spec in node_def["input"].get("required", {}).values()):
        names.append("upload")  # the frontend appends it; its button value is saved, not queued

    def slots(with_forced: bool) -> list[str | None]:
        result: list[str | None] = []
        for name in names:
            spec = inputs.get(name, ["IMAGEUPLOAD"])
            options = _options(spec)
            kind = options.get("widgetType") or ("COMBO" if _is_combo(spec) else spec[0])
            if kind not in WIDGET_TYPES or (options.get("forceInput") and not with_forced):
                continue
            result.append(None if name == "upload" or options.get("forceInput") else name)
            control = options.get("control_after_generate")
            if control or (control is None and kind == "INT" and name in SEED_NAMES):
                result.append(None)
        return result

    current = slots(with_forced=False)
    # Workflows saved before frontend 1.16 kept a dummy value for each forceInput input
    # (litegraphUtil.ts, migrateWidgetsValues).
    legacy = slots(with_forced=True)
    return legacy if len(values) == len(legacy) != len(current) else current


def _is_combo(spec: list) -> bool:
    return isinstance(spec[0], list) or spec[0] == "COMBO"


def _options(spec: list) -> Mapping:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}


def _valid_connection(type_a: str, type_b: str) -> bool:
    """LiteGraph.isValidConnection: wildcards, case-insensitive, comma lists intersect."""
    if not type_a or not type_b or "*" in (type_a, type_b):
        return True
    set_a = set(str(type_a).lower().split(","))
    return bool(set_a & set(str(type_b).lower().split(",")))


class _Graph:
    """The frontend's link resolution over a UI-format graph (ExecutableNodeDTO)."""

    def __init__(self, ui: Mapping):
        self.nodes = {node["id"]: node for node in ui["nodes"]}
        self.links = _links(ui)

    def resolve_input(self, node: Mapping, slot: int, wanted: str | None = None):
        """(origin node, origin slot) feeding ``node``'s input ``slot``, or None."""
        entry = node["inputs"][slot]
        if entry.get("link") is None:
            return None
        origin_id, origin_slot = self.links.get(entry["link"], (None, None))[:2]
        if origin_id not in self.nodes:
            raise WorkflowError(f"node {node['id']} input '{entry.get('name')}': link "
                                f"{entry['link']} leads to no node; open the workflow in "
                                "ComfyUI and save it again")
        return self.resolve_output(self.nodes[origin_id], origin_slot,
                                   wanted or entry.get("type", "*"))

    def resolve_output(self, node: Mapping, slot: int, wanted: str):
        if node.get("mode") == BYPASSED:
            index = self._bypass_slot(node, slot, wanted)
            return None if index < 0 else self.resolve_input(node, index)
        if node["type"] == "Reroute":
            return self.resolve_input(node, 0, wanted) if node.get("inputs") else None
        return node, slot

    @staticmethod
    def _bypass_slot(node: Mapping, slot: int, wanted: str) -> int:
        """The input a bypassed node passes through to output ``slot`` (its #getBypassSlotIndex)."""
        inputs = node.get("inputs") or []
        if wanted in ("*", ""):
            return slot if len(inputs) > slot else 0
        output_type = node["outputs"][slot].get("type", "*")
        if slot < len(inputs) and _valid_connection(inputs[slot].get("type"), output_type) \
                and _valid_connection(inputs[slot].get("type"), wanted):
            return slot
        types = [entry.get("type") for entry in inputs]
        if wanted in types:
            return types.index(wanted)
        return next((i for i, kind in enumerate(types) if _valid_connection(kind, output_type)
                     and _valid_connection(kind, wanted)), -1)


def _unsupported(ui: Mapping, node: Mapping) -> str | None:
    subgraphs = {graph.get("id") for graph in (ui.get("definitions") or {}).get("subgraphs", [])}
    if node["type"] in subgraphs or str(node["type"]).startswith(("workflow>", "workflow/")):
        return (f"node {node['id']} is a subgraph or group node, which this converter does not "
                "expand; export the API format from ComfyUI (Workflow > Export (API)) and queue "
                "that file")
    return None


def ui_to_api(ui: Mapping, object_info: Mapping) -> dict:
    """Convert a UI-format workflow to the API prompt the browser would queue for it.

    ``object_info`` is the server's ``GET /object_info``. Raises WorkflowError for node types
    the server lacks (naming the pack to install) and for subgraphs.

    >>> info = {"Scale": {"display_name": "Scale", "input": {"required": {
    ...     "image": ["IMAGE"], "factor": ["FLOAT", {}]}}, "input_order": {
    ...     "required": ["image", "factor"]}}}
    >>> ui = {"nodes": [{"id": 1, "type": "Scale", "mode": 0, "widgets_values": [2.0],
    ...                  "inputs": [{"name": "image", "type": "IMAGE", "link": None}]}]}
    >>> ui_to_api(ui, info)
    {'1': {'inputs': {'factor': 2.0}, 'class_type': 'Scale', '_meta': {'title': 'Scale'}}}
    """
    for node in ui["nodes"]:
        reason = _unsupported(ui, node)
        if reason:
            raise WorkflowError(reason)
    queued = [node for node in ui["nodes"]
              if node["type"] not in FRONTEND_ONLY and node.get("mode") not in (MUTED, BYPASSED)]
    check_node_types({str(node["id"]): node["type"] for node in queued}, object_info,
                     {node["type"]: (node.get("properties") or {}).get("cnr_id")
                      for node in queued})
    graph = _Graph(ui)
    prompt: dict[str, dict] = {}
    for node in queued:
        node_def = object_info[node["type"]]
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values") or []
        # Widgets an extension appends after the inputs' own are not inputs: zip drops them.
        pairs = (values.items() if isinstance(values, Mapping)
                 else zip(_widget_slots(node_def, values), values, strict=False))
        for name, value in pairs:
            if name is not None and value is not None:
                inputs[name] = {"__value__": value} if isinstance(value, list) else value
        for slot, entry in enumerate(node.get("inputs") or []):
            resolved = graph.resolve_input(node, slot)
            if resolved is None:
                continue
            origin, origin_slot = resolved
            if origin["type"] == "PrimitiveNode":  # it writes its value into the widget
                inputs[entry["name"]] = (origin.get("widgets_values") or [None])[0]
            else:
                inputs[entry["name"]] = [str(origin["id"]), int(origin_slot)]
        prompt[str(node["id"])] = {
            "inputs": inputs, "class_type": node["type"],
            "_meta": {"title": node.get("title") or node_def.get("display_name", node["type"])}}
    for node in prompt.values():
        node["inputs"] = {name: value for name, value in node["inputs"].items()
                          if not (isinstance(value, list) and value[0] not in prompt)}
    return prompt


def _describe(node_id: str, node: Mapping) -> str:
    title = node.get("_meta", {}).get("title")
    return f"{node_id} '{title}' ({node['class_type']})" if title else \
        f"{node_id} ({node['class_type']})"


def _find_node(prompt: Mapping, reference: str) -> str:
    if reference in prompt:
        return reference
    matches = [node_id for node_id, node in prompt.items()
               if node.get("_meta", {}).get("title") == reference]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(_describe(node_id, node) for node_id, node in prompt.items())
    if matches:
        raise WorkflowError(f"--set: {len(matches)} nodes are titled '{reference}' "
                            f"({', '.join(matches)}); use the node id instead")
    raise WorkflowError(f"--set: no node '{reference}' in the workflow; nodes are: {listing}")


def _parse_value(text: str, spec: list | None) -> Any:
    """JSON when it parses, except for text and menu inputs, which keep the text as typed."""
    kind = None if spec is None else ("COMBO" if _is_combo(spec) else spec[0])
    if kind in ("STRING", "COMBO"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_override(text: str) -> tuple[str, str]:
    """Split ``NODE.INPUT=VALUE`` into ``("NODE.INPUT", "VALUE")``."""
    key, separator, value = text.partition("=")
    if not separator or "." not in key:
        raise WorkflowError(f"--set expects NODE.INPUT=VALUE (node id or title), got '{text}'; "
                            "for example --set 1.sun_stops=12")
    return key.strip(), value


def apply_overrides(prompt: Mapping, overrides: Mapping[str, Any],
                    object_info: Mapping) -> dict:
    """A copy of ``prompt`` with ``{"NODE.INPUT": value}`` set (NODE is an id or a title).

    String values are parsed by the input's type (numbers and booleans as JSON, text and menu
    choices kept as typed); other values are used as given.
    """
    patched = copy.deepcopy(dict(prompt))
    for key, value in overrides.items():
        reference, _, name = key.rpartition(".")
        node_id = _find_node(patched, reference)
        node = patched[node_id]
        node_def = object_info.get(node["class_type"], {}).get("input", {})
        specs = {**node_def.get("required", {}), **node_def.get("optional", {})}
        if name not in specs and name not in node["inputs"]:
            valid = ", ".join(dict.fromkeys([*specs, *node["inputs"]]))
            raise WorkflowError(f"--set: node {_describe(node_id, node)} has no input '{name}'; "
                                f"its inputs are: {valid}")
        node["inputs"][name] = _parse_value(value, specs.get(name)) \
            if isinstance(value, str) else value
    return patched


def describe_workflow(prompt: Mapping) -> str:
    """One line naming the nodes of an API prompt in id order, as an artist reads the graph."""
    ordered = sorted(prompt.items(), key=lambda item: (len(item[0]), item[0]))
    return " -> ".join(node.get("_meta", {}).get("title", node["class_type"])
                       for _, node in ordered)
