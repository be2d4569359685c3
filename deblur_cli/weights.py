"""Weights resolution: a shipped name, a file path or ``hf://owner/repo/file`` -> a DBLRNet.

Only safetensors files are read: they hold raw tensors and a JSON header, so loading one can never
execute code (a pickled ``.pt``/``.pth`` can). The network's config travels in the header's
metadata, so every file rebuilds exactly the network it was trained as.

Where a ``--model`` value comes from:

* a shipped name (``dblrnet``, ...) is always the local file in ``weights/``; it never triggers a
  download, so an offline machine behaves the same every time;
* a path is read as is;
* ``hf://owner/repo/path/file.safetensors`` goes through ``huggingface_hub.hf_hub_download`` and
  its normal cache (``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` apply).

Checksums of downloads: a download is checked against a sha256 when one is known, either written
into the spec as ``hf://owner/repo/file.safetensors#sha256=<64 hex>``, or listed in
:data:`MODELS` for the entry whose ``hf://{hf_repo}/{filename}`` the spec names. A mismatch is a
:class:`ModelError` and the bad copy is deleted from the cache, so the next attempt downloads it
again instead of failing on the same bytes forever.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deblur_cli.atomic import replaced_file
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
    "dblrnet": ModelEntry("dblrnet.safetensors", "DBLRNet, paper layers, content loss"),
    "dblrgan": ModelEntry("dblrgan.safetensors", "DBLRGAN, adversarial fine-tune of dblrnet"),
    "dblrnet-fast": ModelEntry(
        "dblrnet-fast.safetensors",
        "32-channel, 6-block preset with aligned neighbours, ~12x fewer FLOPs (the default)",
    ),
}
# The default everywhere (``--model auto``): the fast preset. On a CPU it is 8-17x faster than the
# paper-size model; since session 18 it is also the better model on all four validation sets
# (weights/MODEL_CARD.md), so on CUDA, where both networks cost little next to the host-side
# optical flow (benchmarks/RESULTS.md), it is the better choice too. Session 18 ran it on a lent
# H200: fp16 output within 70 dB PSNR of the CPU's fp32 (tests/test_cuda.py).
DEFAULT_MODEL = "dblrnet-fast"
AUTO_MODEL = "auto"


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


def parse_hub_spec(spec: str) -> tuple[str, str, str | None]:
    """``hf://owner/repo/path/file.safetensors[#sha256=HEX]`` -> (repo_id, filename, sha256)."""
    body, _, fragment = spec[len(HF_PREFIX) :].partition("#")
    expected = None
    if fragment:
        key, _, value = fragment.partition("=")
        if key != "sha256" or not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ModelError(f"expected #sha256=<64 hex digits> after the file, got #{fragment}")
        expected = value.lower()
    parts = body.split("/")
    if len(parts) < 3 or not parts[-1].endswith(".safetensors") or "" in parts:
        raise ModelError(f"expected hf://owner/repo/file.safetensors, got {spec}")
    return "/".join(parts[:2]), "/".join(parts[2:]), expected


def listed_sha256(repo_id: str, filename: str) -> str | None:
    """The checksum :data:`MODELS` lists for this hub file, if any entry names it."""
    for entry in MODELS.values():
        if (entry.hf_repo, entry.filename) == (repo_id, filename) and entry.sha256:
            return entry.sha256.lower()
    return None


def _evict(path: Path) -> None:
    """Delete a cached download (the snapshot link and the blob it points to)."""
    for target in {path.resolve(), path}:
        with contextlib.suppress(OSError):
            target.unlink()


def download_from_hub(spec: str, sha256: str | None = None) -> Path:
    """``hf://owner/repo/path/file.safetensors`` -> a local path via the Hugging Face cache.

    The file is checked against ``sha256``, else the spec's ``#sha256=``, else the model table.
    """
    from huggingface_hub import hf_hub_download

    repo_id, filename, in_spec = parse_hub_spec(spec)
    expected = sha256 or in_spec or listed_sha256(repo_id, filename)
    try:
        with _quiet_hub():
            path = Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as exc:  # offline, 404, auth: all become one actionable line
        from huggingface_hub import constants

        url = f"{constants.ENDPOINT}/{repo_id}/resolve/main/{filename}"
        raise ModelError(
            f"cannot get {filename} from the hub repo {repo_id} ({_hub_reason(exc)}); "
            f"download {url} and pass its path with --model PATH"
        ) from exc
    if expected and (actual := sha256_of(path)) != expected:
        _evict(path)
        raise ModelError(
            f"checksum mismatch for {spec.partition('#')[0]}: expected sha256 {expected}, "
            f"got {actual}; the download was deleted from the cache, try again"
        )
    return path


def _hub_reason(exc: BaseException) -> str:
    """Why a download failed, in a few words (the hub's own messages span several lines)."""
    from huggingface_hub import constants, errors

    if constants.HF_HUB_OFFLINE or isinstance(exc, errors.OfflineModeIsEnabled):
        return "offline (HF_HUB_OFFLINE is set) and not in the local cache"
    if isinstance(exc, errors.GatedRepoError):
        return "the repo is gated: accept its terms on the hub and log in with `hf auth login`"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return "no such repo, or it is private (log in with `hf auth login`)"
    if isinstance(exc, errors.RevisionNotFoundError):
        return "no such revision"
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return "no such file in the repo"
    if isinstance(exc, errors.LocalEntryNotFoundError):
        return f"cannot reach {constants.ENDPOINT} and the file is not in the local cache"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:120]}" if first else type(exc).__name__


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """Keep the hub's retry warnings off stderr: a failure is reported once, in one line."""
    from huggingface_hub.utils import logging as hub_logging

    level = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        yield
    finally:
        hub_logging.set_verbosity(level)


def resolve_weights(spec: str | Path = DEFAULT_MODEL) -> Path:
    """Turn a ``--model`` value into a local safetensors path, downloading only for hf://.

    A ``Path`` is always a file path, never a shipped name: ``Path("dblrnet")`` is the file."""
    if isinstance(spec, Path):
        return local_weights(spec)
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
    return local_weights(Path(spec))


def local_weights(spec: Path) -> Path:
    """A weight file on disk, or a one-line error that says what to give instead."""
    path = spec.expanduser()
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


def load_model(spec: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu") -> DBLRNet:
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
        k: (v.detach().float() if v.is_floating_point() else v).cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    path = Path(path)
    with replaced_file(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path
