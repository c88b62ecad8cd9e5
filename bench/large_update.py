"""A 1,000,000,000-parameter update (4 GB of float32, a ``numpy.memmap`` on disk) through
RDQ's default at 1 bit/param: bits, time, and peak resident memory above what the data
itself takes.

Writes the update to ``--path`` (structured 4096-column matrices, made a block at a time),
then in a child process: maps it, reads every page once (so its pages are resident before
the measurement and not counted as the codec's), encodes in frames of 2**24 elements and
records ``ru_maxrss``; in another child: decodes into an output array and records the
same. Prints the peaks above the mapped data (encode) and above the mapped data plus the
decoded output (decode), as a share of the update's size.

    python bench/large_update.py --params 1000000000 --path /tmp/update.npy
    python bench/large_update.py --params 1000000000 --rotate   # RDQ with rotate=True
    python bench/large_update.py --json bench/results/large_update.json   # also the rows
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BLOCK = 1 << 24


def write(path: Path, n: int) -> None:
    from fedcodec.tools.sample_updates import structured_matrix

    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n,))
    for k, start in enumerate(range(0, n, BLOCK)):
        m = structured_matrix(BLOCK // 4096, 4096, seed=k, zero_every=7).reshape(-1)
        mm[start : start + BLOCK] = m[: min(BLOCK, n - start)]
    mm.flush()
    del mm


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def current_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


SMALL = 1 << 20  # the script's own temporaries stay small
SEED = 1


def child(step: str, path: str, payload: str, threads: int, rotate: bool) -> None:
    import fedcodec

    x = np.load(path, mmap_mode="r")
    n = x.size
    codec = fedcodec.RDQ(bits_per_param=1.0, rotate=rotate)
    codec.encode(np.linspace(-1, 1, 10_000, dtype=np.float32), seed=SEED)  # compile first
    for start in range(0, n, SMALL):  # every page of the data resident first
        float(x[start : start + SMALL].max())
    out = None
    if step == "decode":
        data = Path(payload).read_bytes()
        out = np.empty(n, dtype=np.float32)
        for start in range(0, n, SMALL):  # the output's pages: output, not the codec's
            out[start : start + SMALL] = 0.0
    base = current_rss()
    t0 = time.perf_counter()
    if step == "encode":
        data = codec.encode_vector(np.asarray(x), threads=threads, seed=SEED)
    else:
        codec.decode(data, out=out, threads=threads, seed=SEED)
    seconds = time.perf_counter() - t0
    peak = peak_rss()
    result = {"step": step, "seconds": seconds, "above": peak - base, "peak": peak, "size": 4 * n}
    if step == "encode":
        Path(payload).write_bytes(data)
        result["bits_per_param"] = 8 * len(data) / n
        result["frames"] = data.count(b"FEDC\x02")  # about: a frame's magic and version
    else:
        assert out is not None
        err = energy = 0.0
        for s in range(0, n, SMALL):
            d = x[s : s + SMALL].astype(np.float64)
            err += float(np.sum((d - out[s : s + SMALL]) ** 2))
            energy += float(np.sum(d * d))
        result["nmse"] = err / energy
    print(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=int, default=1_000_000_000)
    p.add_argument("--path", type=Path, default=Path("/tmp/fedcodec-update.npy"))
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    p.add_argument("--keep", action="store_true", help="keep the update file")
    p.add_argument("--rotate", action="store_true", help="RDQ with rotate=True")
    p.add_argument("--json", type=Path, help="also write the two steps (and the machine) here")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    threads = args.threads or len(os.sched_getaffinity(0))
    if args.child:
        child(args.child[0], args.child[1], args.child[2], threads, args.rotate)
        return
    if not args.path.exists() or np.load(args.path, mmap_mode="r").size != args.params:
        write(args.path, args.params)
    payload = str(args.path) + ".fedcodec"
    steps = []
    for step in ("encode", "decode"):
        cmd = [sys.executable, __file__, "--child", step, str(args.path), payload,
               "--threads", str(threads)] + (["--rotate"] if args.rotate else [])  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        share = r["above"] / r["size"]
        more = {k: v for k, v in r.items() if k in ("bits_per_param", "nmse", "frames")}
        what = "the data and output" if step == "decode" else "the data"
        print(f"{step}: {r['seconds']:.1f} s, peak resident {r['peak'] / 2**30:.2f} GiB, "
              f"{r['above'] / 2**30:.3f} GiB above {what} ({share:.1%} of the update), "
              f"{more}")  # fmt: skip
        steps.append(r)
    if args.json:
        from fedcodec.tools.frontier import machine_info

        doc = {"steps": steps, "params": args.params, "threads": threads, "rotate": args.rotate,
               "machine": machine_info(),
               "command": "python bench/large_update.py " + " ".join(sys.argv[1:])}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    Path(payload).unlink(missing_ok=True)
    if not args.keep:
        args.path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
