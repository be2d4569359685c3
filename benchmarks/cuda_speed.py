"""Inference speed of the shipped models on a CUDA GPU (needs one; not part of the test suite).

    python benchmarks/cuda_speed.py [--sizes 720p,1080p] [--repeats 5]

Times ``Deblurrer.run_windows`` as ``deblur video`` drives it on CUDA (auto precision: fp16,
batches of 4 windows, pinned host copies; the call returns once the results are on the host),
so the numbers include the host-device copies but not decoding or encoding. Prints one line
per model and size: ms per frame, frames per second and the network's achieved TFLOP/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from deblur_cli.engine import Deblurrer
from deblur_cli.weights import load_model

SIZES = {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920)}


def frames_per_second(engine: Deblurrer, height: int, width: int, repeats: int) -> float:
    """Best of ``repeats`` timed batches after two warm-ups (cuDNN picks its kernels there)."""
    rng = np.random.default_rng(0)
    windows = rng.random((engine.batch_size, engine.window, height, width), dtype=np.float32)
    for _ in range(2):
        engine.run_windows(windows)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.run_windows(windows)
        times.append(time.perf_counter() - start)
    print(f"    median {statistics.median(times) / engine.batch_size * 1e3:.1f} ms/frame")
    return engine.batch_size / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dblrnet-fast,dblrnet")
    parser.add_argument("--sizes", default="720p,1080p")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    for name in args.models.split(","):
        model = load_model(name)
        engine = Deblurrer(model, device="cuda")
        for size in args.sizes.split(","):
            height, width = SIZES[size]
            fps = frames_per_second(engine, height, width, args.repeats)
            tflops = 2 * model.macs_per_pixel() * height * width * fps / 1e12
            label = f"{name} {size} {engine.precision} batch {engine.batch_size}"
            print(f"{label}: {1e3 / fps:.1f} ms/frame, {fps:.1f} frames/s, {tflops:.1f} TFLOP/s")


if __name__ == "__main__":
    main()
