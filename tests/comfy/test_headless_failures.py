"""``comfyui-hdr queue`` and the MCP server when a run does not end well: interrupted through
``POST /interrupt``, deleted from the queue, past ``--timeout``, or the server stopped mid-run.

Each case runs on a dedicated server (never the shared session one) that also loads the
test-only node ``HDRTestSleep`` (``_sleep_node.py``): a run lasts as long as the test needs
without using the CPU, and the node's ``<tag>.started`` file says when it is running.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from comfyui_hdr.harness import comfyui
from comfyui_hdr.harness.cli import (
    EXIT_BAD_INPUT,
    EXIT_DISCONNECTED,
    EXIT_FAILED,
    EXIT_TIMEOUT,
    main,
)

pytestmark = pytest.mark.comfy

COMFYUI_HOME = Path(os.environ.get("COMFYUI_HDR_HOME", comfyui.DEFAULT_HOME))
SLEEP_NODE = Path(__file__).with_name("_sleep_node.py")
LONG_RUN = 120.0
"""Seconds a run would sleep if nothing stopped it: far beyond every wait below."""
ENDS_WITHIN = 60.0
"""Seconds a client has to notice the end of its run (it needs under 3 s when it works)."""
PROMPT_ID = r"[0-9a-f-]{36}"


def _start_with_sleep_node(base: Path) -> comfyui.Server:
    package = base / "custom_nodes" / "hdr_test_sleep"
    package.mkdir(parents=True)
    shutil.copy(SLEEP_NODE, package / "__init__.py")
    return comfyui.start(base, COMFYUI_HOME)


@pytest.fixture(scope="module")
def sleepy_server(tmp_path_factory):
    server = _start_with_sleep_node(tmp_path_factory.mktemp("comfyui_sleepy"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def doomed_server(tmp_path):
    """A server of its own, which the test stops mid-run."""
    server = _start_with_sleep_node(tmp_path / "comfyui_doomed")
    try:
        yield server
    finally:
        server.stop()


def _post(url: str, route: str, body: dict) -> None:
    request = urllib.request.Request(url + route, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def _queue_state(server: comfyui.Server) -> tuple[list[str], list[str]]:
    """Prompt ids running and pending."""
    queue = server.get_json("/queue")
    return ([item[1] for item in queue["queue_running"]],
            [item[1] for item in queue["queue_pending"]])


def _wait_for(condition, what: str, timeout: float = ENDS_WITHIN) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(0.1)


def _started(server: comfyui.Server, tag: str):
    return lambda: (server.output_dir / f"{tag}.started").exists()


def _idle(server: comfyui.Server) -> None:
    """Stop whatever a test left running or queued on the shared sleepy server."""
    _post(server.url, "/queue", {"clear": True})
    _post(server.url, "/interrupt", {})
    _wait_for(lambda: _queue_state(server) == ([], []), "an idle queue")


def _sleep_workflow(folder: Path, tag: str) -> Path:
    path = folder / f"{tag}.json"
    path.write_text(json.dumps({"1": {"class_type": "HDRTestSleep",
                                      "inputs": {"seconds": LONG_RUN, "tag": tag}}}))
    return path


def _start_cli(server: comfyui.Server, folder: Path, tag: str, *options: str):
    """``comfyui-hdr queue`` on a long sleep, in its own process (as a pipeline runs it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "comfyui_hdr.harness.cli", "queue",
         str(_sleep_workflow(folder, tag)), "--server", server.url, "--out",
         str(folder / "out"), *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    """Exit code, stdout and the last stderr line of a CLI process (killed if it hangs)."""
    try:
        stdout, stderr = process.communicate(timeout=ENDS_WITHIN)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stdout, (stderr.strip().splitlines() or [""])[-1]


def test_queue_exits_1_naming_the_node_when_the_run_is_interrupted(sleepy_server, tmp_path):
    process = _start_cli(sleepy_server, tmp_path, "interrupted")
    try:
        _wait_for(_started(sleepy_server, "interrupted"), "the run to start")
        _post(sleepy_server.url, "/interrupt", {})  # what the queue's Cancel button sends
        code, stdout, message = _finish(process)
    finally:
        _idle(sleepy_server)
    assert code == EXIT_FAILED
    assert stdout == ""
    assert re.fullmatch(
        f"comfyui-hdr queue: error: ComfyUI interrupted the run at HDRTestSleep \\(node 1\\) "
        f"of prompt {PROMPT_ID} \\(POST /interrupt or Cancel in the queue\\); queue the "
        "workflow again to run it to the end", message), message


def test_queue_exits_1_when_its_pending_prompt_is_deleted_from_the_queue(
        sleepy_server, tmp_path):
    _post(sleepy_server.url, "/prompt", {"prompt": json.loads(
        _sleep_workflow(tmp_path, "blocker").read_text())})
    try:
        _wait_for(_started(sleepy_server, "blocker"), "the blocking run to start")
        process = _start_cli(sleepy_server, tmp_path, "deleted")
        _wait_for(lambda: len(_queue_state(sleepy_server)[1]) == 1, "the CLI's prompt")
        (pending,) = _queue_state(sleepy_server)[1]
        _post(sleepy_server.url, "/queue", {"delete": [pending]})
        code, _, message = _finish(process)
    finally:
        _idle(sleepy_server)
    assert code == EXIT_FAILED
    assert message == (f"comfyui-hdr queue: error: prompt {pending} was removed from ComfyUI's "
                       "queue before it finished (deleted or the queue cleared); queue the "
                       "workflow again")


def test_queue_past_timeout_exits_4_and_cancels_its_prompt_on_the_server(
        sleepy_server, tmp_path):
    process = _start_cli(sleepy_server, tmp_path, "timed_out", "--timeout", "3")
    try:
        code, stdout, message = _finish(process)
        prompt_id = re.search(f"prompt ({PROMPT_ID})", message)[1]
        # Cancelled, not left running: the server interrupted it and is idle again.
        _wait_for(lambda: _queue_state(sleepy_server) == ([], []), "the cancelled run to end")
        history = sleepy_server.get_json(f"/history/{prompt_id}")[prompt_id]
    finally:
        _idle(sleepy_server)
    assert code == EXIT_TIMEOUT
    assert stdout == ""
    assert message == (f"comfyui-hdr queue: error: prompt {prompt_id} did not finish within "
                       "3 s; it was cancelled on the server (allow it more time with "
                       "--timeout or timeout=)")
    assert "execution_interrupted" in [kind for kind, _ in history["status"]["messages"]]


@pytest.mark.parametrize("value", ["0", "-3", "inf", "soon"])
def test_queue_refuses_a_timeout_that_is_not_a_positive_number(capsys, value):
    with pytest.raises(SystemExit) as exit_status:
        main(["queue", "logc4_round_trip", "--timeout", value])
    assert exit_status.value.code == EXIT_BAD_INPUT  # argparse's usage error is also 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"comfyui-hdr queue: error: argument --timeout: {value!r} is not a number of "
        "seconds > 0")


