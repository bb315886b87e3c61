"""``hws bench stories``: every README user story, run as written, its final answers checked.

The README's "What it does, by user" section is the source: each ``###`` story's ``bash`` blocks
are run command by command, in order, in a fresh working folder (its own store, MLflow database
and artifacts), exactly as a user would paste them. Three things a terminal user does by hand
are done here too, and only these:

- ``hws serve`` runs in the background until its story ends; the write token it prints replaces
  the word ``TOKEN`` in the story's later commands;
- a command whose comment says it needs a CUDA build is expected, on a machine without CUDA, to
  stop with a message that says so (a refusal that names CUDA passes, a crash does not);
- each ``hws predict`` command is run once more with ``--json`` to read its answer, which is
  compared with the measured value in the store when the store has one (the "truth").

The same runner backs a test (``tests/test_readme_stories.py``, in CI with training defaults made
small by ``HWSURROGATE_CLI_DEFAULTS``) and this benchmark (the full public data, defaults as shipped).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

__all__ = [
    "Command",
    "CommandResult",
    "Story",
    "bench_stories",
    "link_repo_files",
    "readme_stories",
    "run_story",
    "story_env",
]

STORIES_HEADING = "## What it does, by user"
_CUDA_NOTE = re.compile(r"needs a CUDA", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    text: str  # the command as pasted (continuation lines joined)
    line: int  # README line where it starts


@dataclass(frozen=True)
class Story:
    title: str
    commands: list[Command]


@dataclass
class CommandResult:
    story: str
    line: int
    command: str
    rc: int
    seconds: float
    outcome: str  # ok | failed | refused-as-documented | background
    tail: str = ""
    answer: dict[str, Any] = field(default_factory=dict)


def readme_stories(readme: Path) -> list[Story]:
    """The ``bash`` blocks of every ``###`` story under :data:`STORIES_HEADING`, as commands."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index(STORIES_HEADING)
    except ValueError:
        raise click.ClickException(f"{readme}: no {STORIES_HEADING!r} section") from None
    stories: list[Story] = []
    title, in_block, pending, pending_line = "", False, "", 0
    for i in range(start + 1, len(lines)):
        text = lines[i]
        if not in_block and text.startswith("## "):
            break
        if not in_block and text.startswith("### "):
            title = text[4:].strip()
            stories.append(Story(title, []))
            continue
        if text.strip() == "```bash" and not in_block:
            in_block = True
            continue
        if text.strip() == "```" and in_block:
            in_block = False
            continue
        if not in_block or not stories:
            continue
        stripped = text.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            pending_line = i + 1
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        stories[-1].commands.append(Command(pending + stripped, pending_line))
        pending = ""
    return [s for s in stories if s.commands]


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # no torch, or a broken CUDA install: no CUDA either way
        return False


