"""Build the plugin zip with ``qgis-plugin-ci package`` from a staging copy of the working tree.

qgis-plugin-ci packages what ``git archive`` sees and then resets the working
tree (``git checkout -- .``), so it must not run in a checkout with
uncommitted work. In a fresh clone the plain command works as it is
(``qgis_plugin/metadata.txt`` is committed, a copy of the root one that
tests/test_packaging.py keeps identical); for the tests, which must package
the working tree as it is now, this copies the plugin's files (tracked and
new, not ignored) into a throwaway git repository, a fresh clone of the tree,
and runs the plain ``qgis-plugin-ci package VERSION`` there. Also usable by hand:

    $ .venv/bin/python tests/qgis/plugin_zip.py 0.1.0 dist/
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Files qgis-plugin-ci needs besides the plugin folder.
_TOP_FILES = ("pyproject.toml", "metadata.txt", "LICENSE")


def plugin_files(root: Path = ROOT) -> list[str]:
    """The plugin folder's files in the working tree: tracked or new, not git-ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "qgis_plugin"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sorted({f for f in listed.split("\0") if f and (root / f).is_file()})


def plugin_name(root: Path = ROOT) -> str:
    """The plugin's name in metadata.txt (the zip's folder: ``mapseg``)."""
    meta = configparser.ConfigParser()
    meta.read(root / "metadata.txt", encoding="utf-8")
    return meta["general"]["name"]


def package(version: str, out_dir: Path, root: Path = ROOT, venv: Path | None = None) -> Path:
    """Write ``out_dir/mapseg.VERSION.zip`` and return its path."""
    venv = venv or root / ".venv"
    out_dir = Path(out_dir).resolve()
    stage = out_dir / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for name in (*_TOP_FILES, *plugin_files(root)):
        if (root / name).is_file():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, stage / name)
    git = ["git", "-c", "user.name=mapseg packaging", "-c", "user.email=packaging@localhost"]
    for args in (["init", "-q"], ["add", "-A", "-f"], ["commit", "-q", "-m", "package"]):
        subprocess.run([*git, *args], cwd=stage, check=True, capture_output=True)
    tool = venv / ("Scripts" if sys.platform == "win32" else "bin") / "qgis-plugin-ci"
    proc = subprocess.run(
        [str(tool), "package", version], cwd=stage, capture_output=True, text=True
    )
    zips = sorted(stage.glob("*.zip"))
    if proc.returncode != 0 or len(zips) != 1:
        raise RuntimeError(f"qgis-plugin-ci package failed:\n{proc.stdout}\n{proc.stderr}")
    # qgis-plugin-ci names the zip after plugin_path (qgis_plugin.VERSION.zip); the
    # folder inside is already named after the plugin, and so is this file.
    target = out_dir / f"{plugin_name(root)}.{version}.zip"
    shutil.move(str(zips[0]), target)
    shutil.rmtree(stage, ignore_errors=True)
    return target


if __name__ == "__main__":
    print(package(sys.argv[1], Path(sys.argv[2] if len(sys.argv) > 2 else "dist")))
