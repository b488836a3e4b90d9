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
from collections.abc import Callable


class ComfyError(RuntimeError):
    """The server refused a prompt or reported an execution error (its text is the message)."""


class ComfyUnreachable(ComfyError):
    """Nothing answered at the server URL (the message names it)."""


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
            where = "ComfyUI refused the prompt" if route == "/prompt" else route
            raise ComfyError(f"{where} (HTTP {error.code}): {refusal_text(text)}") from None
        except TimeoutError:
            raise ComfyError(f"{route}: ComfyUI at {self.url} did not answer within "
                             f"{self.timeout:g} s") from None
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
            on_event: Callable[[dict], None] | None = None) -> RunResult:
        """Queue ``prompt``, follow its websocket events until it ends, return events + history.

        ``on_event`` sees each event of this prompt as it arrives (for a progress line).
        Raises ComfyError with the server's exception text on ``execution_error``.
        """
        import websocket  # websocket-client; imported here so the package does not need it

        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        try:
            socket = websocket.create_connection(ws_url, timeout=self.timeout)
        except (OSError, websocket.WebSocketException) as error:
            raise ComfyUnreachable(f"cannot open the websocket of ComfyUI at {ws_url}: {error}"
                                   ) from None
        events: list[dict] = []
        try:
            prompt_id = self.queue(prompt, extra_data)
            while True:
                message = socket.recv()
                if not isinstance(message, str):
                    continue  # binary preview frames
                event = json.loads(message)
                data = event.get("data", {})
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                events.append(event)
                if on_event is not None:
                    on_event(event)
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