def _tail(text: str, n: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _with_json(command: str) -> str | None:
    """The ``hws predict`` part of ``command`` with ``--json`` (None for other commands)."""
    first = command.split("&&")[-1].split("#")[0].strip()
    if not first.startswith("hws predict ") or " --json" in first:
        return None
    return first + " --json"


def _truth_latency(env: dict[str, str], answer: dict[str, Any]) -> dict[str, Any]:
    """The measured latency of the answered (device, space, arch_key) in the story's store."""
    import polars as pl

    from hwsurrogate.datasets.store import DatasetStore

    pred = answer.get("predictions") or answer.get("rows") or []
    if not pred:
        return {}
    row = pred[0]
    key, device = row.get("arch_key"), row.get("device_id")
    if not key or not device:
        return {}
    store = DatasetStore(env["HWSURROGATE_STORE"])
    hit = (
        store.scan("latency")
        .filter((pl.col("device_id") == device) & (pl.col("arch_key") == key))
        .select("latency_ms")
        .collect()
    )
    if hit.height == 0 or row.get("latency_ms") is None:
        return {}
    truth = float(hit["latency_ms"].median())
    return {"truth": truth, "error_pct": abs(float(row["latency_ms"]) - truth) / truth * 100}


def _truth_gemm(env: dict[str, str], answer: dict[str, Any]) -> dict[str, Any]:
    """The measured runtime of the answered (device, op, m, n, k, batch, dtype) in the story's store."""
    import polars as pl

    from hwsurrogate.datasets.store import DatasetStore

    pred = answer.get("predictions") or []
    if not pred or pred[0].get("runtime_ms") is None:
        return {}
    row = pred[0]
    keys = ("device_id", "op", "m", "n", "k", "batch", "dtype")
    if any(row.get(k) is None for k in keys):
        return {}
    match = pl.all_horizontal([pl.col(k) == row[k] for k in keys])
    hit = DatasetStore(env["HWSURROGATE_STORE"]).scan("gemm").filter(match).select("runtime_ms").collect()
    if hit.height == 0:
        return {}
    truth = float(hit["runtime_ms"].median())
    return {"truth": truth, "error_pct": abs(float(row["runtime_ms"]) - truth) / truth * 100}


def _answer(command: str, env: dict[str, str], cwd: Path, timeout: float) -> dict[str, Any]:
    """Run the ``--json`` twin of a predict command and return its answer (with the truth if known)."""
    twin = _with_json(command)
    if twin is None:
        return {}
    proc = subprocess.run(
        ["bash", "-c", twin], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        return {"json_error": _tail(proc.stdout + proc.stderr, 4)}
    if not isinstance(answer, dict):
        return {"answer": answer}
    if " predict latency" in twin:
        answer |= _truth_latency(env, answer)
    elif " predict gemm" in twin:
        answer |= _truth_gemm(env, answer)
    return answer


def _start_server(command: str, env: dict[str, str], cwd: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """Start ``hws serve`` in the background; wait until /healthz answers; return it and its token."""
    import httpx

    out = log.open("w")
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command.split('#')[0].strip()}"], cwd=cwd, env=env, stdout=out, stderr=out,
        start_new_session=True,
    )  # fmt: skip
    port = re.search(r"--port[ =](\d+)", command)
    url = f"http://127.0.0.1:{port.group(1) if port else 8000}/healthz"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hws serve exited with {proc.returncode}: {_tail(log.read_text())}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        _stop(proc)
        raise RuntimeError(f"hws serve did not answer {url} within 180 s: {_tail(log.read_text())}")
    token = re.search(r"write token (\S+)", log.read_text())
    return proc, token.group(1) if token else ""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_story(
    story: Story,
    workdir: Path,
    env: dict[str, str],
    *,
    timeout: float = 1800.0,
    on_result: Callable[[CommandResult], None] | None = None,
) -> list[CommandResult]:
    """Run one story's commands in ``workdir`` (shared by the stories run before it), in order;
    stop at the first failure. The background server, if any, is stopped before returning."""
    results: list[CommandResult] = []
    server: subprocess.Popen | None = None
    token = ""
    cuda = _cuda_available()
    try:
        for cmd in story.commands:
            text = re.sub(r"\bTOKEN\b", token, cmd.text) if token else cmd.text
            t0 = time.perf_counter()
            if text.startswith("hws serve"):
                server, token = _start_server(text, env, workdir, workdir / "serve.log")
                res = CommandResult(
                    story.title, cmd.line, cmd.text, 0, time.perf_counter() - t0, "background"
                )
            else:
                proc = subprocess.run(["bash", "-o", "pipefail", "-c", text], cwd=workdir, env=env,
                                      capture_output=True, text=True, timeout=timeout)  # fmt: skip
                output = proc.stdout + proc.stderr
                needs_cuda = bool(_CUDA_NOTE.search(cmd.text)) and not cuda
                if needs_cuda:
                    refused = proc.returncode != 0 and "cuda" in output.lower() and "Traceback" not in output
                    outcome = "refused-as-documented" if refused else "failed"
                else:
                    outcome = "ok" if proc.returncode == 0 and "Traceback" not in output else "failed"
                res = CommandResult(story.title, cmd.line, cmd.text, proc.returncode, time.perf_counter() - t0,
                                    outcome, _tail(output))  # fmt: skip
                if outcome == "ok":
                    res.answer = _answer(text, env, workdir, timeout)
            results.append(res)
            if on_result is not None:
                on_result(res)
            if res.outcome == "failed":
                break
    finally:
        if server is not None:
            _stop(server)
    return results


def link_repo_files(repo: Path, workdir: Path) -> None:
    """Make the repository's ``docs/`` and ``tests/`` (example inputs the stories name) visible in
    ``workdir``, as they are to a user who runs the stories from the repository root."""
    for name in ("docs", "tests"):
        target = workdir / name
        if (repo / name).is_dir() and not target.exists():
            target.symlink_to((repo / name).resolve(), target_is_directory=True)


def story_env(workdir: Path, data_dir: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a fresh user in ``workdir``: its own store, MLflow database and artifacts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HWSURROGATE_", "MLFLOW_"))}
    env |= {
        "HWSURROGATE_STORE": str(workdir / "store"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "HWSURROGATE_MLFLOW_ARTIFACTS": str(workdir / "mlruns"),
        "HWSURROGATE_NO_PROGRESS": "1",
    }
    if data_dir is not None:  # absolute: the stories run in another folder (CI passes ../shared/data)
        env["HWSURROGATE_DATA_DIR"] = str(Path(data_dir).resolve())
    return env | (extra or {})


@click.command("stories")
@click.option("--readme", type=click.Path(exists=True, dir_okay=False, path_type=Path), default="README.md",
              show_default=True, help="The README whose stories to run.")  # fmt: skip
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Working folder (default: a new temporary folder, removed afterwards).")  # fmt: skip
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              envvar="HWSURROGATE_DATA_DIR", help="The public data (default: $HWSURROGATE_DATA_DIR).")  # fmt: skip
@click.option(
    "--story", "only", multiple=True, help="Only stories whose title contains this text (repeatable)."
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Save the report.")
def bench_stories(
    readme: Path, workdir: Path | None, data_dir: Path | None, only: tuple[str, ...], json_path: Path | None
) -> None:
    """Run every README user story as written, in order, on the public data; check the answers.

    Each story's commands run in one fresh folder (own store and MLflow), like a new user's. A row
    per command says whether it worked and how long it took; each prediction is compared with the
    measured value when the store has one. Stops a story at its first failing command.
    """
    import tempfile

    from hwsurrogate.benchmarks.report import BenchReport

    report = BenchReport("stories", protocol=f"README {readme} stories, run as written in one fresh folder")
    cleanup = workdir is None
    root = Path(tempfile.mkdtemp(prefix="hws-stories-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    link_repo_files(readme.parent, root)
    env = story_env(root, data_dir)
    results: list[CommandResult] = []

    def show(res: CommandResult) -> None:
        mark = {"ok": "ok", "background": "bg", "refused-as-documented": "ok*", "failed": "FAIL"}[res.outcome]
        click.echo(f"[{mark:>4}] {res.seconds:7.1f} s  {res.story[:28]:<28} {res.command[:90]}", err=True)
        if res.outcome == "failed":
            click.echo(res.tail, err=True)

    try:
        for story in readme_stories(readme):
            if only and not any(o.lower() in story.title.lower() for o in only):
                continue
            results += run_story(story, root, env, on_result=show)
    finally:
        if cleanup:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    for res in results:
        report.add(f"{res.story[:40]}: {shlex.split(res.command)[1] if res.command.startswith('hws') else 'shell'}",
                   res.outcome, res.seconds, note=res.command[:160], n=res.line)  # fmt: skip
        err = res.answer.get("error_pct")
        if err is not None:
            report.add(
                "prediction error vs measured (%)", res.story[:40], err, target=25.0, note=res.command[:160]
            )
    failed = sum(r.outcome == "failed" for r in results)
    report.add("commands failed", "all stories", float(failed), target=0.0, n=len(results))
    report.details["results"] = [asdict(r) for r in results]
    report.finish()
    click.echo(report.table())
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=1))
    if failed:
        raise SystemExit(1)
