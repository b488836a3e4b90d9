"""Transfer functions: scene-linear or display light <-> code values, and a curve menu.

Every curve is an encode/decode pair written once in torch and decorated with
:func:`~._array.array_function`, so the same name works on torch tensors (differentiable,
dtype kept, on any device) and numpy arrays. The curves live in three modules, gathered
here:

- :mod:`.transfer_camera`: ARRI LogC3, ARRI LogC4, ACEScct;
- :mod:`.transfer_display`: SMPTE ST 2084 (PQ), ITU-R BT.2100 HLG, IEC sRGB;
- :mod:`.transfer_learning`: DiffHDR log-gamma, mu-law, PU21.

:data:`CURVES` lists the scene-linear curves a node can offer in a menu. Large float32
frames run as one fused, compiled kernel per curve once compiling pays back
(:mod:`.transfer_fused`; ``COMFYUI_HDR_COMPILE=auto|always|never``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .transfer_camera import (
    ACESCCT,
    LOGC3_EXPOSURE_INDICES,
    LOGC4,
    LogC3Parameters,
    acescct_decode,
    acescct_encode,
    logc3_decode,
    logc3_encode,
    logc3_parameters,
    logc4_decode,
    logc4_encode,
)
from .transfer_display import (
    HLG,
    PQ,
    SRGB,
    hlg_decode,
    hlg_encode,
    hlg_eotf,
    hlg_inverse_eotf,
    hlg_inverse_oetf,
    hlg_inverse_ootf,
    hlg_oetf,
    hlg_ootf,
    hlg_system_gamma,
    pq_decode,
    pq_encode,
    pq_eotf,
    pq_inverse_eotf,
    srgb_decode,
    srgb_encode,
)
from .transfer_learning import (
    LOGGAMMA,
    PU21,
    loggamma_decode,
    loggamma_encode,
    mulaw_decode,
    mulaw_encode,
    pu21_decode,
    pu21_encode,
)

__all__ = [
    "ACESCCT",
    "CURVES",
    "LOGGAMMA",
    "Curve",
    "HLG",
    "LOGC3_EXPOSURE_INDICES",
    "LOGC4",
    "LogC3Parameters",
    "PQ",
    "PU21",
    "SRGB",
    "acescct_decode",
    "acescct_encode",
    "get_curve",
    "lora_curve",
    "parse_curve",
    "hlg_decode",
    "hlg_encode",
    "hlg_eotf",
    "hlg_inverse_eotf",
    "hlg_inverse_ootf",
    "hlg_inverse_oetf",
    "hlg_oetf",
    "hlg_ootf",
    "hlg_system_gamma",
    "logc3_decode",
    "logc3_encode",
    "logc3_parameters",
    "logc4_decode",
    "logc4_encode",
    "loggamma_decode",
    "loggamma_encode",
    "mulaw_decode",
    "mulaw_encode",
    "pq_decode",
    "pq_encode",
    "pq_eotf",
    "pq_inverse_eotf",
    "pu21_decode",
    "pu21_encode",
    "srgb_decode",
    "srgb_encode",
]


@dataclass(frozen=True)
class Curve:
    """A scene-linear encoding a node can offer: its functions, range and source.

    ``encode``/``decode`` use ``parameters`` as their defaults. ``linear_min`` and
    ``linear_max`` are the scene-linear values at code 0 and code 1.0 (the headroom the
    encoding keeps above diffuse white is ``log2(linear_max)`` stops).
    """

    name: str
    label: str
    encode: Callable[..., Any]
    decode: Callable[..., Any]
    linear_min: float
    linear_max: float
    reference: str
    parameters: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def with_parameters(self, **values: float) -> Curve:
        """This curve with some parameters changed; ``linear_min``/``linear_max`` are
        re-derived (the decode of codes 0 and 1.0) and the label names the changes.

        >>> get_curve("loggamma").with_parameters(ceiling=65536).linear_max
        65536.0
        """
        unknown = sorted(set(values) - set(self.parameters))
        if unknown:
            raise ValueError(f"curve {self.name} has no parameter {', '.join(unknown)}; its "
                             f"parameters are: {', '.join(self.parameters) or 'none'}")
        changed = {name: type(self.parameters[name])(value) for name, value in values.items()
                   if value != self.parameters[name]}
        if not changed:
            return self
        parameters = MappingProxyType({**self.parameters, **changed})
        note = ", ".join(f"{name} {value:g}" for name, value in changed.items())
        return Curve(name=self.name, label=f"{self.label} ({note})", encode=self.encode,
                     decode=self.decode, linear_min=float(self.decode(0.0, **parameters)),
                     linear_max=float(self.decode(1.0, **parameters)),
                     reference=self.reference, parameters=parameters)


_LOGC3_EI800 = logc3_parameters(800)
_PQ_WHITE = 203.0
_HLG_PEAK = 1000.0
_LOGGAMMA = MappingProxyType({"gamma": LOGGAMMA.gamma, "ceiling": LOGGAMMA.ceiling})
_MU = 5000.0

_CURVE_LIST = (
    Curve(
        name="logc3",
        label="ARRI LogC3 (EI 800)",
        encode=logc3_encode,
        decode=logc3_decode,
        linear_min=-_LOGC3_EI800.f / _LOGC3_EI800.e,
        linear_max=(10 ** ((1 - _LOGC3_EI800.d) / _LOGC3_EI800.c) - _LOGC3_EI800.b)
        / _LOGC3_EI800.a,
        reference='ARRI (2011), "ALEXA Log C Curve - Usage in VFX", SUP 3.x, EI 800',
        parameters=MappingProxyType({"exposure_index": 800}),
    ),
    Curve(
        name="logc4",
        label="ARRI LogC4",
        encode=logc4_encode,
        decode=logc4_decode,
        linear_min=LOGC4.t,
        linear_max=(2 ** (14 * (1 - LOGC4.c) / LOGC4.b + 6) - 64) / LOGC4.a,
        reference='ARRI (2022), "ARRI LogC4 Logarithmic Color Space Specification"',
    ),
    Curve(
        name="acescct",
        label="ACEScct",
        encode=acescct_encode,
        decode=acescct_decode,
        linear_min=-ACESCCT.b / ACESCCT.a,
        linear_max=2 ** (ACESCCT.log_scale - ACESCCT.log_offset),
        reference="Academy S-2016-001, ACEScct",
    ),
    Curve(
        name="loggamma",
        label="DiffHDR log-gamma",
        encode=loggamma_encode,
        decode=loggamma_decode,
        linear_min=0.0,
        linear_max=_LOGGAMMA["ceiling"],
        reference="Eyeline Labs DiffHDR (2025), Lin_to_Log; implementation README: "
                  "gamma 2.2, M 1000 (the code: M 65536)",
        parameters=_LOGGAMMA,
    ),
    Curve(
        name="pq",
        label="PQ (ST 2084, 203 nits at 1.0)",
        encode=pq_encode,
        decode=pq_decode,
        linear_min=0.0,
        linear_max=PQ.peak_nits / _PQ_WHITE,
        reference="SMPTE ST 2084:2014; ITU-R BT.2408 reference white",
        parameters=MappingProxyType({"nits_at_1": _PQ_WHITE}),
    ),
    Curve(
        name="hlg",
        label="HLG (BT.2100, 203 nits at 1.0, 1000-nit display)",
        encode=hlg_encode,
        decode=hlg_decode,
        linear_min=0.0,
        # The EOTF of signal 1.0: L_W * OETF^-1(1) ** gamma, 1000.00003 nits because the
        # standard's a is rounded to 8 decimals.
        linear_max=_HLG_PEAK
        * ((math.exp((1 - HLG.c) / HLG.a) + HLG.b) / 12) ** hlg_system_gamma(_HLG_PEAK)
        / _PQ_WHITE,
        reference="ITU-R BT.2100-2, Table 5; ITU-R BT.2408 reference white",
        parameters=MappingProxyType({"nits_at_1": _PQ_WHITE, "peak_nits": _HLG_PEAK}),
    ),
    Curve(
        name="mulaw",
        label="mu-law (mu 5000)",
        encode=mulaw_encode,
        decode=mulaw_decode,
        linear_min=0.0,
        linear_max=1.0,
        reference="ITU-T G.711; Kalantari & Ramamoorthi (2017)",
        parameters=MappingProxyType({"mu": _MU}),
    ),
    Curve(
        name="srgb",
        label="sRGB (IEC 61966-2-1)",
        encode=srgb_encode,
        decode=srgb_decode,
        linear_min=0.0,
        linear_max=1.0,
        reference="IEC 61966-2-1:1999",
    ),
)

CURVES: Mapping[str, Curve] = MappingProxyType({curve.name: curve for curve in _CURVE_LIST})
"""Scene-linear curves by name, in menu order."""


def get_curve(name: str) -> Curve:
    """The :class:`Curve` called ``name``; a ValueError lists the valid names.

    >>> get_curve("logc4").label
    'ARRI LogC4'
    """
    try:
        return CURVES[name]
    except KeyError:
        raise ValueError(
            f"curve must be one of {', '.join(CURVES)} (got {name!r})"
        ) from None



def parse_curve(spec: str) -> Curve:
    """A curve from a command-line spec: a name of :data:`CURVES`, optionally followed by
    ``:`` and ``parameter=value`` pairs (its :attr:`Curve.parameters`).

    ``loggamma`` is DiffHDR's log-gamma with gamma 2.2 and M 1000 (the implementation
    README); ``loggamma:ceiling=65536`` is M of DiffHDR's code.

    >>> parse_curve("loggamma:ceiling=65536").parameters["ceiling"]
    65536.0
    """
    name, _, settings = spec.strip().partition(":")
    curve = get_curve(name.strip())
    values = {}
    for pair in filter(None, (item.strip() for item in settings.split(","))):
        key, equals, value = pair.partition("=")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            equals = ""
        if not equals:
            raise ValueError(f"curve {spec!r}: {pair!r} is not parameter=number; write e.g. "
                             "loggamma:gamma=2.2,ceiling=65536") from None
    return curve.with_parameters(**values)


def lora_curve(mapping: Mapping[str, Any]) -> Curve:
    """The curve a LoRA was trained with, from its ``hdr_lora.json`` (or the same JSON in
    its safetensors metadata ``hdr_lora``): ``curve.name`` (else ``hdr_transform``) and
    ``curve.parameters``.

    Backwards compatible: a mapping that names ``loggamma`` without M (``ceiling``) was
    written when train-lora's log-gamma always used DiffHDR's code value M = 65536, so it
    decodes with 65536 (not today's default 1000).

    >>> lora_curve({"hdr_transform": "loggamma"}).parameters["ceiling"]
    65536.0
    """
    entry = mapping.get("curve") or {}
    name = entry.get("name") or mapping.get("hdr_transform")
    if not name:
        raise ValueError("the LoRA's hdr_lora mapping names no curve (neither curve.name nor "
                         "hdr_transform); was it written by train-lora?")
    parameters = dict(entry.get("parameters") or {})
    if name == "loggamma" and "ceiling" not in parameters:
        parameters["ceiling"] = LOGGAMMA.upstream_ceiling
    return get_curve(name).with_parameters(**parameters)
