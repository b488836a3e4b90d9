"""A small client for ComfyUI's HTTP + websocket API (queue, follow, fetch outputs).

Used by the tests and the demo; it speaks only the public API of a running server:
``POST /prompt``, the ``/ws`` event stream, ``GET /history/<id>`` and ``GET /view``.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


class ComfyError(RuntimeError):
    """The server refused a prompt or reported an execution error (its text is the message)."""


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

    def _request(self, route: str, body: dict | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + route, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            raise ComfyError(f"{route}: HTTP {error.code}: {text}") from None
        except urllib.error.URLError as error:
            raise ComfyError(f"cannot reach ComfyUI at {self.url}: {error.reason}") from error

    def get_json(self, route: str):
        return json.loads(self._request(route))

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def queue(self, prompt: dict) -> str:
        """Queue an API-format graph; returns its prompt_id (raises ComfyError if refused)."""
        body = {"prompt": prompt, "client_id": self.client_id}
        answer = json.loads(self._request("/prompt", body))
        if answer.get("node_errors"):
            raise ComfyError(json.dumps(answer["node_errors"], indent=1))
        return answer["prompt_id"]

    def run(self, prompt: dict) -> RunResult:
        """Queue ``prompt``, follow its websocket events until it ends, return events + history.

        Raises ComfyError with the server's exception text on ``execution_error``.
        """
        import websocket  # websocket-client; imported here so the package does not need it

        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        socket = websocket.create_connection(ws_url, timeout=self.timeout)
        events: list[dict] = []
        try:
            prompt_id = self.queue(prompt)
            while True:
                message = socket.recv()
                if not isinstance(message, str):
                    continue  # binary preview frames
                event = json.loads(message)
                data = event.get("data", {})
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                events.append(event)
                if event["type"] == "execution_error":
                    raise ComfyError(
                        f"{data.get('node_type')} (node {data.get('node_id')}): "
                        f"{data.get('exception_type')}: {data.get('exception_message')}"
                    )
                if event["type"] == "execution_success":
                    break
        finally:
            socket.close()
        return RunResult(prompt_id, events, self.history(prompt_id))

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
