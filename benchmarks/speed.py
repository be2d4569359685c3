"""Inference speed and memory of the deblur engine on this machine (not part of the test suite).

    python benchmarks/speed.py [--quick] [--sections network,memory,e2e,split] [--compile]

Prints, per network config (paper, fast) and frame size: ms per frame, GFLOP/s and the share of
the machine's own ceiling (bf16 and fp32 matmul rates measured in the same run, so a busy
machine lowers both), for each precision/layout variant; the error of each variant against the
fp32 eager reference (Y, 8-bit units); peak RSS for 1080p with default settings and for 100 vs
1000 streamed frames; end-to-end `deblur_video` fps vs network-only fps; and (section ``split``,
not run by default) one file in one process vs split by time across 2 torchrun ranks.

Memory is measured in fresh child processes from the kernel's RSS high-water mark (VmHWM):
Python-level tracers do not see torch's allocations.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deblur_cli.engine import Deblurrer, InferenceNet, ReferenceNet
from deblur_cli.models import FAST, PAPER, DBLRNet, DBLRNetConfig

CONFIGS = {"paper": PAPER, "fast": FAST}
SIZES = {"320x180": (180, 320), "640x360": (360, 640), "1280x720": (720, 1280)}
NO_TILING = 1 << 50
Runner = Callable[[np.ndarray], np.ndarray]


# -- models and inputs ---------------------------------------------------------------------------


def trained_like(config: DBLRNetConfig, sample: np.ndarray, seed: int = 0) -> DBLRNet:
    """A network with non-trivial BatchNorm statistics and a real-sized correction.

    A fresh init outputs ~ its centre frame (the last layer starts near zero), which would make
    any precision look exact. Here BN statistics and affines are randomised and the last layer
    is scaled so the correction (output - centre) has an RMS of 0.1 (~25 levels of 8-bit Y) on
    the benchmark input: errors are then measured on an output that depends on every layer.
    """
    torch.manual_seed(seed)
    model = DBLRNet(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
        torch.nn.init.kaiming_uniform_(model.l35.weight)
        centre = torch.from_numpy(sample[:, config.frames // 2])
        correction = model(torch.from_numpy(sample).unsqueeze(1))[:, 0] - centre
        scale = 0.1 / float(correction.pow(2).mean().sqrt())
        model.l35.weight.mul_(scale)
        model.l35.bias.mul_(scale)
    return model


def image_like(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """1 x T x H x W: smooth random texture plus noise, shifted a little per frame."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((frames, height // 8 + 2, width // 8 + 2), dtype=np.float32)
    smooth = coarse.repeat(8, 1).repeat(8, 2)[:, :height, :width]
    noise = rng.normal(0, 0.05, (frames, height, width)).astype(np.float32)
    return np.clip(0.8 * smooth + 0.1 + noise, 0, 1)[None]


# -- the machine's ceiling -----------------------------------------------------------------------


