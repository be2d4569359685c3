"""Weights resolution: a shipped name, a file path or ``hf://owner/repo/file`` -> a DBLRNet.

Only safetensors files are read: they hold raw tensors and a JSON header, so loading one can never
execute code (a pickled ``.pt``/``.pth`` can). The network's config travels in the header's
metadata, so every file rebuilds exactly the network it was trained as.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deblur_cli.errors import ModelError
from deblur_cli.models import DBLRNet, DBLRNetConfig

FORMAT = "deblur-cli/1"
HF_PREFIX = "hf://"
HF_REPO = "deblur-cli/dblrnet"


@dataclass(frozen=True)
class ModelEntry:
    """A named model: the file shipped in weights/, and where the hub keeps a copy."""

    filename: str
    description: str
    hf_repo: str = HF_REPO
    sha256: str | None = None


MODELS: dict[str, ModelEntry] = {
    "dblrnet": ModelEntry("dblrnet.safetensors", "DBLRNet, content loss (default)"),
    "dblrgan": ModelEntry("dblrgan.safetensors", "DBLRGAN, adversarial fine-tune of dblrnet"),
    "dblrnet-fast": ModelEntry("dblrnet-fast.safetensors", "32-channel, 6-block CPU preset"),
}
DEFAULT_MODEL = "dblrnet"


def shipped_weights_dir() -> Path:
    """Where the wheel (or the source checkout) keeps the shipped weight files."""
    try:
        return Path(str(resources.files("deblur_cli._weights")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "weights"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None) -> None:
    """Raise ModelError when a file does not match the checksum the model table lists."""
    if expected and (actual := sha256_of(path)) != expected:
        raise ModelError(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}")


def download_from_hub(spec: str, sha256: str | None = None) -> Path:
    """``hf://owner/repo/path/file.safetensors`` -> a local path via the Hugging Face cache."""
    from huggingface_hub import hf_hub_download

    parts = spec[len(HF_PREFIX) :].split("/")
    if len(parts) < 3 or not parts[-1].endswith(".safetensors"):
        raise ModelError(f"expected hf://owner/repo/file.safetensors, got {spec}")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        path = Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as exc:  # offline, 404, auth: all become one actionable line
        url = f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
        raise ModelError(
            f"cannot get {filename} from the hub repo {repo_id} ({type(exc).__name__}); "
            f"download {url} and pass its path with --model PATH"
        ) from exc
    verify_sha256(path, sha256)
    return path


def resolve_weights(spec: str = DEFAULT_MODEL) -> Path:
    """Turn a ``--model`` value into a local safetensors path, downloading only for hf://."""
    if spec.startswith(HF_PREFIX):
        return download_from_hub(spec)
    if spec in MODELS:
        entry = MODELS[spec]
        path = shipped_weights_dir() / entry.filename
        if path.is_file():
            return path
        raise ModelError(
            f"model '{spec}' is not installed: put {entry.filename} in {path.parent} "
            f"(from hf://{entry.hf_repo}/{entry.filename}) or pass --model PATH"
        )
    path = Path(spec).expanduser()
    if path.is_dir():
        raise ModelError(f"--model {spec} is a directory; give a .safetensors file")
    if not path.is_file():
        names = ", ".join(MODELS)
        raise ModelError(
            f"no model file {spec}; use a path, hf://owner/repo/file, or one of: {names}"
        )
    return path


def read_metadata(path: Path) -> dict[str, str]:
    """The safetensors header metadata, read without loading any tensor."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 2 <= size <= 100 * 2**20:
                raise ValueError("implausible header size")
            header = json.loads(handle.read(size))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not a safetensors weight file ({exc})") from exc
    return dict(header.get("__metadata__") or {})


def load_model(spec: str = DEFAULT_MODEL, device: str | torch.device = "cpu") -> DBLRNet:
    """Load a generator from a name, path or hf:// spec; the network is built from the file."""
    path = resolve_weights(spec)
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise ModelError(f"{path} is not a deblur weight file (no '{FORMAT}' config in its header)")
    try:
        config = DBLRNetConfig.from_json(metadata["config"])
        model = DBLRNet(config)
        state = load_file(str(path), device="cpu")
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, ValueError, TypeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} does not hold a valid model: {first_line}") from exc
    return model.eval().to(device)


def save_model(model: DBLRNet, path: Path, **info: str | int | float) -> Path:
    """Write a generator and its config atomically (temporary file, then rename)."""
    metadata = {"format": FORMAT, "config": model.config.to_json()}
    metadata.update({key: str(value) for key, value in info.items()})
    state = {
        k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous()
        for k, v in model.state_dict().items()
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
