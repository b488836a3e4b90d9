"""hdr.alpha: ComfyUI core's MASK polarity and premultiplied colour, against their formulae
(ComfyUI nodes.py LoadImage: mask = 1 - A / 255; nodes_compositing.py: alpha = 1 - mask)."""

from __future__ import annotations

import pytest
import torch

from comfyui_hdr.hdr import alpha


def test_core_mask_and_alpha_are_complements():
    png_alpha = torch.arange(256, dtype=torch.float32) / 255
    core_mask = 1.0 - png_alpha  # what Load Image outputs
    assert torch.equal(alpha.alpha_from_mask(core_mask), 1.0 - core_mask)
    assert torch.equal(alpha.mask_from_alpha(png_alpha), core_mask)
    # Both subtractions round in float32: coverage comes back to within 2**-24.
    torch.testing.assert_close(alpha.alpha_from_mask(core_mask), png_alpha, rtol=0, atol=2**-24)


def test_premultiply_then_unpremultiply_returns_straight_colour_where_covered():
    rgb = torch.tensor([[4.0, 2.0, 1e4], [0.5, 0.25, 3.0], [7.0, 8.0, 9.0]])
    coverage = torch.tensor([0.25, 1.0, 0.0])
    stored = alpha.premultiply(rgb, coverage)
    assert torch.equal(stored, rgb * coverage[:, None])
    assert torch.equal(stored[2], torch.zeros(3))  # no light where nothing is covered
    back = alpha.unpremultiply(stored, coverage)
    assert torch.equal(back[:2], rgb[:2])  # powers of two: exact
    glow = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [5.0, 6.0, 7.0]])
    # Alpha 0 keeps the stored colour (additive light), never a division by zero.
    assert torch.equal(alpha.unpremultiply(glow, coverage)[2], glow[2])


@pytest.mark.parametrize("mask", [torch.tensor([0.5, 1.5]), torch.tensor([-0.25, 0.0]),
                                  torch.tensor([float("nan")])])
def test_masks_outside_zero_to_one_are_refused_with_the_fix(mask):
    with pytest.raises(ValueError, match=r"mask has values from .* outside 0\.\.1; a MASK is "
                       r"coverage \(ComfyUI: 0 = opaque, 1 = transparent\): clamp"):
        alpha.alpha_from_mask(mask)
