"""PromptEmbedsCheckingServer: a small HTTP server that speaks vLLM's ``/v1/completions`` for the gateway tests.

It checks every request the way vLLM documents and implements it (``prompt_embeds`` is the base64 of
``torch.save`` of one 2-D ``(sequence_length, hidden_size)`` floating-point tensor, read back with
``torch.load(weights_only=True)``; otherwise a non-empty text ``prompt``), records what it decoded, and
answers with a canned OpenAI completion (streamed as server-sent events when asked). A request that
vLLM would refuse gets vLLM's 400 error body. It runs no model.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

REPLY_PIECES = (" canned", " reply", " from", " the", " stub")


class PromptEmbedsCheckingServer:
    """``with PromptEmbedsCheckingServer(hidden_size=32, model="m") as server:`` -> ``server.url``,
    ``server.requests`` (one dict per accepted request: ``kind`` "embeds" with ``tensor``, or "text"
    with ``prompt`` and ``add_special_tokens``; plus the ``body`` without the payload)."""

    def __init__(self, *, hidden_size: int, model: str) -> None:
        self.hidden_size, self.model = hidden_size, model
        self.requests: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/completions":
                    return self._json(404, {"error": {"message": f"no route {self.path}", "type": "NotFoundError"}})
                try:
                    request = json.loads(body)
                    record = outer.check(request)
                except ValueError as exc:
                    with outer._lock:
                        outer.rejected.append(str(exc))
                    return self._json(400, {"error": {"message": str(exc), "type": "BadRequestError", "code": 400}})
                with outer._lock:
                    outer.requests.append(record)
                pieces = list(REPLY_PIECES[: request.get("max_tokens", 16)])
                finish = "length" if request.get("max_tokens", 16) <= len(REPLY_PIECES) else "stop"
                usage = {"prompt_tokens": record["prompt_tokens"], "completion_tokens": len(pieces),
                         "total_tokens": record["prompt_tokens"] + len(pieces)}
                if not request.get("stream"):
                    return self._json(200, {"id": "cmpl-stub", "object": "text_completion", "model": outer.model,
                                            "choices": [{"index": 0, "text": "".join(pieces), "finish_reason": finish}],
                                            "usage": usage})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i, piece in enumerate(pieces):
                    last = i == len(pieces) - 1
                    self._event({"id": "cmpl-stub", "object": "text_completion", "model": outer.model,
                                 "choices": [{"index": 0, "text": piece, "finish_reason": finish if last else None}]})
                if (request.get("stream_options") or {}).get("include_usage"):
                    self._event({"id": "cmpl-stub", "object": "text_completion", "model": outer.model, "choices": [],
                                 "usage": usage})
                self._event("[DONE]")
                self.wfile.write(b"0\r\n\r\n")

            def _event(self, data: Any) -> None:
                payload = f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()
                self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
                self.wfile.flush()

            def _json(self, status: int, data: Any) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def check(self, request: dict[str, Any]) -> dict[str, Any]:
        """Validate one completions request as vLLM does; raise ValueError with vLLM-like messages."""
        if request.get("model") != self.model:
            raise ValueError(f"The model `{request.get('model')}` does not exist.")
        embeds, prompt = request.get("prompt_embeds"), request.get("prompt")
        if (prompt is None or prompt == "") and not embeds:
            raise ValueError("Either prompt or prompt_embeds must be provided and non-empty.")
        if embeds and prompt not in (None, ""):
            raise ValueError("this stub expects either prompt or prompt_embeds, not both")
        summary = {k: v for k, v in request.items() if k not in ("prompt_embeds", "prompt")}
        if not embeds:
            if not isinstance(prompt, str):
                raise ValueError("this stub only takes text prompts")
            return {"kind": "text", "prompt": prompt, "add_special_tokens": request.get("add_special_tokens", True),
                    "prompt_tokens": len(prompt.split()), "body": summary}
        try:
            raw = base64.b64decode(embeds, validate=True)
        except (binascii.Error, TypeError) as exc:
            raise ValueError(f"prompt_embeds is not base64: {exc}") from None
        tensor = torch.load(io.BytesIO(raw), weights_only=True, map_location=torch.device("cpu"))
        if not isinstance(tensor, torch.Tensor):
            raise ValueError("`prompt_embeds` payload did not deserialize to a torch.Tensor.")
        tensor = tensor.to_dense()
        if tensor.dim() > 2:
            tensor = tensor.squeeze(0)
        if tensor.dim() != 2:
            raise ValueError(f"`prompt_embeds` must be a 2D tensor; got shape {tuple(tensor.shape)}.")
        if tensor.shape[1] != self.hidden_size:
            raise ValueError(f"`prompt_embeds` hidden_size {tensor.shape[1]} does not match {self.hidden_size}.")
        if tensor.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"`prompt_embeds` dtype {tensor.dtype} is not supported")
        return {"kind": "embeds", "tensor": tensor, "bytes": len(raw), "prompt_tokens": tensor.shape[0], "body": summary}

    def __enter__(self) -> "PromptEmbedsCheckingServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
