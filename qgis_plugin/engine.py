"""The engine client: find the ``mapseg`` executable and run it out of process.

QGIS's Python cannot host TensorFlow (QGIS 3.22 on Debian brings numpy 1.24
and the system SQLite; TensorFlow needs numpy >= 2 and exports its own sqlite3
symbols: one process with both segfaults). So, like QGIS's GRASS, SAGA and OTB
providers, the plugin runs the engine's command line in a subprocess and
reads its ``--progress json`` events (one JSON object per stdout line, see
docs/tile-infer.md) to drive the ``QgsProcessingFeedback``.

Only PyQGIS and the standard library are imported here.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis.core import QgsApplication, QgsProcessingException, QgsSettings
from qgis.PyQt.QtCore import QCoreApplication

#: Name of the Processing option (Processing options -> Providers -> mapseg).
ENGINE_SETTING = "MAPSEG_ENGINE"
#: Where Processing stores that option in the QGIS settings.
ENGINE_SETTING_KEY = f"Processing/Configuration/{ENGINE_SETTING}"
#: Environment variable naming the engine executable (used when the option is empty).
ENGINE_ENV = "MAPSEG_ENGINE"
#: Seconds a cancelled engine gets to clean up after SIGINT before it is killed.
CANCEL_GRACE_S = 5.0

#: Variables QGIS sets for its own Python and GDAL that would break another
#: Python (QGIS's numpy on the engine's path) or another GDAL (wrong data files).
_SCRUBBED_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONEXECUTABLE",
    "GDAL_DATA",
    "GDAL_DRIVER_PATH",
    "PROJ_LIB",
    "PROJ_DATA",
    "QT_PLUGIN_PATH",
)


def tr(message: str) -> str:
    """Translate a user-facing string in the plugin's context."""
    return QCoreApplication.translate("mapseg", message)


@dataclass(frozen=True)
class Engine:
    """A located engine: the executable and which rule found it."""

    #: Absolute path of the ``mapseg`` executable.
    executable: str
    #: "plugin setting", "MAPSEG_ENGINE", "private environment" or "PATH".
    source: str


class EngineCanceled(QgsProcessingException):
    """The user cancelled; the engine was stopped."""


def private_environment() -> Path:
    """Folder of the engine environment made by *Set up mapseg engine* (in the QGIS profile)."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "mapseg" / "engine"


def environment_executable(env_dir: Path, name: str = "mapseg") -> Path:
    """The console script ``name`` inside a virtual environment."""
    if os.name == "nt":
        return env_dir / "Scripts" / f"{name}.exe"
    return env_dir / "bin" / name


def configured_engine() -> str:
    """The engine path set in Processing options ("" when unset)."""
    value = QgsSettings().value(ENGINE_SETTING_KEY, "")
    return str(value or "").strip()


def find_engine() -> Engine:
    """Locate the engine: plugin setting, then ``MAPSEG_ENGINE``, private environment, PATH.

    Raises:
        QgsProcessingException: none was found, or the configured one does not exist;
            the message says how to get one.
    """
    setting = configured_engine()
    if setting:
        where = tr("Processing options → Providers → mapseg")
        return _checked(setting, tr("plugin setting"), where)
    env = os.environ.get(ENGINE_ENV, "").strip()
    if env:
        return _checked(env, ENGINE_ENV, tr("the MAPSEG_ENGINE environment variable"))
    private = environment_executable(private_environment())
    if private.is_file():
        return Engine(str(private), tr("private environment"))
    on_path = shutil.which("mapseg")
    if on_path:
        return Engine(str(Path(on_path).resolve()), "PATH")
    raise QgsProcessingException(
        tr(
            "mapseg engine not found: it is not set in Processing options → Providers → mapseg, "
            "nor in MAPSEG_ENGINE, nor on PATH. Run “Set up mapseg engine” (mapseg → Engine in "
            "the Processing toolbox) to install it into a private environment, or install it "
            "yourself in a separate Python (python -m venv mapseg-env; "
            "mapseg-env/bin/pip install 'mapseg[tensorflow]') and set the path of its mapseg "
            "executable in Processing options → Providers → mapseg."
        )
    )


def _checked(path: str, source: str, where: str) -> Engine:
    resolved = shutil.which(path) or (path if Path(path).is_file() else None)
    if resolved is None:
        raise QgsProcessingException(
            tr("the mapseg engine set in {where} ({path}) does not exist; fix or clear the "
               "setting, or run “Set up mapseg engine”").format(where=where, path=path)
        )
    return Engine(str(Path(resolved).resolve()), source)


def engine_environment() -> dict[str, str]:
    """The environment for the engine: QGIS's, minus what belongs to QGIS's own Python/GDAL."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    return env


