"""Images on the training thread (issue 20): what log() of an image costs, and what PNG would.

Three parts:

1. ``run.log({"img": Image(x), "i": i})`` of a 224x224x3 uint8 image (noise), ``--images``
   calls in a fresh process per repeat (default fsync policy), for this tree and, with
   ``--baseline DIR``, another localtrack source tree (e.g. ``git archive main localtrack``),
   in alternating order (``_harness.rounds``). Per process: the median and the mean wall time
   of a call, and the CPU time (user + system, getrusage) per call of the loop; reported as the
   median over the processes and min .. max. CPU time is the figure to trust on a loaded
   machine: wall time there includes waiting for a core.
2. The parts of that call, in this process (median of ``--repeats``, CPU time per call): a
   checksum of the 150,528 bytes (zlib's CRC-32, XXH3-64), the ``tobytes()`` copy, one
   ``write()`` appending them to a file, and a copy into a shared map of a file's
   ``posix_fallocate``d window (the history log's way), which was measured and not taken.
3. Encodings (PNG with Pillow at compress_level 1 and at its default, 6, against raw pixels):
   time and bytes for noise (PNG's worst case), a smooth gradient and, when matplotlib is
   installed, a photograph (its sample ``grace_hopper.jpg``, decoded and cropped): whether
   PNG at seal time would pay.

    python benchmarks/bench_media.py [--images 2000] [--processes 5] [--baseline DIR]
        [--repeats 200] [--markdown]
"""

from __future__ import annotations

import argparse
import io
import mmap
import os
import resource
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Children, f_us, print_table, rounds, serve, stat_row  # noqa: E402

SIDE = 224


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _noise(side: int = SIDE) -> Any:
    import numpy as np

    return np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)


# -- 1. log() in fresh processes ---------------------------------------------------------------


def log_worker(arg: dict[str, Any]) -> dict[str, Any]:
    """``arg["images"]`` log() calls of an image: median and mean µs per call, CPU per call."""
    import localtrack

    image = _noise()
    with tempfile.TemporaryDirectory(dir=arg.get("dir")) as store:
        run = localtrack.init(project="bench", id="media", dir=store)
        for i in range(50):  # warm up: imports, the first blob file, the allocator
            run.log({"img": localtrack.Image(image), "i": i})
        times = []
        pc = time.perf_counter
        cpu0 = _cpu()
        for i in range(arg["images"]):
            t0 = pc()
            run.log({"img": localtrack.Image(image), "i": i})
            times.append(pc() - t0)
        cpu = (_cpu() - cpu0) / arg["images"]
        run.finish()
    return {"median": statistics.median(times), "mean": statistics.fmean(times), "cpu": cpu,
            "file": localtrack.__file__}


