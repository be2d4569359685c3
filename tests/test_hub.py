"""``--model hf://...``: real ``hf_hub_download`` calls against a loopback hub, its cache, offline
mode and sha256 checks.

The server answers the hub's resolve endpoint (``/{repo}/resolve/{revision}/{file}``) like the real
one does for a file: HEAD then GET, with ETag, X-Repo-Commit and Content-Length; unknown files get
a 404 with ``X-Error-Code: EntryNotFound``. huggingface_hub reads HF_ENDPOINT and HF_HUB_CACHE once,
at import, so in-process tests point its ``constants`` at the server and a temporary cache; the
offline tests run the CLI in a fresh process with the real environment variables instead.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_clip

from deblur_cli import weights
from deblur_cli.errors import ModelError
from deblur_cli.weights import MODELS, ModelEntry, load_model

REPO = Path(__file__).resolve().parent.parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HUB_FILE = "deblur-test/tiny/model/tiny.safetensors"  # repo deblur-test/tiny, file in a subfolder


@dataclass
class LoopbackHub:
    """A tiny HTTP server holding ``files`` ({"owner/repo/path": bytes}) and logging requests."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                repo_and_file = self.path.replace("/resolve/main/", "/", 1)
                data = hub.files.get(repo_and_file.lstrip("/"))
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHub]:
    """A running loopback hub that huggingface_hub (in this process) downloads from."""
    from huggingface_hub import constants

    state = LoopbackHub()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(constants, "ENDPOINT", state.url)
    template = state.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_blobs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "hub-cache").rglob("blobs/*"))


def test_download_through_the_cli_then_from_the_cache(hub, tmp_path, tiny_model_path) -> None:
    from deblur_cli.cli import main

    hub.files[HUB_FILE] = tiny_model_path.read_bytes()
    source = make_clip(tmp_path / "in.mp4", frames=2)
    args = ["video", str(source), "--model", f"hf://{HUB_FILE}", "--device", "cpu", "-q"]

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "in_deblurred.mp4").stat().st_size > 0
    assert ("GET", "/deblur-test/tiny/resolve/main/model/tiny.safetensors") in hub.requests
    [blob] = cached_blobs(tmp_path)
    assert blob.read_bytes() == tiny_model_path.read_bytes()

    # A second load revalidates with HEAD only: the file itself comes from the cache.
    hub.requests.clear()
    load_model(f"hf://{HUB_FILE}")
    assert [method for method, _ in hub.requests] == ["HEAD"]


def test_sha256_in_the_spec_is_checked(hub, tmp_path, tiny_model_path) -> None:
    data = tiny_model_path.read_bytes()
    hub.files[HUB_FILE] = data
    assert load_model(f"hf://{HUB_FILE}#sha256={sha(data)}").config.width > 0

    hub.files[HUB_FILE] = data[:-1] + bytes([data[-1] ^ 1])  # one bit changed on the server
    for blob in cached_blobs(tmp_path):
        blob.unlink()  # so the tampered copy is downloaded
    with pytest.raises(ModelError, match="checksum mismatch for hf://deblur-test/tiny") as error:
        load_model(f"hf://{HUB_FILE}#sha256={sha(data)}")
    assert sha(hub.files[HUB_FILE]) in str(error.value) and "\n" not in str(error.value)
    assert cached_blobs(tmp_path) == []  # evicted: the next try downloads again


def test_sha256_listed_in_the_model_table_is_checked(
    hub, tmp_path, tiny_model_path, monkeypatch
) -> None:
    genuine = tiny_model_path.read_bytes()
    entry = ModelEntry(
        "model/tiny.safetensors", "test", hf_repo="deblur-test/tiny", sha256=sha(genuine)
    )
    monkeypatch.setitem(MODELS, "tiny-test", entry)

    hub.files[HUB_FILE] = genuine
    load_model(f"hf://{HUB_FILE}")

    hub.files[HUB_FILE] = genuine + b"\0"  # tampered: still a loadable safetensors file
    for blob in cached_blobs(tmp_path):
        blob.unlink()
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(f"hf://{HUB_FILE}")

    # The table's sha256 is for that hub file only; a shipped name never downloads.
    monkeypatch.setattr(weights, "shipped_weights_dir", lambda: tmp_path / "nothing-here")
    hub.requests.clear()
    with pytest.raises(ModelError, match="is not installed"):
        load_model("tiny-test")
    assert hub.requests == []


def test_a_malformed_sha256_fragment_is_refused(hub) -> None:
    with pytest.raises(ModelError, match="#sha256=<64 hex digits>"):
        load_model(f"hf://{HUB_FILE}#sha256=abc")
    assert hub.requests == []


def test_missing_file_on_the_hub_names_it(hub) -> None:
    with pytest.raises(ModelError) as error:
        load_model("hf://deblur-test/tiny/absent.safetensors")
    message = str(error.value)
    assert "absent.safetensors" in message and "no such file in the repo" in message
    assert "--model PATH" in message and "\n" not in message


def test_unreachable_endpoint_is_one_line(tmp_path, monkeypatch) -> None:
    """Nothing listens on the port: after the hub's own retries (waits skipped here), one line."""
    import huggingface_hub.utils._http as hub_http
    from huggingface_hub import constants

    closed = "http://127.0.0.1:9"  # the discard port; nothing listens on loopback
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        closed + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(hub_http.time, "sleep", lambda seconds: None)
    with pytest.raises(ModelError) as error:
        load_model(f"hf://{HUB_FILE}")
    message = str(error.value)
    assert "tiny.safetensors" in message and "cannot reach http://127.0.0.1:9" in message
    assert "--model PATH" in message and "\n" not in message


def run_offline(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    """The CLI in a fresh process whose huggingface_hub reads the offline environment."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # were anything still fetched, it would fail
    command = [sys.executable, "-m", "deblur_cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_offline_without_a_cached_copy_says_what_to_get(tmp_path) -> None:
    source = make_clip(tmp_path / "in.mp4", frames=2)
    done = run_offline(["video", str(source), "--model", f"hf://{HUB_FILE}"], tmp_path / "empty")
    assert done.returncode == 6, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(
        "error: cannot get model/tiny.safetensors from the hub repo deblur-test/tiny"
    )
    assert "offline (HF_HUB_OFFLINE is set)" in line and "--model PATH" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_offline_with_a_cached_copy_works(hub, tmp_path, tiny_model_path) -> None:
    hub.files[HUB_FILE] = tiny_model_path.read_bytes()
    load_model(f"hf://{HUB_FILE}")  # fills the cache from the loopback hub
    hub.requests.clear()
    source = make_clip(tmp_path / "in.mp4", frames=2)
    args = ["video", str(source), "--model", f"hf://{HUB_FILE}", "--device", "cpu", "-q"]
    done = run_offline(args, tmp_path / "hub-cache")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "in_deblurred.mp4").stat().st_size > 0 and hub.requests == []