def _popen(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group, pipes for stdout/stderr, no console window."""
    kwargs: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "env": env if env is not None else engine_environment(),
        "text": True,
        "encoding": "utf-8",
        "errors": "replace",
        "bufsize": 1,
    }
    if os.name == "nt":
        kwargs["creationflags"] = (
            subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        )
    else:
        kwargs["start_new_session"] = True
    return subprocess.Popen(cmd, **kwargs)


def stop(proc: subprocess.Popen, grace_s: float = CANCEL_GRACE_S) -> None:
    """Stop the engine and its children: interrupt (it cleans up), then kill."""
    if proc.poll() is not None:
        return
    try:
        if os.name == "nt":
            proc.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(grace_s)
    except (OSError, subprocess.TimeoutExpired):
        pass
    if proc.poll() is None:
        if os.name == "nt":
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(proc.pid)], capture_output=True)
        else:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()
        proc.wait()


def _pump(stream: Any, name: str, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put((name, line.rstrip("\r\n")))
    stream.close()
    lines.put((name, None))


def stream(
    cmd: list[str],
    feedback: Any,
    on_line: Callable[[str, str], None],
    on_cancel: Callable[[], None] | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Run ``cmd``, hand each output line to ``on_line(stream, line)``; return the exit code.

    The output is read by two threads into a queue, so the feedback's cancel
    flag is polled every 0.1 s whatever the process prints. Cancelling stops
    the process group (:func:`stop`), calls ``on_cancel`` and raises
    :class:`EngineCanceled`. ``stream`` is "out" or "err".
    """
    feedback.pushCommandInfo(" ".join(shlex.quote(c) for c in cmd))
    try:
        proc = _popen(cmd, env)
    except OSError as exc:
        raise QgsProcessingException(
            tr("could not start {exe}: {err}; check the engine path in Processing options → "
               "Providers → mapseg, or run “Check mapseg engine”").format(exe=cmd[0], err=exc)
        ) from exc
    lines: queue.Queue = queue.Queue()
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, "out", lines), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, "err", lines), daemon=True),
    ]
    for reader in readers:
        reader.start()
    open_streams = len(readers)
    while open_streams:
        if feedback.isCanceled():
            stop(proc)
            for reader in readers:
                reader.join(2.0)
            if on_cancel is not None:
                on_cancel()
            raise EngineCanceled(tr("cancelled: the process was stopped, nothing written"))
        try:
            name, line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
        else:
            on_line(name, line)
    return proc.wait()