def _log_rows(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    trees = {"this tree": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    if args.baseline:
        trees["baseline"] = os.path.abspath(args.baseline)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}

    def once(name: str, _: int) -> dict[str, Any]:
        child = Children(__file__, timeout=600, src=trees[name], clean=True)
        return child.spawn("log", {"images": args.images, "dir": args.dir})

    for _, got in rounds(list(trees), args.processes, once):
        for name, res in got.items():
            results[name].append(res)
    rows = []
    for name, res in results.items():
        label = f"log() of a {SIDE}x{SIDE}x3 image, {name} ({res[0]['file']})"
        rows += [stat_row(f"{label}: median wall", [r["median"] for r in res], f_us),
                 stat_row(f"{label}: mean wall", [r["mean"] for r in res], f_us),
                 stat_row(f"{label}: CPU per call", [r["cpu"] for r in res], f_us)]
    return rows


# -- 2. the parts of a call --------------------------------------------------------------------


def _timed(fn: Callable[[int], object], repeats: int) -> tuple[float, float]:
    """(median wall, CPU per call) of ``fn(i)`` over ``repeats`` calls."""
    times = []
    cpu0 = _cpu()
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (_cpu() - cpu0) / repeats


def _part_rows(repeats: int, where: str | None) -> list[tuple[str, str, str]]:
    image = _noise()
    data = image.tobytes()
    view = memoryview(image.reshape(-1))
    parts: dict[str, Callable[[int], object]] = {
        "zlib.crc32 of the pixels": lambda _: zlib.crc32(view),
        "ndarray.tobytes() (the copy log() made before)": lambda _: image.tobytes(),
    }
    try:  # the faster checksum measured for a later format version (docs/format.md "Media")
        import xxhash

        parts["xxhash.xxh3_64 of the pixels (not used)"] = lambda _: xxhash.xxh3_64_hexdigest(view)
    except ImportError:
        pass
    rows = []
    for label, fn in parts.items():
        wall, cpu = _timed(fn, repeats)
        rows.append((label, f_us(wall), f"CPU {f_us(cpu)}"))
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        fd = os.open(os.path.join(tmp, "appended"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        wall, cpu = _timed(lambda _: os.write(fd, view), repeats)
        os.close(fd)
        rows.append(("write() appending the pixels to a file", f_us(wall), f"CPU {f_us(cpu)}"))
        fd = os.open(os.path.join(tmp, "mapped"), os.O_RDWR | os.O_CREAT)
        size = -(-(repeats * len(data)) // mmap.PAGESIZE) * mmap.PAGESIZE
        os.posix_fallocate(fd, 0, size)
        with mmap.mmap(fd, size) as window:
            wall, cpu = _timed(lambda _: window.write(view), repeats)
        os.close(fd)
        rows.append(("copy into a mapped, fallocated window (page faults)", f_us(wall),
                     f"CPU {f_us(cpu)}"))
    return rows


# -- 3. encodings ------------------------------------------------------------------------------


def _png(level: int | None) -> Callable[[Any], bytes]:
    def encode(array: Any) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        image = Image.fromarray(array)
        if level is None:
            image.save(buf, format="PNG")
        else:
            image.save(buf, format="PNG", compress_level=level)
        return buf.getvalue()
    return encode


def _raw(array: Any) -> bytes:
    return bytes(array.tobytes())


def _images() -> dict[str, Any]:
    import numpy as np

    images = {}
    for side in (64, 256):
        images[f"{side}x{side}x3 noise"] = _noise(side)
        ramp = np.linspace(0, 255, side, dtype=np.float64)
        grad = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, -ramp) / 2 + 128,
                         np.full((side, side), 64.0)], axis=-1)
        images[f"{side}x{side}x3 smooth"] = grad.clip(0, 255).astype(np.uint8)
    try:
        from matplotlib import cbook
        from PIL import Image
    except ImportError:
        return images
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as photo:
        rgb = np.asarray(photo.convert("RGB"))
    images["224x224x3 photo (crop)"] = np.ascontiguousarray(rgb[100:324, 150:374])
    small = Image.fromarray(rgb).resize((224, 224))
    images["224x224x3 photo (resized)"] = np.asarray(small)
    return images


def _encoding_rows(repeats: int) -> list[tuple[str, str, str, int]]:
    encoders = {"raw bytes": _raw, "PNG compress_level=1": _png(1), "PNG default (6)": _png(None)}
    rows = []
    for name, array in _images().items():
        for label, encode in encoders.items():
            out = encode(array)  # warm up (imports, allocator)
            wall, cpu = _timed(lambda _, a=array, e=encode: e(a), repeats)
            rows.append((name, label, f_us(cpu), len(out)))
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        serve({"log": log_worker}, sys.argv[2], sys.argv[4])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--baseline", help="another localtrack source tree to time log() of")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--dir", help="where the runs and files go (default: the temp folder)")
    parser.add_argument("--skip", default="", help="parts to skip: log,parts,encodings")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    rows = ([] if "log" in skip else _log_rows(args)) + (
        [] if "parts" in skip else _part_rows(args.repeats, args.dir))
    print_table(rows, args.markdown)
    if "encodings" in skip:
        return
    print()
    if args.markdown:
        print("| image | encoding | CPU µs per image | bytes |")
        print("|---|---|---:|---:|")
        for name, label, us, size in _encoding_rows(args.repeats):
            print(f"| {name} | {label} | {us} | {size:,} |")
    else:
        for name, label, us, size in _encoding_rows(args.repeats):
            print(f"{name:26} {label:22} {us:>12} {size:10,} B")


if __name__ == "__main__":
    main()
