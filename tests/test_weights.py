"""Weight files: round trip with config, refusal of non-safetensors, clear missing-file errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from deblur_cli.errors import ModelError
from deblur_cli.models import FAST, TINY, DBLRNet
from deblur_cli.weights import MODELS, load_model, read_metadata, resolve_weights, save_model


def test_round_trip_rebuilds_the_network_from_metadata(tmp_path: Path) -> None:
    model = DBLRNet(FAST)
    path = save_model(model, tmp_path / "fast.safetensors", step=7)
    loaded = load_model(str(path))
    assert loaded.config == FAST
    assert read_metadata(path)["step"] == "7"
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_pickle_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "evil.safetensors"
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelError, match="not a safetensors"):
        load_model(str(path))
    assert not marker.exists()


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = save_model(DBLRNet(TINY), tmp_path / "t.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        load_model(str(path))


def test_wrong_shapes_are_refused(tmp_path: Path) -> None:
    path = save_model(DBLRNet(TINY), tmp_path / "t.safetensors")
    other = save_model(DBLRNet(FAST), tmp_path / "f.safetensors")
    # Put FAST tensors under TINY's config: same keys, wrong shapes.
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(other)), str(path), metadata=read_metadata(path))
    with pytest.raises(ModelError, match="does not hold a valid model"):
        load_model(str(path))


def test_missing_file_and_unknown_name_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model file"):
        resolve_weights(str(tmp_path / "nope.safetensors"))
    with pytest.raises(ModelError, match="directory"):
        resolve_weights(str(tmp_path))


def test_uninstalled_shipped_name_names_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("deblur_cli.weights.shipped_weights_dir", lambda: tmp_path)
    with pytest.raises(ModelError, match=MODELS["dblrnet"].filename):
        resolve_weights("dblrnet")


def test_model_auto_is_the_fast_model_on_every_device() -> None:
    # Since session 18 the fast file is the better model on all four validation sets; on CUDA
    # both networks are cheap next to their host-side optical flow.
    from deblur_cli.commands.options import chosen_model

    assert chosen_model("auto") == "dblrnet-fast"
    assert chosen_model("dblrgan") == "dblrgan"


def test_the_library_default_engine_is_the_auto_model() -> None:
    # deblur_video(..., engine=None) and preview(...) run what `--model auto` would.
    from deblur_cli.api import default_engine
    from deblur_cli.commands.options import chosen_model

    name, engine = default_engine()
    assert name == chosen_model("auto")
    assert engine.config == load_model(name).config


def test_a_path_object_is_a_file_never_a_shipped_name(tmp_path: Path) -> None:
    # training/report.py and library users pass pathlib paths; "dblrnet" as a Path is a file.
    path = save_model(DBLRNet(TINY), tmp_path / "tiny.safetensors")
    assert load_model(path).config == TINY
    with pytest.raises(ModelError, match="no model file"):
        load_model(Path("dblrnet"))