def run_engine(
    engine: Engine,
    args: list[str],
    feedback: Any,
    on_cancel: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run ``mapseg ARGS --progress json`` and relay its events to ``feedback``.

    ``progress`` events set the progress bar, ``start`` and ``epoch`` events are
    logged, ``warning`` events become non-fatal errors in the log, stderr goes to
    the console log. Cancelling stops the engine (SIGINT first, so it removes its
    temporary files itself, then SIGKILL), calls ``on_cancel`` and raises
    :class:`EngineCanceled`; the engine writes its outputs atomically, so none
    is left behind.

    Returns:
        The ``summary`` of the engine's ``done`` event ({} if it sent none).

    Raises:
        QgsProcessingException: the engine failed (with its one-line message),
            could not start, or the run was cancelled.
    """
    state: dict[str, Any] = {"summary": {}, "error": None}
    stderr_tail: deque[str] = deque(maxlen=40)

    def on_line(name: str, line: str) -> None:
        if name == "err":
            if line.strip():
                stderr_tail.append(line)
                feedback.pushConsoleInfo(line)
            return
        event = _parse(line)
        if event is None:
            feedback.pushConsoleInfo(line)
            return
        if event.get("event") == "done":
            state["summary"] = dict(event.get("summary") or {})
        elif event.get("event") == "error":
            state["error"] = str(event.get("message", ""))
        _relay(event, feedback)

    cmd = [engine.executable, *args, "--progress", "json"]
    code = stream(cmd, feedback, on_line, on_cancel)
    if code != 0:
        raise QgsProcessingException(_failure(state["error"], stderr_tail, code))
    return state["summary"]


def set_configured_engine(path: str) -> None:
    """Store ``path`` as the engine in Processing options (and in the running Processing)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig

        ProcessingConfig.setSettingValue(ENGINE_SETTING, path)
    except (ImportError, KeyError, AttributeError):
        pass
    QgsSettings().setValue(ENGINE_SETTING_KEY, path)


def _parse(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _relay(event: dict[str, Any], feedback: Any) -> None:
    """Show one engine event on the Processing feedback."""
    kind = event.get("event")
    if kind == "start":
        feedback.setProgress(0)
        feedback.pushInfo(tr("mapseg: {total} {unit}(s) to process").format(
            total=event.get("total"), unit=event.get("unit", "step")))
    elif kind == "progress":
        feedback.setProgress(100.0 * float(event.get("fraction") or 0.0))
        rate = event.get("mpx_per_s")
        if isinstance(rate, (float, int)):
            feedback.pushDebugInfo(tr("{done}/{total} done, {rate:.2f} Mpx/s").format(
                done=event.get("done"), total=event.get("total"), rate=rate))
    elif kind == "epoch":
        figures = ", ".join(
            f"{k} {v:.4f}" for k, v in event.items() if isinstance(v, float)
        )
        feedback.pushInfo(tr("epoch {e}/{n}: {figures}").format(
            e=event.get("epoch"), n=event.get("epochs"), figures=figures))
    elif kind == "warning":
        feedback.reportError(tr("mapseg warning: {m}").format(m=event.get("message")), False)
    elif kind == "done":
        feedback.setProgress(100)


def _failure(error: str | None, stderr_tail: deque[str], code: int) -> str:
    """The engine's own one-line message, else the last lines of its stderr."""
    if not error:
        marked = [line for line in stderr_tail if line.startswith("mapseg:")]
        error = marked[-1].split(":", 1)[1].strip() if marked else ""
        for prefix in ("error:", "internal error:"):
            if error.startswith(prefix):
                error = error[len(prefix):].strip()
    if not error:
        error = " | ".join(list(stderr_tail)[-3:]) or tr("no message")
    return tr("mapseg engine failed (exit {code}): {message}").format(code=code, message=error)


def run_quiet(
    cmd: list[str], feedback: Any = None, timeout: float = 300.0
) -> subprocess.CompletedProcess:
    """Run a short command (``--version``, a probe) and capture its output; cancellable."""
    proc = _popen(cmd)
    deadline = time.monotonic() + timeout
    while True:
        try:
            out, err = proc.communicate(timeout=0.2)
            return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            if feedback is not None and feedback.isCanceled():
                stop(proc, grace_s=1.0)
                proc.communicate()
                raise EngineCanceled(tr("cancelled")) from None
            if time.monotonic() > deadline:
                stop(proc, grace_s=1.0)
                proc.communicate()
                raise QgsProcessingException(
                    tr("{cmd} did not answer within {s:.0f} s").format(cmd=cmd[0], s=timeout)
                ) from None


def remove_temporary_siblings(target: Path, since: float) -> None:
    """Delete the engine's temporary files for ``target`` (``.STEM.tmp-*``) newer than ``since``.

    The engine removes them itself when interrupted; this covers a killed engine.
    """
    for path in target.parent.glob(f".{target.stem}.tmp-*"):
        try:
            if path.stat().st_mtime >= since - 1.0:
                path.unlink()
        except OSError:
            pass
