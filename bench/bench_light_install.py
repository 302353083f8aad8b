"""The light ONNX engine as a user installs it: its size, and a 500x500 px job on it.

    .venv/bin/python bench/bench_light_install.py

Creates a fresh venv in a temporary folder, installs ``mapseg[onnx]`` from this
checkout at the locked versions (``pip install -c requirements/lock.txt``), and
measures what it takes on disk (``site-packages``, the largest packages
listed). Then runs ``mapseg tile-infer`` on the demo sample
(``examples/inria-austin-sample.tif``, 500x500 px) with no ``--model``, i.e. the
bundled model's ONNX export, timed as a command (start-up included), next to
the same command on this checkout's full engine (Keras + TensorFlow). Prints
the sizes (goal < 150 MB) and the wall-time ratio light / full (the 500x500
job's goal is <= 3 s). Needs the package index pip uses (PyPI or a mirror).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyogrio
from _common import say

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "inria-austin-sample.tif"


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def timed_job(mapseg: Path, out: Path) -> float:
    """Wall seconds of ``mapseg tile-infer DEMO -o out`` (bundled model)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    started = time.perf_counter()
    subprocess.run(
        [str(mapseg), "tile-infer", str(DEMO), "-o", str(out), "--overwrite", "--progress", "none"],
        check=True,
        capture_output=True,
        env=env,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="timed jobs per engine (best)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mapseg-light-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        started = time.perf_counter()
        subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "--quiet",
                "-c",
                str(ROOT / "requirements" / "lock.txt"),
                f"{ROOT}[onnx]",
            ],
            check=True,
        )
        install_s = time.perf_counter() - started
        site = site_packages(venv)
        sizes = sorted(
            (
                (folder_mb(p) if p.is_dir() else p.stat().st_size / 2**20, p.name)
                for p in site.iterdir()
            ),
            reverse=True,
        )
        total = sum(mb for mb, _ in sizes)
        light = min(
            timed_job(venv / "bin" / "mapseg", Path(tmp) / "l.gpkg") for _ in range(args.repeat)
        )
        full = min(
            timed_job(ROOT / ".venv" / "bin" / "mapseg", Path(tmp) / "f.gpkg")
            for _ in range(args.repeat)
        )
        found = {
            k: pyogrio.read_info(Path(tmp) / f"{k[0]}.gpkg")["features"] for k in ("light", "full")
        }
    top = ", ".join(f"{name} {mb:.0f}" for mb, name in sizes[:8])
    say(
        f"light engine mapseg[onnx]: {total:.0f} MB installed in {install_s:.0f} s "
        f"(goal < 150 MB); largest (MB): {top}"
    )
    say(
        f"tile-infer 500x500 px demo, bundled model, command wall: light {light:.1f} s, "
        f"full {full:.1f} s ({found['light']} and {found['full']} buildings); "
        f"ratio light / full {light / full:.2f} (goal: light <= 3 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