def matmul_gflops(dtype: torch.dtype, n: int, repeats: int = 5) -> tuple[float, float]:
    """Best-of-N dense matmul rate, by the wall clock and by CPU time (see ``timed``): the
    practical compute ceiling for this dtype right now."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    calls = [timed(lambda: a @ b) for _ in range(repeats)]
    flop = 2 * n**3 / 1e9
    return flop / min(w for w, _ in calls), flop / min(c for _, c in calls)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds / threads) of one call.

    On a shared machine the wall clock counts time other processes held our cores; CPU time
    per thread counts only the time we ran (plus oneDNN's spin-waits), an estimate of the
    wall time on an idle machine. Both are reported; ratios use like with like.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, (time.process_time() - cpu) / torch.get_num_threads()


# -- network variants ----------------------------------------------------------------------------


def module_runner(net: torch.nn.Module, unsqueeze: bool = False) -> Runner:
    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        y = net(t.unsqueeze(1))[:, 0] if unsqueeze else net(t)
        return y.float().numpy()

    return run


def variants(model: DBLRNet, compile_too: bool) -> dict[str, Callable[[], Runner]]:
    """Name -> builder of a runner; built lazily so each holds memory only while measured."""

    def plain_bf16() -> Runner:
        return module_runner(InferenceNet(model, torch.bfloat16).eval())

    def engine(precision: str) -> Callable[[], Runner]:
        return lambda: Deblurrer(model, "cpu", precision, memory_budget=NO_TILING).run_windows

    found: dict[str, Callable[[], Runner]] = {
        "fp32 eager NCHW (reference)": lambda: module_runner(copy.deepcopy(model), True),
        "fp32 folded channels-last": lambda: module_runner(ReferenceNet(model, torch.float32)),
        "bf16 autocast folded CL (old default)": lambda: module_runner(
            ReferenceNet(model, torch.bfloat16)
        ),
        "fp32 InferenceNet oneDNN": engine("fp32"),
        "bf16 InferenceNet conv2d": plain_bf16,
        "bf16 InferenceNet oneDNN (default)": lambda: Deblurrer(model, "cpu", "auto").run_windows,
    }
    if compile_too:
        found["bf16 InferenceNet torch.compile"] = lambda: compiled(model)
    return found


def compiled(model: DBLRNet) -> Runner:
    engine = Deblurrer(model, "cpu", "bf16", memory_budget=NO_TILING, compile=True)
    engine._frames_done = 1 << 30  # skip the eager warm-up frames: measure the compiled path
    return engine.run_windows


SLOW = ("fp32 folded channels-last", "fp32 InferenceNet oneDNN", "bf16 InferenceNet conv2d")
EAGER = "fp32 eager NCHW (reference)"


@dataclass
class Row:
    config: str
    size: str
    variant: str
    best: float
    median: float
    best_cpu: float
    gflops: float
    gflops_cpu: float
    ceiling_bf16: float
    ceiling_fp32: float
    ceiling_bf16_cpu: float
    max_err: float | None
    mean_err: float | None


def measure(
    run: Runner, x: np.ndarray, repeats: int, budget_s: float
) -> tuple[float, float, float]:
    """(best wall, median wall, best CPU-per-thread) seconds of the timed calls after one
    warm-up; stops early past the budget. The best call is the least disturbed one."""
    first = timed(lambda: run(x))
    calls = [first] if first[0] > budget_s else []  # slow: warm-up is negligible in one call
    while len(calls) < repeats and (not calls or sum(w for w, _ in calls) < budget_s):
        calls.append(timed(lambda: run(x)))
    walls = [w for w, _ in calls]
    print(f"    first call (warm-up, compile if any) {first[0]:.1f} s", flush=True)
    return min(walls), statistics.median(walls), min(c for _, c in calls)


def skipped(name: str, config: DBLRNetConfig, pixels: int, full: bool) -> bool:
    """Without --full, the slow baselines are not rerun at 720p (minutes per frame pair)."""
    big = pixels > 400_000
    return not full and big and (name in SLOW or (name == EAGER and config is PAPER))


def network_rows(args: argparse.Namespace) -> list[Row]:
    rows = []
    for config_name in args.configs:
        config = CONFIGS[config_name]
        for size_name in args.sizes:
            height, width = SIZES[size_name]
            x = image_like(config.frames, height, width)
            model = trained_like(config, image_like(config.frames, 96, 160, seed=1))
            flops = 2 * model.macs_per_pixel() * height * width
            reference: np.ndarray | None = None
            for name, build in variants(model, args.compile).items():
                if skipped(name, config, height * width, args.full):
                    continue
                if args.variants and not any(v in name for v in args.variants.split(",")):
                    continue
                # The ceiling right before each variant: the same contention as the variant sees.
                bf16, fp32 = matmul_gflops(torch.bfloat16, 2048), matmul_gflops(torch.float32, 2048)
                run = build()
                best, median, best_cpu = measure(run, x, args.repeats, 20.0)
                y = run(x)
                del run
                if name == EAGER:
                    reference = y
                err = None if reference is None else np.abs(y - reference) * 255
                rows.append(
                    Row(
                        config_name,
                        size_name,
                        name,
                        best,
                        median,
                        best_cpu,
                        flops / best / 1e9,
                        flops / best_cpu / 1e9,
                        bf16[0],
                        fp32[0],
                        bf16[1],
                        None if err is None else float(err.max()),
                        None if err is None else float(err.mean()),
                    )
                )
                print(f"  {config_name} {size_name} {name}: {best * 1e3:.0f} ms", flush=True)
    return rows


# -- memory (child processes) --------------------------------------------------------------------


def vm_hwm() -> int:
    """This process's peak resident set, in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(task: dict) -> dict:
    """Run one memory task in this (fresh) process and report the high-water marks."""
    if task.get("video"):
        return video_child(task)
    config = CONFIGS[task["config"]]
    model = DBLRNet(config).eval()
    budget = task.get("budget", NO_TILING)  # None: the engine's default budget
    options = {} if budget is None else {"memory_budget": budget}
    engine = Deblurrer(model, "cpu", task["precision"], **options)
    engine.run_windows(np.zeros((1, config.frames, 32, 32), np.float32))
    baseline = vm_hwm()
    height, width = task["height"], task["width"]
    frames = task.get("frames", 0)
    if frames:  # a streamed synthetic clip: the held planes must not grow with its length
        plane = np.random.default_rng(0).random((height, width), dtype=np.float32)
        for _ in engine.stream((i, plane.copy()) for i in range(frames)):
            pass
    else:
        engine.run_windows(np.random.rand(1, config.frames, height, width).astype(np.float32))
    plan = engine.tile_plan(height, width)
    return {
        "baseline": baseline,
        "peak": vm_hwm(),
        "tiles": None if plan is None else [plan.height, plan.width],
    }


