"""LAME vs Tent: per-batch time and peak memory on the same corruption stream.

LAME (Boudiaf et al., CVPR 2022) claims to be about twice as fast as Tent: it needs one
forward pass and a small fixed-point iteration on the batch's outputs, where Tent needs a
forward pass, a backward pass and an optimiser step. Both methods answer the same batches
of a continual corruption stream (digits, 15 corruptions, severity 5) from the same source
weights (randomly initialised: speed and memory do not depend on the weights). Neither uses
cached features: LAME's time includes the backbone's forward pass.

- time: the two methods alternate batch by batch in one process (so machine load hits both
  alike); the median per-batch time of each, and their ratio, are printed;
- peak memory: on CUDA, the maximum allocated bytes above the level before the stream; on
  the CPU (Linux), the rise of the peak resident set (VmHWM) over the stream after freed heap
  pages are returned to the OS and the counter is restarted; each method runs in a fresh
  process so that neither reuses the other's pages.

    python benchmarks/lame_vs_tent.py [--backbones small_cnn,tiny_vit,timm:resnet18] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from ctta import StreamInfo, create_method, create_scenario
from ctta.models.factory import create_backbone

BACKBONES = {
    "small_cnn": {"name": "small_cnn"},
    "tiny_vit": {"name": "tiny_vit", "pretrained": False},
    "timm:resnet18": {"name": "timm:resnet18", "image_size": 64},
}


def stream_batches(image_size: int, batch_size: int, n_batches: int, device) -> list[torch.Tensor]:
    scenario = create_scenario("corruption", dataset="digits", batch_size=batch_size, setting="continual")
    stream = scenario.build(seed=0, image_size=image_size, device=device)
    out = []
    for batch, _ in stream.batches():
        if len(batch.x) == batch_size:
            out.append(batch.x)
        if len(out) == n_batches:
            break
    return out


def ready(method: str, backbone: dict, device) -> torch.nn.Module:
    torch.manual_seed(0)
    b = create_backbone(backbone).to(device)
    b.reset_head(10)
    b.head_is_trained = True
    info = StreamInfo(
        kind="test_time",
        num_classes=10,
        class_names=tuple(map(str, range(10))),
        image_size=b.image_size,
        seed=0,
        device=device,
    )
    m = create_method(method)
    m.attach(b, info)
    return m.to(device)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_batch_times(backbone: dict, batch_size: int, n_batches: int, device) -> dict[str, list[float]]:
    methods = {name: ready(name, backbone, device) for name in ("lame", "tent")}
    batches = stream_batches(methods["lame"].model.image_size, batch_size, n_batches + 2, device)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for i, x in enumerate(batches):
        for name, m in methods.items():
            sync(device)
            t = time.perf_counter()
            m.predict(x)
            sync(device)
            if i >= 2:  # the first two batches warm up allocators and kernels
                times[name].append(time.perf_counter() - t)
    return times


def peak_memory_mb(method: str, backbone: dict, batch_size: int, n_batches: int, device) -> float:
    """Run in this process: the peak memory rise over the stream, in MB."""
    m = ready(method, backbone, device)
    batches = stream_batches(m.model.image_size, batch_size, n_batches, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        for x in batches:
            m.predict(x)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    reset_peak_rss()
    base = peak_rss_kb()
    for x in batches:
        m.predict(x)
    return (peak_rss_kb() - base) / 1024


def reset_peak_rss() -> None:
    """Return freed heap pages to the OS, then restart the kernel's peak-RSS counter (Linux)."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak_rss_kb() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))


def fresh_process_memory(method: str, backbone: str, args) -> float:
    cmd = [sys.executable, __file__, "--memory-of", method, "--backbones", backbone]
    cmd += ["--batch-size", str(args.batch_size), "--batches", str(args.batches), "--device", args.device]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_mb"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="small_cnn,tiny_vit,timm:resnet18")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: measure one method's memory
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.memory_of:
        backbone = BACKBONES[args.backbones]
        print(
            json.dumps(
                {"peak_mb": peak_memory_mb(args.memory_of, backbone, args.batch_size, args.batches, device)}
            )
        )
        return
    print(
        f"device {device}, batch size {args.batch_size}, {args.batches} timed batches; load {os.getloadavg()}"
    )
    print(
        "| backbone | LAME ms/batch | Tent ms/batch | Tent/LAME time | LAME peak MB | Tent peak MB | Tent/LAME memory |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.backbones.split(","):
        times = per_batch_times(BACKBONES[name], args.batch_size, args.batches, device)
        lame, tent = (1000 * statistics.median(times[m]) for m in ("lame", "tent"))
        mem = {m: fresh_process_memory(m, name, args) for m in ("lame", "tent")}
        ratio = mem["tent"] / mem["lame"] if mem["lame"] > 0 else float("inf")
        print(
            f"| {name} | {lame:.1f} | {tent:.1f} | {tent / lame:.2f} | {mem['lame']:.1f} | {mem['tent']:.1f} "
            f"| {ratio:.2f} |"
        )


if __name__ == "__main__":
    main()
