"""Peak memory of tile-infer on a 16384^2 raster / on a 2048^2 raster, measured in one run.

    .venv/bin/python bench/bench_memory.py --big 16384 --small 2048

Each raster (synthetic, 0.3 m, one roof per 48x48 px, tiled + deflate) is
processed in its own fresh process with the 1x1-conv stub model, and that
process reports its own peak RSS (``ru_maxrss``). If tile-infer streams,
the ratio is close to 1: memory follows the block size and the buildings
on unfinished block borders, not the raster size (64x more pixels here).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import light_stub, say, write_scene

CHILD = """
import json, resource, sys, time
from mapseg_core.config import TileConfig
from mapseg_core.inference.engine import tile_infer
raster, out, model, block = sys.argv[1:5]
start = time.perf_counter()
s = tile_infer([raster], out, model, TileConfig(block_size=int(block), min_area=0.0, batch_size=4))
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - start, "features": s["features"],
                  "mpx_per_s": s["mpx_per_s"], "km2_per_h": s["km2_per_h"]}))
"""


def run(raster: Path, out: Path, model: Path, block: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(raster), str(out), str(model), str(block)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=16384)
    parser.add_argument("--small", type=int, default=2048)
    parser.add_argument("--block", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmpdir = Path(tmp)
        start = time.perf_counter()
        small = write_scene(tmpdir / "small.tif", args.small)
        big = write_scene(tmpdir / "big.tif", args.big)
        model = light_stub(tmpdir / "stub.keras", input_size=512, margin=0)
        say(
            f"rasters written in {time.perf_counter() - start:.0f} s "
            f"({big.stat().st_size / 2**20:.0f} MiB on disk for {args.big}^2)"
        )
        a = run(small, tmpdir / "small.gpkg", model, args.block)
        b = run(big, tmpdir / "big.gpkg", model, args.block)
    raw_mb = args.big**2 * 3 / 2**20
    say(
        f"{args.small}^2: peak RSS {a['peak_mb']:7.0f} MiB, {a['seconds']:6.1f} s, "
        f"{a['features']} buildings, {a['mpx_per_s']:.1f} Mpx/s"
    )
    say(
        f"{args.big}^2: peak RSS {b['peak_mb']:7.0f} MiB, {b['seconds']:6.1f} s, "
        f"{b['features']} buildings, {b['mpx_per_s']:.1f} Mpx/s, "
        f"{b['km2_per_h']:.0f} km2/h at 0.3 m"
    )
    say(
        f"(the {args.big}^2 raster alone is {raw_mb:.0f} MiB as uint8, "
        f"{raw_mb * 4:.0f} MiB as float32)"
    )
    say(
        f"ratio peak RSS {args.big}^2 / {args.small}^2 = "
        f"{b['peak_mb'] / a['peak_mb']:.3f} (goal <= 1.2)"
    )


if __name__ == "__main__":
    main()