def video_child(task: dict) -> dict:
    """deblur_video with default settings on a synthetic clip: the whole tool's peak RSS."""
    from deblur_cli.api import deblur_video

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "clip.mp4"
        synthetic_clip(source, task["frames"], task["height"], task["width"])
        before = vm_hwm()
        engine = Deblurrer(DBLRNet(CONFIGS[task["config"]]).eval())
        summary = deblur_video(source, Path(tmp) / "out.mp4", engine)
    return {"baseline": before, "peak": vm_hwm(), "frames": summary.frames}


def run_child(task: dict) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(task)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory_report(args: argparse.Namespace) -> dict:
    """Per-pixel activation memory (fitted), 1080p default peak, 100 vs 1000 streamed frames."""
    report: dict = {"fits": {}}
    for precision in ("bf16", "fp32"):
        sides = [256, 512, 768]
        points = []
        for side in sides:
            r = run_child(
                {"config": "paper", "precision": precision, "height": side, "width": side}
            )
            points.append((side * side, r["peak"] - r["baseline"]))
        pixels, extra = np.array(points, dtype=np.float64).T
        slope, intercept = np.polyfit(pixels, extra, 1)
        itemsize = 2 if precision == "bf16" else 4
        channels = 2 * PAPER.head_width + PAPER.width
        report["fits"][precision] = {
            "points": points,
            "bytes_per_pixel": slope,
            "intercept": intercept,
            "factor": slope / (channels * itemsize),
        }
        print(f"  memory fit {precision}: {slope:.0f} B/pixel", flush=True)
    hd = run_child({"config": "paper", "precision": "auto", "height": 1080, "width": 1920,
                    "budget": None})  # fmt: skip
    report["1080p"] = hd
    print(f"  1080p default peak {hd['peak'] / 2**30:.2f} GiB", flush=True)
    video = run_child({"video": True, "config": "paper", "height": 1080, "width": 1920,
                       "frames": 3})  # fmt: skip
    report["1080p_video"] = video
    print(f"  1080p deblur_video peak {video['peak'] / 2**30:.2f} GiB", flush=True)
    for frames in (100, 1000):
        r = run_child({"config": "fast", "precision": "auto", "height": 96, "width": 160,
                       "frames": frames})  # fmt: skip
        report[f"stream_{frames}"] = r
    print("  stream done", flush=True)
    return report


# -- end to end ----------------------------------------------------------------------------------


