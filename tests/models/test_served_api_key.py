"""The served backend's API key: sent as a bearer token, and never in runs.config, errors or logs."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reer.settings import ModelSpec, ServedConfig, Settings
from tests.conftest import HOME
from tests.models.test_served_backend import answer_json

KEY = "sk-test-5ecret-key"


class RecordingServer:
    """A local server answering /v1/models (or 401 to every request) and recording each Authorization header."""

    def __init__(self, status: int = 200) -> None:
        self.headers: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                owner.headers.append(self.headers.get("Authorization"))
                body = {"data": [{"id": "SmolLM2-135M-Instruct"}]} if status == 200 else {"error": "no key"}
                answer_json(self, status, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_the_key_is_kept_out_of_the_settings_dump_and_repr(monkeypatch):
    monkeypatch.setenv("REER_SERVED__API_KEY", KEY)
    settings = Settings()
    assert settings.served.api_key.get_secret_value() == KEY
    dumped = json.dumps(settings.model_dump(mode="json"))  # what the run row stores as runs.config
    assert KEY not in dumped and KEY not in repr(settings) and KEY not in str(settings.model_spec("generator"))
    assert settings.model_dump(mode="json")["served"]["api_key"] == "**********"


def test_credentials_in_a_url_are_redacted():
    from reer.models.served import redact_url

    assert redact_url("http://user:pa55@host:8000/v1") == "http://***@host:8000/v1"
    assert redact_url("https://token@host") == "https://***@host"
    assert redact_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000"


@pytest.mark.model  # the tokenizer comes from the shipped model's folder
def test_the_key_is_sent_as_a_bearer_token_and_stays_out_of_errors():
    from reer.models.loading import load_model
    from reer.models.served import ServedRequestRejected

    server = RecordingServer()
    try:
        spec = ModelSpec(
            backend="served", url=f"http://127.0.0.1:{server.port}", home=HOME, served=ServedConfig(api_key=KEY)
        )
        model = load_model(spec)
        model.close()
        assert server.headers == [f"Bearer {KEY}"]
    finally:
        server.close()
    refusing = RecordingServer(status=401)
    try:
        spec = ModelSpec(
            backend="served",
            url=f"http://me:pa55word@127.0.0.1:{refusing.port}",
            home=HOME,
            served=ServedConfig(api_key=KEY, retries=0),
        )
        with pytest.raises(ServedRequestRejected) as raised:
            load_model(spec)
        assert KEY not in str(raised.value) and "pa55word" not in str(raised.value)
        assert "***@127.0.0.1" in str(raised.value)
    finally:
        refusing.close()
