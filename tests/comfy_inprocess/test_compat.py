"""The pack refuses, at load time, a ComfyUI it has not been proven on (nodes/compat.py)."""

from __future__ import annotations

import pytest

from comfyui_hdr.harness.benches import selected
from comfyui_hdr.nodes import compat

pytestmark = pytest.mark.smoke


def test_the_bench_under_test_is_accepted_with_every_api_the_nodes_call():
    import comfyui_version

    assert comfyui_version.__version__ == selected().comfyui
    assert compat.check() == selected().comfyui


@pytest.mark.parametrize("release", ["0.3.74", "0.3.10", "0.2.7"])
def test_an_older_release_is_refused_naming_it_and_what_to_upgrade(release):
    with pytest.raises(compat.UnsupportedComfyUI, match=rf"this is ComfyUI {release}\. Update "
                                                        "ComfyUI"):
        compat.check(release)


def test_a_release_missing_an_api_the_nodes_call_is_refused_naming_the_api(monkeypatch):
    import comfy.sample

    monkeypatch.delattr(comfy.sample, "prepare_noise")
    with pytest.raises(compat.UnsupportedComfyUI, match=r"comfy\.sample\.prepare_noise"):
        compat.check("0.34.0")


def test_versions_compare_as_numbers_not_text():
    assert compat.parse_version("0.33.0") > compat.parse_version("0.3.75")
    assert compat.parse_version("0.3.75+cu128") == (0, 3, 75)
    assert compat.parse_version("1.0.0rc1") == (1, 0, 0)