def synthetic_clip(path: Path, frames: int, height: int, width: int) -> None:
    import av

    x = image_like(1, height + 64, width + 64)[0, 0]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            y = (x[i : i + height, 2 * i : 2 * i + width] * 219 + 16).astype(np.uint8)
            rgb = np.repeat(y[:, :, None], 3, axis=2)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def e2e_report(frames: int) -> dict:
    """deblur_video on a synthetic 640x360 clip vs the network alone on the same frames."""
    from deblur_cli.api import deblur_video

    height, width = 360, 640
    model = trained_like(PAPER, image_like(PAPER.frames, 96, 160, seed=1))
    engine = Deblurrer(model)
    x = image_like(PAPER.frames, height, width)
    engine.run_windows(x)
    network = statistics.median(timed(lambda: engine.run_windows(x))[0] for _ in range(3))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "clip.mp4"
        synthetic_clip(source, frames, height, width)
        began = time.perf_counter()
        summary = deblur_video(source, Path(tmp) / "out.mp4", engine, preset="medium")
        seconds = time.perf_counter() - began
    return {
        "frames": summary.frames,
        "e2e_fps": summary.frames / seconds,
        "network_fps": 1 / network,
        "ratio": network * summary.frames / seconds,
    }


SPLIT_TIMES = re.compile(r"in ([\d.]+) s .*cut pass ([\d.]+) s, wait ([\d.]+) s, join ([\d.]+) s")


def timed_command(command: list[str]) -> tuple[float, str]:
    """Wall-clock seconds of a command (process start and torch import included), its stderr."""
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - began, done.stderr


def split_report(frames: int, model: str) -> dict:
    """`deblur video` on one 320x180 file: one process vs torchrun with 2 gloo ranks splitting
    it by time. With 2 cores the point is the cost of splitting (the cut pass, the wait for the
    slower part, the join), not speed: each rank gets one thread where the single run has two."""
    import av

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "clip.mp4"
        synthetic_clip(source, frames, 180, 320)
        common = ["-m", "deblur_cli", "video", str(source), "--model", model, "--device", "cpu"]
        one_wall, one_err = timed_command([sys.executable, *common, "-o", f"{tmp}/one.mp4"])
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
        two_wall, two_err = timed_command([*torchrun, *common, "-o", f"{tmp}/two.mp4"])
        counts = []
        for name in ("one.mp4", "two.mp4"):
            with av.open(f"{tmp}/{name}") as container:
                counts.append(sum(1 for _ in container.decode(video=0)))
    match = SPLIT_TIMES.search(two_err)
    if match is None:
        raise RuntimeError(f"no split summary in: {two_err}")
    one_seconds = float(re.search(r"frames in ([\d.]+) s", one_err).group(1))  # type: ignore[union-attr]
    two_seconds, cut, wait, join = map(float, match.groups())
    return {
        "frames": frames,
        "frames_out": counts,
        "one_wall": one_wall,
        "two_wall": two_wall,
        "one_seconds": one_seconds,
        "two_seconds": two_seconds,
        "cut_seconds": cut,
        "wait_seconds": wait,
        "join_seconds": join,
    }


def print_split(report: dict) -> None:
    print(
        f"\none file split by time (320x180, {report['frames']} frames, frames out "
        f"{report['frames_out']}): 1 process {report['one_seconds']:.2f} s "
        f"({report['one_wall']:.2f} s wall), 2 ranks {report['two_seconds']:.2f} s "
        f"({report['two_wall']:.2f} s wall); overhead on rank 0: cut pass "
        f"{report['cut_seconds']:.2f} s, waiting for the other part {report['wait_seconds']:.2f} s,"
        f" join {report['join_seconds']:.3f} s"
    )


# -- report --------------------------------------------------------------------------------------


