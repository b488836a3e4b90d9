"""A test-only ComfyUI custom node: "HDRTestSleep" waits ``seconds`` in 50 ms steps.

The headless client's tests copy this file into a dedicated server's ``custom_nodes`` as
``hdr_test_sleep/__init__.py``, so a run lasts as long as a test needs without using the
CPU. On starting, it writes ``<output folder>/<tag>.started``, the sign tests wait for
before they interrupt the run or stop the server. Each step reports progress and checks
ComfyUI's interrupt flag, as a sampler does.
"""

import time
from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths

STEP_SECONDS = 0.05


class HDRTestSleep:
    CATEGORY = "testing"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "sleep"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0}),
                             "tag": ("STRING", {"default": "sleep"})}}

    def sleep(self, seconds, tag):
        (Path(folder_paths.get_output_directory()) / f"{tag}.started").write_text("")
        steps = max(1, round(seconds / STEP_SECONDS))
        progress = comfy.utils.ProgressBar(steps)
        for _ in range(steps):
            comfy.model_management.throw_exception_if_processing_interrupted()
            time.sleep(seconds / steps)
            progress.update(1)
        return {"ui": {"text": [f"slept {seconds} s"]}}


NODE_CLASS_MAPPINGS = {"HDRTestSleep": HDRTestSleep}
