"""A small client for ComfyUI's HTTP + websocket API (queue, follow, fetch outputs).

Used by the tests and the demo; it speaks only the public API of a running server:
``POST /prompt``, the ``/ws`` event stream, ``GET /history/<id>``, ``GET /view``, and
``GET``/``POST /queue`` and ``POST /interrupt`` to watch and cancel its own prompt.

A run ends in one of five ways, each but success its own exception: the server's
``execution_success``; ``execution_error`` (:class:`ComfyError` with the node's exception);
``execution_interrupted`` or the prompt removed from the queue (:class:`ComfyInterrupted`);
the caller's time limit (:class:`ComfyTimeout`, after cancelling the prompt on the server);
the connection lost mid-run (:class:`ComfyDisconnected`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable


class ComfyError(RuntimeError):
    """The server refused a prompt or reported an execution error (its text is the message)."""


class ComfyUnreachable(ComfyError):
    """Nothing answered at the server URL (the message names it)."""


class ComfyInterrupted(ComfyError):
    """The run was stopped on the server: interrupted (``POST /interrupt``, the queue's
    Cancel button) or removed from the queue before it finished."""


class ComfyTimeout(ComfyError):
    """The run did not finish within the caller's time limit; it was cancelled on the server."""


class ComfyDisconnected(ComfyError):
    """The server closed the connection, or stopped answering, while the run was going on."""


LIVENESS_INTERVAL = 5.0
"""Seconds without an event of the run after which the client asks ``GET /queue`` whether
the prompt is still queued or running (and the server still answering). ``/queue`` lists
every queued prompt in full, so waiting clients ask it rarely."""
LIVENESS_TIMEOUT = 30.0
"""Seconds the server has to answer that question before the run counts as disconnected."""


def refusal_text(body: str) -> str:
    """One line from the JSON of a refused ``POST /prompt``: the error, then each node's
    errors with the input they name; any other body is returned as it is."""
    try:
        answer = json.loads(body)
        error = answer["error"]
    except (ValueError, KeyError, TypeError):
        return body
    parts = [": ".join(text for text in (error.get("message"), error.get("details")) if text)]
    for node_id, node in (answer.get("node_errors") or {}).items():
        for item in node.get("errors", []):
            parts.append(f"{node.get('class_type')} (node {node_id}): {item.get('message')}"
                         + (f" ({item['details']})" if item.get("details") else ""))
    return "; ".join(part for part in parts if part)


@dataclasses.dataclass
class RunResult:
    prompt_id: str
    events: list[dict]
    history: dict

    @property
    def outputs(self) -> dict:
        return self.history.get("outputs", {})

    def event_types(self) -> list[str]:
        return [event["type"] for event in self.events]