def _mcp_server(url: str, out_dir: Path) -> StdioServerParameters:
    # The environment goes along so the server imports this checkout (PYTHONPATH).
    return StdioServerParameters(command=sys.executable, env=dict(os.environ), args=[
        "-m", "comfyui_hdr.harness.cli", "mcp", "--server", url, "--out", str(out_dir)])


def _interrupt_when_started(server: comfyui.Server, tag: str) -> threading.Thread:
    def interrupt():
        _wait_for(_started(server, tag), "the MCP run to start")
        _post(server.url, "/interrupt", {})

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    return thread


async def _mcp_interrupted_and_timed_out(server: comfyui.Server, folder: Path) -> dict:
    answers = {}
    async with stdio_client(_mcp_server(server.url, folder / "out")) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        thread = _interrupt_when_started(server, "mcp_interrupted")
        answers["interrupted"] = await session.call_tool("generate_hdr", {
            "workflow": str(_sleep_workflow(folder, "mcp_interrupted"))})
        thread.join()
        answers["timed_out"] = await session.call_tool("generate_hdr", {
            "workflow": str(_sleep_workflow(folder, "mcp_timed_out")), "timeout_seconds": 2})
    return answers


def test_mcp_generate_hdr_reports_interrupt_and_timeout_as_tool_errors(sleepy_server, tmp_path):
    try:
        answers = anyio.run(_mcp_interrupted_and_timed_out, sleepy_server, tmp_path)
    finally:
        _idle(sleepy_server)
    for case, expected in (
            ("interrupted", "Error executing tool generate_hdr: ComfyUI interrupted the run at "
                            f"HDRTestSleep \\(node 1\\) of prompt {PROMPT_ID} "),
            ("timed_out", f"Error executing tool generate_hdr: prompt {PROMPT_ID} did not "
                          "finish within 2 s; it was cancelled on the server ")):
        result = answers[case]
        assert result.is_error, result
        assert re.match(expected, result.content[0].text), result.content[0].text


async def _mcp_call_while_stopping(server: comfyui.Server, folder: Path):
    """generate_hdr and the CLI each follow a prompt (one runs, one waits in the queue) when
    the server is stopped."""
    def stop_when_both_are_queued():
        _wait_for(lambda: [len(ids) for ids in _queue_state(server)] == [1, 1],
                  "one prompt running and one pending")
        server.stop()

    async with stdio_client(_mcp_server(server.url, folder / "out")) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        stopper = threading.Thread(target=stop_when_both_are_queued, daemon=True)
        stopper.start()
        result = await session.call_tool("generate_hdr", {
            "workflow": str(_sleep_workflow(folder, "mcp_doomed"))})
        stopper.join()
    return result


def test_server_stopped_mid_run_exits_5_and_is_a_tool_error(doomed_server, tmp_path):
    cli = _start_cli(doomed_server, tmp_path, "cli_doomed")
    try:
        result = anyio.run(_mcp_call_while_stopping, doomed_server, tmp_path)
    finally:
        code, stdout, message = _finish(cli)
    went_away = (f"ComfyUI at {doomed_server.url} went away during the run of prompt "
                 f"{PROMPT_ID} \\(.+\\); it stopped or crashed: check its log, start it again "
                 "and queue the workflow again")
    assert code == EXIT_DISCONNECTED
    assert stdout == ""
    assert re.fullmatch(f"comfyui-hdr queue: error: {went_away}", message), message
    assert result.is_error
    assert re.fullmatch(f"Error executing tool generate_hdr: {went_away}",
                        result.content[0].text), result.content[0].text