def print_tables(rows: list[Row]) -> None:
    print(
        f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads. ms = best wall-clock "
        "call (median); GFLOP/s and %bf16/%fp32 against the dense matmul rate measured just "
        "before each variant (same contention); 'cpu' columns use CPU time per thread instead "
        "of wall time for both the variant and the ceiling (an idle-machine estimate)"
    )
    header = (
        f"{'config':6} {'size':9} {'variant':38} {'ms/frame':>15} {'GFLOP/s':>7} "
        f"{'ceil':>5} {'%bf16':>6} {'%fp32':>6} {'cpu ms':>7} {'GF/s':>5} {'ceil':>5} "
        f"{'%bf16':>6} {'vs eager':>8} {'maxErrY':>7} {'meanErrY':>8}"
    )
    print(header)
    print("-" * len(header))
    eager: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (r.config, r.size)
        if r.variant == EAGER:
            eager[key] = r.best
        speedup = f"{eager[key] / r.best:.2f}x" if key in eager else "-"
        errors = "      -        -" if r.max_err is None else f"{r.max_err:7.3f} {r.mean_err:8.4f}"
        timing = f"{r.best * 1e3:.0f} ({r.median * 1e3:.0f})"
        print(
            f"{r.config:6} {r.size:9} {r.variant:38} {timing:>15} {r.gflops:7.0f} "
            f"{r.ceiling_bf16:5.0f} {100 * r.gflops / r.ceiling_bf16:5.0f}% "
            f"{100 * r.gflops / r.ceiling_fp32:5.0f}% {r.best_cpu * 1e3:7.0f} "
            f"{r.gflops_cpu:5.0f} {r.ceiling_bf16_cpu:5.0f} "
            f"{100 * r.gflops_cpu / r.ceiling_bf16_cpu:5.0f}% {speedup:>8} {errors}"
        )


def print_memory(report: dict) -> None:
    print("\nmemory (VmHWM in fresh processes)")
    for precision, fit in report["fits"].items():
        points = ", ".join(f"{p}px:+{e / 2**20:.0f}MiB" for p, e in fit["points"])
        print(
            f"  paper {precision}: {fit['bytes_per_pixel']:.0f} B/pixel "
            f"(= {fit['factor']:.2f} x (2*head+width) channels x itemsize); {points}"
        )
    hd = report["1080p"]
    print(
        f"  1920x1080 default settings: peak RSS {hd['peak'] / 2**30:.2f} GiB, tiles {hd['tiles']}"
    )
    video = report["1080p_video"]
    print(
        f"  1920x1080 deblur_video (decode + engine + encode, {video['frames']} frames): "
        f"peak RSS {video['peak'] / 2**30:.2f} GiB"
    )
    a, b = report["stream_100"]["peak"], report["stream_1000"]["peak"]
    print(
        f"  streamed clip (fast config, 160x96): 100 frames {a / 2**20:.0f} MiB, "
        f"1000 frames {b / 2**20:.0f} MiB ({100 * (b - a) / a:+.1f}%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="640x360 and 320x180 only, paper")
    parser.add_argument("--full", action="store_true", help="every variant at 720p too (slow)")
    parser.add_argument("--sections", default="network,memory,e2e")
    parser.add_argument("--configs", default="paper,fast")
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--variants", help="comma-separated name fragments to run (default: all)")
    parser.add_argument("--e2e-frames", type=int, default=24)
    parser.add_argument("--split-frames", type=int, default=96, help="frames for 'split'")
    parser.add_argument("--split-model", default="dblrnet-fast", help="model for 'split'")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    args.configs = args.configs.split(",")
    args.sizes = args.sizes.split(",")
    if args.quick:
        args.configs, args.sizes = ["paper"], ["320x180", "640x360"]
    sections = args.sections.split(",")
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(f"deblur speed benchmark, {results['date']}, load average {os.getloadavg()}", flush=True)
    if "network" in sections:
        rows = network_rows(args)
        results["rows"] = [r.__dict__ for r in rows]
        print_tables(rows)
    if "memory" in sections:
        results["memory"] = memory_report(args)
        print_memory(results["memory"])
    if "e2e" in sections:
        e2e = e2e_report(args.e2e_frames)
        results["e2e"] = e2e
        print(
            f"\nend to end (deblur_video, 640x360 synthetic H.264, {e2e['frames']} frames): "
            f"{e2e['e2e_fps']:.3f} fps vs network only {e2e['network_fps']:.3f} fps "
            f"({100 * e2e['ratio']:.0f}%)"
        )
    if "split" in sections:
        results["split"] = split_report(args.split_frames, args.split_model)
        print_split(results["split"])
    print(f"load average at the end {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
