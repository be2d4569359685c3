"""Dataset readers on tiny on-disk fixtures in each real layout, and the training windows."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deblur_cli import datasets
from deblur_cli.color import rgb_to_luma
from deblur_cli.datasets import (
    DVD_TEST_VIDEOS,
    NeighbourAugment,
    Sequence,
    WindowDataset,
    find_sequences,
    load_luma,
    window_indices,
)
from deblur_cli.errors import DatasetError

H, W = 24, 32


def write_frames(folder: Path, names: list[str], seed: int, value: int | None = None) -> None:
    """Random BGR frames (or constant ``value`` frames) written with OpenCV."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k, name in enumerate(names):
        if value is None:
            image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        else:
            image = np.full((H, W, 3), value + k, np.uint8)
        assert cv2.imwrite(str(folder / name), image)


def make_dvd(root: Path, videos: list[str], frames: int = 3) -> Path:
    for v, video in enumerate(videos):
        base = root / "quantitative_datasets" / video
        names = [f"{i:05d}.jpg" for i in range(frames)]
        write_frames(base / "input", names, seed=v)
        write_frames(base / "GT", names, seed=100 + v)
    return root


def test_load_luma_rgb_gray_16bit_alpha(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])  # OpenCV stores BGR
    expected = rgb_to_luma(rgb.astype(np.float32) / 255)
    luma = load_luma(tmp_path / "c.png")
    assert luma.dtype == np.float32 and luma.shape == (H, W)
    np.testing.assert_allclose(luma, expected, atol=1e-6)

    gray = np.arange(H * W, dtype=np.uint16).reshape(H, W) * 50
    cv2.imwrite(str(tmp_path / "g16.png"), gray)
    np.testing.assert_allclose(load_luma(tmp_path / "g16.png"), gray / 65535, atol=1e-7)

    bgra = np.dstack([rgb[..., ::-1], np.zeros((H, W), np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    np.testing.assert_allclose(load_luma(tmp_path / "a.png"), expected, atol=1e-6)


def test_load_luma_unreadable(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError):
        load_luma(tmp_path / "x.png")


def test_window_indices_repeat_edges() -> None:
    assert window_indices(0, 3, 5) == [0, 0, 0, 1, 2]
    assert window_indices(2, 3, 5) == [0, 1, 2, 2, 2]
    assert window_indices(5, 10, 5) == [3, 4, 5, 6, 7]
    assert window_indices(0, 1, 3) == [0, 0, 0]
    with pytest.raises(IndexError):
        window_indices(3, 3, 5)


def test_dvd_splits(tmp_path: Path) -> None:
    root = make_dvd(tmp_path, ["IMG_0030", "IMG_0037", "IMG_0100"])
    test = datasets.dvd_sequences(root, "test")
    assert [s.name for s in test] == ["IMG_0030", "IMG_0037"]
    assert [s.name for s in datasets.dvd_sequences(root, "train")] == ["IMG_0100"]
    assert len(datasets.dvd_sequences(root, "all")) == 3
    seq = test[0]
    assert len(seq) == 3 and seq.sharp is not None
    assert [p.name for p in seq.blurry] == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert all(p.parent.name == "GT" for p in seq.sharp)
    assert set(DVD_TEST_VIDEOS) >= {"IMG_0030", "IMG_0037"}


def test_dvd_own_dataset_every_split_is_everything(tmp_path: Path) -> None:
    root = make_dvd(tmp_path, ["clip_000", "clip_001"])
    for split in ("test", "train", "all"):
        assert [s.name for s in find_sequences("dvd", root, split)] == ["clip_000", "clip_001"]
    # The quantitative_datasets folder itself is accepted as root.
    assert len(datasets.dvd_sequences(root / "quantitative_datasets")) == 2


def test_gopro_layout_and_gamma(tmp_path: Path) -> None:
    for split, seqs in (("train", ["GOPR0372_07_00"]), ("test", ["GOPR0384_11_00", "GOPR0410"])):
        for k, seq in enumerate(seqs):
            names = [f"{i:06d}.png" for i in range(4)]
            for sub in ("blur", "blur_gamma", "sharp"):
                write_frames(tmp_path / split / seq / sub, names, seed=k)
    test = datasets.gopro_sequences(tmp_path)
    assert [s.name for s in test] == ["GOPR0384_11_00", "GOPR0410"]
    assert test[0].blurry[0].parent.name == "blur"
    gamma = datasets.gopro_sequences(tmp_path, "test", gamma=True)
    assert gamma[0].blurry[0].parent.name == "blur_gamma"
    assert [s.name for s in find_sequences("gopro", tmp_path, "all")] == [
        "train/GOPR0372_07_00",
        "test/GOPR0384_11_00",
        "test/GOPR0410",
    ]


def test_kitti_layout(tmp_path: Path) -> None:
    for camera in ("image_2", "image_3"):
        for scene in (0, 1):
            names = [f"{scene:06d}_{t}.png" for t in ("09", "10", "11")]
            write_frames(tmp_path / "blur image" / camera, names, seed=scene)
            write_frames(tmp_path / "clean image" / camera, names, seed=50 + scene)
    seqs = find_sequences("kitti", tmp_path)
    assert [s.name for s in seqs] == [
        "image_2/000000",
        "image_2/000001",
        "image_3/000000",
        "image_3/000001",
    ]
    assert [p.name for p in seqs[1].blurry] == ["000001_09.png", "000001_10.png", "000001_11.png"]
    assert seqs[1].sharp is not None and seqs[1].sharp[0].parts[-3] == "clean image"


def test_kitti_missing_clean_frame(tmp_path: Path) -> None:
    write_frames(tmp_path / "blur image" / "image_2", ["000000_10.png"], seed=0)
    (tmp_path / "clean image" / "image_2").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"000000_10\.png"):
        datasets.kitti_sequences(tmp_path)


def test_folder_layouts(tmp_path: Path) -> None:
    write_frames(tmp_path / "a" / "blurry", ["1.png", "2.png", "10.png"], seed=0)
    write_frames(tmp_path / "a" / "gt", ["1.png", "2.png", "10.png"], seed=1)
    write_frames(tmp_path / "b" / "input", ["x.png"], seed=2)  # no ground truth
    seqs = datasets.folder_sequences(tmp_path)
    assert [s.name for s in seqs] == ["a", "b"]
    assert [p.name for p in seqs[0].blurry] == ["1.png", "2.png", "10.png"]  # natural order
    assert seqs[1].sharp is None

    single = tmp_path / "single"
    write_frames(single / "blur", ["f0.png", "f1.png"], seed=3)
    write_frames(single / "sharp", ["f0.png", "f1.png"], seed=4)
    (seq,) = find_sequences("folder", single)
    assert seq.name == "single" and seq.sharp is not None and len(seq) == 2


def test_unpaired_folder_is_an_error(tmp_path: Path) -> None:
    write_frames(tmp_path / "blur", ["0.png", "1.png"], seed=0)
    write_frames(tmp_path / "sharp", ["0.png"], seed=0)
    with pytest.raises(DatasetError, match="pair"):
        datasets.folder_sequences(tmp_path)


@pytest.mark.parametrize("layout", ["dvd", "gopro", "kitti", "folder"])
def test_missing_dataset_names_layout_and_source(tmp_path: Path, layout: str) -> None:
    with pytest.raises(DatasetError) as info:
        find_sequences(layout, tmp_path / "nowhere")
    message = str(info.value)
    assert datasets.EXPECTED_LAYOUT[layout] in message
    assert "\n" not in message
    if layout != "folder":
        assert "CVPR 2017" in message


@pytest.mark.parametrize("layout", ["dvd", "gopro", "kitti", "folder"])
def test_malformed_dataset(tmp_path: Path, layout: str) -> None:
    write_frames(tmp_path / "something", ["0.png"], seed=0)
    with pytest.raises(DatasetError, match="expected"):
        find_sequences(layout, tmp_path)


def test_default_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEBLUR_DATA", str(tmp_path))
    assert datasets.default_data_root("kitti") == tmp_path / "kitti"
    monkeypatch.delenv("DEBLUR_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    root = datasets.default_data_root("dvd")
    assert root.name == "dvd" and root.parent.name == "deblur"


def ramp_sequence(folder: Path, count: int, name: str = "s") -> Sequence:
    """Gray frames whose value encodes the frame index: 10*k (blurry), 10*k + 5 (sharp)."""
    folder.mkdir(parents=True, exist_ok=True)
    blurry, sharp = [], []
    yy, xx = np.mgrid[0:H, 0:W]
    for k in range(count):
        for kind, offset, paths in (("b", 0, blurry), ("s", 5, sharp)):
            # A gradient so that flips and crops are visible; frame index in the mean.
            image = (10 * k + offset + (yy + 2 * xx) % 7).astype(np.uint8)
            path = folder / f"{name}_{kind}{k}.png"
            cv2.imwrite(str(path), image)
            paths.append(path)
    return Sequence(name, blurry, sharp)


def test_window_dataset_shapes_and_edges(tmp_path: Path) -> None:
    seqs = [ramp_sequence(tmp_path, 3, "a"), ramp_sequence(tmp_path, 4, "b")]
    data = WindowDataset(seqs, frames=5, crop=None, augment=False, progress=False)
    assert len(data) == 7
    blurry, sharp = data[0]
    assert blurry.shape == (1, 5, H, W) and sharp.shape == (1, H, W)
    assert blurry.dtype == torch.float32 and sharp.dtype == torch.float32
    # Edge repetition: frame 0 of a 3-frame sequence -> frames [0, 0, 0, 1, 2].
    frame_index = (blurry[0, :, 0, 0] * 255).round().int() // 10
    assert frame_index.tolist() == [0, 0, 0, 1, 2]
    assert int((sharp[0, 0, 0] * 255).round()) == 5
    # Item 3 is frame 0 of the second sequence.
    b3, _ = data[3]
    assert ((b3[0, :, 0, 0] * 255).round().int() // 10).tolist() == [0, 0, 0, 1, 2]
    with pytest.raises(IndexError):
        data[7]


def test_window_dataset_cache_matches_files(tmp_path: Path) -> None:
    rgb_dir = tmp_path / "rgb"
    write_frames(rgb_dir / "blur", ["0.png", "1.png", "2.png"], seed=0)
    write_frames(rgb_dir / "sharp", ["0.png", "1.png", "2.png"], seed=1)
    seqs = datasets.folder_sequences(rgb_dir)
    cached = WindowDataset(seqs, frames=3, crop=16, progress=False)
    uncached = WindowDataset(seqs, frames=3, crop=16, cache=False)
    assert cached.cache_bytes() == 6 * H * W and uncached.cache_bytes() == 0
    torch.manual_seed(3)
    for i in range(3):
        for a, b in zip(cached[i], uncached[i], strict=True):
            assert torch.equal(a, b)
    full = WindowDataset(seqs, frames=3, crop=None, progress=False)
    np.testing.assert_allclose(full[1][1][0].numpy(), load_luma(seqs[0].sharp[1]), atol=0.5 / 255)


def test_window_dataset_augment_is_seeded(tmp_path: Path) -> None:
    data = WindowDataset([ramp_sequence(tmp_path, 5)], frames=3, crop=8, progress=False)
    torch.manual_seed(7)
    first = [data[i] for i in range(5)]
    torch.manual_seed(7)
    again = [data[i] for i in range(5)]
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(first, again, strict=True)
    )
    torch.manual_seed(8)
    other = [data[i] for i in range(5)]
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    data.set_epoch(1)
    torch.manual_seed(7)
    next_epoch = [data[i] for i in range(5)]
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, next_epoch, strict=True))
    for blurry, sharp in first:
        assert blurry.shape == (1, 3, 8, 8) and sharp.shape == (1, 8, 8)


def test_window_dataset_augment_keeps_window_and_target_aligned(tmp_path: Path) -> None:
    """Whatever crop, flip or reversal is drawn, the centre blurry plane and the sharp target
    differ by exactly the +5 offset everywhere (same geometry), and the window stays ordered
    or reversed around its centre."""
    data = WindowDataset([ramp_sequence(tmp_path, 5)], frames=5, crop=8, progress=False)
    orders = set()
    for seed in range(12):
        torch.manual_seed(seed)
        blurry, sharp = data[2]
        codes = (blurry[0] * 255).round().int()
        target = (sharp[0] * 255).round().int()
        assert torch.equal(codes[2] + 5, target)
        orders.add(tuple((codes[:, 0, 0] // 10).tolist()))
    assert orders == {(0, 1, 2, 3, 4), (4, 3, 2, 1, 0)}


def neighbour_codes(
    data: WindowDataset, index: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    blurry, sharp = data[index]
    return (blurry[0] * 255).round().int(), (sharp[0] * 255).round().int()


def test_neighbour_augment_off_changes_nothing(tmp_path: Path) -> None:
    seqs = [ramp_sequence(tmp_path, 5)]
    plain = WindowDataset(seqs, frames=5, crop=8, progress=False)
    never = NeighbourAugment(cut_prob=0.0, repeat_prob=0.0, warp_prob=0.0)
    unsettled = WindowDataset(seqs, frames=5, crop=8, progress=False, neighbours=never)
    for seed in range(4):
        for a, b in zip(
            neighbour_codes(plain, 2, seed), neighbour_codes(unsettled, 2, seed), strict=True
        ):
            assert torch.equal(a, b)


def test_neighbour_augment_repeat_and_warp_spare_centre_and_target(tmp_path: Path) -> None:
    seqs = [ramp_sequence(tmp_path, 5)]
    plain = WindowDataset(seqs, frames=5, crop=8, progress=False)
    repeat = NeighbourAugment(cut_prob=0.0, repeat_prob=1.0, warp_prob=0.0)
    repeated = WindowDataset(seqs, frames=5, crop=8, progress=False, neighbours=repeat)
    codes, target = neighbour_codes(repeated, 2, seed=0)
    assert all(torch.equal(codes[j], codes[2]) for j in range(5))
    assert torch.equal(codes[2] + 5, target)
    warp = NeighbourAugment(cut_prob=0.0, repeat_prob=0.0, warp_prob=1.0, warp_shift_px=2.0)
    warped = WindowDataset(seqs, frames=5, crop=8, progress=False, neighbours=warp)
    codes, target = neighbour_codes(warped, 2, seed=0)
    reference, _ = neighbour_codes(plain, 2, seed=0)
    assert torch.equal(codes[2], reference[2]) and torch.equal(codes[2] + 5, target)
    assert any(not torch.equal(codes[j], reference[j]) for j in (0, 1, 3, 4))


def test_neighbour_augment_cut_brings_another_clip_from_one_side(tmp_path: Path) -> None:
    """Two clips 100 code values apart: after a cut, the frames from the other clip form one
    contiguous run at one end of the window, and never include the centre."""
    here, there = ramp_sequence(tmp_path, 5, "here"), ramp_sequence(tmp_path, 5, "there")
    for path in there.blurry:
        cv2.imwrite(str(path), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) + 100)
    cut = NeighbourAugment(cut_prob=1.0, repeat_prob=0.0, warp_prob=0.0)
    data = WindowDataset([here, there], frames=5, crop=8, progress=False, neighbours=cut)
    patterns = set()
    for seed in range(40):
        codes, target = neighbour_codes(data, 2, seed)
        foreign = tuple(bool(v >= 100) for v in codes[:, 0, 0].tolist())
        assert not foreign[2] and torch.equal(codes[2] + 5, target)
        patterns.add(foreign)
    runs = {(1, 1, 0, 0, 0), (1, 0, 0, 0, 0), (0, 0, 0, 1, 1), (0, 0, 0, 0, 1)}
    assert {tuple(map(int, p)) for p in patterns} <= runs | {(0, 0, 0, 0, 0)}
    assert len({tuple(map(int, p)) for p in patterns} & runs) >= 3


def test_window_dataset_small_frames_and_workers(tmp_path: Path) -> None:
    data = WindowDataset([ramp_sequence(tmp_path, 3)], frames=3, crop=40, progress=False)
    loader = torch.utils.data.DataLoader(
        data, batch_size=2, num_workers=2, generator=torch.Generator().manual_seed(0)
    )
    batches = [b for b, _ in loader]
    assert [tuple(b.shape) for b in batches] == [(2, 1, 3, 40, 40), (1, 1, 3, 40, 40)]
    loader2 = torch.utils.data.DataLoader(
        data, batch_size=2, num_workers=2, generator=torch.Generator().manual_seed(0)
    )
    assert all(torch.equal(a, b) for a, (b, _) in zip(batches, loader2, strict=True))


def test_window_dataset_needs_ground_truth(tmp_path: Path) -> None:
    write_frames(tmp_path / "blur", ["0.png"], seed=0)
    with pytest.raises(DatasetError):
        WindowDataset(datasets.folder_sequences(tmp_path), progress=False)
