"""DiffHDR's structured exposure prompt: "base; [Overexposed: ...]; [Underexposed: ...]".

The bracketed parts (matched case-insensitively, "over-exposed"/"overexposed" alike) are the
prompts CFA routes to the blown-out and crushed regions; the rest is the base prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_REGION = re.compile(r"\[\s*(over|under)[\s-]*exposed\s*:\s*([^\]]*)\]\s*;?", re.IGNORECASE)

DIFFHDR_OVER_PROMPT = "over-exposed: Recover the over-exposed area."
DIFFHDR_UNDER_PROMPT = "under-exposed: Recover the under-exposed area."
"""DiffHDR's default region prompts (DiffHDR ``infer_video.py``)."""


@dataclass(frozen=True)
class ExposurePrompt:
    base: str
    over: str | None
    under: str | None


def parse_exposure_prompt(text: str) -> ExposurePrompt:
    """Split a structured prompt into base, over and under parts (None where absent).

    >>> parse_exposure_prompt("a street at noon; [Overexposed: a white sky]; "
    ...                       "[underexposed: dark doorways]")
    ExposurePrompt(base='a street at noon', over='a white sky', under='dark doorways')
    """
    parts: dict[str, str] = {}
    for match in _REGION.finditer(text):
        kind = match.group(1).lower()
        if kind in parts:
            raise ValueError(f"prompt has two [{kind}exposed: ...] parts; keep one of each")
        parts[kind] = match.group(2).strip()
    base = _REGION.sub("", text).strip().strip(";").strip()
    return ExposurePrompt(base=base, over=parts.get("over") or None,
                          under=parts.get("under") or None)