class ComfyClient:
    def __init__(self, url: str, timeout: float = 300.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def _request(self, route: str, body: dict | None = None,
                 timeout: float | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + route, data=data, headers={"Content-Type": "application/json"}
        )
        timeout = self.timeout if timeout is None else timeout
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            where = "ComfyUI refused the prompt" if route == "/prompt" else route
            raise ComfyError(f"{where} (HTTP {error.code}): {refusal_text(text)}") from None
        except TimeoutError:
            raise ComfyError(f"{route}: ComfyUI at {self.url} did not answer within "
                             f"{timeout:g} s") from None
        except (urllib.error.URLError, ConnectionError) as error:
            raise ComfyUnreachable(
                f"cannot reach ComfyUI at {self.url}: {getattr(error, 'reason', error)}; start "
                "it, or pass the URL it prints (e.g. --server http://127.0.0.1:8188)") from None

    def get_json(self, route: str):
        return json.loads(self._request(route))

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def queue(self, prompt: dict, extra_data: dict | None = None) -> str:
        """Queue an API-format graph; returns its prompt_id (raises ComfyError if refused).

        ``extra_data`` travels with the prompt as the browser's does (``extra_pnginfo``
        holds the UI workflow that saved files embed).
        """
        body = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            body["extra_data"] = extra_data
        answer = json.loads(self._request("/prompt", body))
        if answer.get("node_errors"):
            raise ComfyError(refusal_text(json.dumps({"error": {}, **answer})))
        return answer["prompt_id"]

    def run(self, prompt: dict, extra_data: dict | None = None,
            on_event: Callable[[dict], None] | None = None,
            timeout: float | None = None) -> RunResult:
        """Queue ``prompt``, follow its websocket events until it ends, return events + history.

        ``on_event`` sees each event of this prompt as it arrives (for a progress line).
        ``timeout`` limits the whole run in seconds (None: no limit); on expiry the prompt is
        removed from the queue or interrupted, whichever applies, and ComfyTimeout raised.
        Raises ComfyError with the server's exception text on ``execution_error``,
        ComfyInterrupted when the run is interrupted or deleted from the queue, and
        ComfyDisconnected when the server goes away before the run ends.
        """
        import websocket  # websocket-client; imported here so the package does not need it

        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        try:
            socket = websocket.create_connection(ws_url, timeout=self.timeout)
        except (OSError, websocket.WebSocketException) as error:
            raise ComfyUnreachable(f"cannot open the websocket of ComfyUI at {ws_url}: {error}"
                                   ) from None
        events: list[dict] = []
        try:
            prompt_id = self.queue(prompt, extra_data)
            try:
                self._follow(socket, prompt_id, events, on_event, deadline)
            except ComfyTimeout:
                raise ComfyTimeout(f"prompt {prompt_id} did not finish within {timeout:g} s; "
                                   f"{self._cancel(prompt_id)} (allow it more time with "
                                   "--timeout or timeout=)") from None
        finally:
            socket.close()
        try:
            history = self.history(prompt_id)
        except ComfyUnreachable as error:
            raise self._disconnected(prompt_id, error) from None
        return RunResult(prompt_id, events, history)

    def _follow(self, socket, prompt_id: str, events: list[dict],
                on_event: Callable[[dict], None] | None, deadline: float | None) -> None:
        """Read events of ``prompt_id`` until ``execution_success`` (returns) or another end
        (raises); every LIVENESS_INTERVAL seconds without one of its events, ask the queue."""
        import websocket

        last_sign = time.monotonic()
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise ComfyTimeout
            if now - last_sign >= LIVENESS_INTERVAL:
                if self._settled_in_queue(prompt_id):
                    return
                last_sign = now
            wait = LIVENESS_INTERVAL - (now - last_sign)
            socket.settimeout(wait if deadline is None else max(min(wait, deadline - now), 0.01))
            try:
                message = socket.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketException, OSError) as error:
                raise self._disconnected(prompt_id, error) from None
            if message == "":  # websocket-client's answer to a close frame
                raise self._disconnected(prompt_id, "the server closed the websocket")
            if not isinstance(message, str):
                continue  # binary preview frames
            event = json.loads(message)
            data = event.get("data", {})
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if data.get("prompt_id") == prompt_id:
                last_sign = time.monotonic()
            events.append(event)
            if on_event is not None:
                on_event(event)
            if self._ended(event["type"], data, prompt_id):
                return

    @staticmethod
    def _ended(kind: str, data: dict, prompt_id: str) -> bool:
        """True on success; raises for an error or an interrupt; False for other events."""
        if kind == "execution_error":
            raise ComfyError(
                f"{data.get('node_type')} (node {data.get('node_id')}): "
                f"{data.get('exception_type')}: {data.get('exception_message')}"
            )
        if kind == "execution_interrupted":
            raise ComfyInterrupted(
                f"ComfyUI interrupted the run at {data.get('node_type')} (node "
                f"{data.get('node_id')}) of prompt {prompt_id} (POST /interrupt or Cancel in "
                "the queue); queue the workflow again to run it to the end")
        return kind == "execution_success"

    def _settled_in_queue(self, prompt_id: str) -> bool:
        """Whether a prompt that sent no event for a while finished meanwhile (True); False
        while it is still queued or running. Raises ComfyDisconnected when the server does
        not answer, and ComfyInterrupted, ComfyError as its history says."""
        try:
            queue = json.loads(self._request("/queue", timeout=LIVENESS_TIMEOUT))
            if any(len(item) > 1 and item[1] == prompt_id
                   for key in ("queue_running", "queue_pending") for item in queue.get(key, [])):
                return False
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
        except ComfyError as error:  # no answer, or an HTTP error: a dying server
            raise self._disconnected(prompt_id, error) from None
        if entry is None:
            raise ComfyInterrupted(f"prompt {prompt_id} was removed from ComfyUI's queue before "
                                   "it finished (deleted or the queue cleared); queue the "
                                   "workflow again")
        for kind, data in entry.get("status", {}).get("messages", []):
            self._ended(kind, data, prompt_id)
        return True

    def _cancel(self, prompt_id: str) -> str:
        """Remove ``prompt_id`` from the queue or interrupt it if it runs (nobody else's);
        returns what was done, for the message."""
        try:
            self._request("/queue", {"delete": [prompt_id]}, timeout=LIVENESS_TIMEOUT)
            self._request("/interrupt", {"prompt_id": prompt_id}, timeout=LIVENESS_TIMEOUT)
        except ComfyError as error:
            return f"it could not be cancelled on the server ({error})"
        return "it was cancelled on the server"

    def _disconnected(self, prompt_id: str, reason) -> ComfyDisconnected:
        return ComfyDisconnected(
            f"ComfyUI at {self.url} went away during the run of prompt {prompt_id} ({reason}); "
            "it stopped or crashed: check its log, start it again and queue the workflow again")

    def history(self, prompt_id: str, timeout: float = 30.0) -> dict:
        """The history entry of a finished prompt (the server files it just after the
        ``execution_success`` event, so this waits briefly for it)."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry is not None:
                return entry
            if time.monotonic() > deadline:
                raise ComfyError(f"prompt {prompt_id} finished but never reached /history")
            time.sleep(0.05)

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": kind})
        return self._request(f"/view?{query}")
