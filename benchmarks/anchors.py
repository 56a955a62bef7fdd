"""Anchored comparisons: each of ours against a plain, widely used way of doing the same thing (the anchor), on the
same data, in the same process tree, one after the other, so that our figures can be read against a known peer.

    .venv/bin/python benchmarks/anchors.py [--quick] [--only NAME ...] [--timeout 900] [--in-process]

Each comparison is a module `benchmarks/anchor_<name>.py` exposing `measure(quick: bool) -> list[dict]`; each dict
has keys name, ours, anchor (numbers), unit, device (str), and optionally note and quality (str). They run in the
order of `ORDER` (modules that are absent are skipped), then any other `anchor_*.py` found here, each in its own
subprocess so that one failing comparison prints a row with its error instead of sinking the table.

The table (Markdown) goes to stdout and to `storage/benchmarks/anchors.md`. Its `ratio` column is oriented so that
> 1 always means ours is better: ours / anchor for throughput units (ending in "/s"), anchor / ours for time
units (s, ms, ... per something).

Peers that cannot be dependencies of the project run through `run_in_venv`: a throwaway venv under
`storage/anchor_venvs/<name>` that sees the main .venv's packages (torch is reused) with the peer pip-installed on
top; when the peer is already importable from the main .venv, the main .venv runs the script and no venv is made.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MAIN_PYTHON = REPO / ".venv" / "bin" / "python"
VENV_ROOT = REPO / "storage" / "anchor_venvs"
TABLE_PATH = REPO / "storage" / "benchmarks" / "anchors.md"
ORDER = ("graphsage", "topk", "rerun", "text_search", "bert4rec", "musicnn")
# pip name -> import name, where they differ beyond "-" -> "_"
IMPORT_NAMES = {"faiss-cpu": "faiss", "faiss-gpu": "faiss", "sentence-transformers": "sentence_transformers",
                "torch-geometric": "torch_geometric", "scikit-learn": "sklearn"}
TIME_UNITS = {"ns", "us", "µs", "ms", "s", "min", "h"}


def device_label() -> str:
    """What the measurements ran on, e.g. 'CPU AMD EPYC, 2 threads' (torch's intra-op thread count)."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model}, {torch.get_num_threads()} threads"


def _import_name(package: str) -> str:
    """'faiss-cpu==1.15.1' -> 'faiss'."""
    bare = package.split(";")[0]
    for sep in ("==", ">=", "<=", "~=", "<", ">", "["):
        bare = bare.split(sep)[0]
    bare = bare.strip()
    return IMPORT_NAMES.get(bare.lower(), bare.replace("-", "_"))


def importable_in_main(packages: list[str]) -> bool:
    """Whether every package (pip spelling, versions allowed) imports in the main .venv."""
    if not packages:
        return True
    code = "; ".join(f"import {_import_name(p)}" for p in packages)
    return subprocess.run([str(MAIN_PYTHON), "-c", code], capture_output=True).returncode == 0


def _purelib(python: Path) -> str:
    """The site-packages folder of that interpreter."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def throwaway_venv(name: str, packages: list[str]) -> Path:
    """The python of `storage/anchor_venvs/<name>`, created if needed: `python -m venv --system-site-packages`,
    plus a .pth file putting the main .venv's site-packages after its own (so torch and the rest are reused), then
    `pip install packages` into it. Reinstalls when `packages` changed since the last call."""
    folder = VENV_ROOT / name
    python = folder / "bin" / "python"
    marker = folder / ".musicrec-packages.json"
    if python.exists() and marker.exists() and json.loads(marker.read_text()) == packages:
        return python
    folder.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(folder)], check=True)
    main_site = _purelib(MAIN_PYTHON)  # the main .venv's site-packages, after the venv's own
    Path(_purelib(python), "_musicrec_main_venv.pth").write_text(main_site + "\n")
    if packages:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages],
                       check=True)
    marker.write_text(json.dumps(packages))
    return python


def last_json(stdout: str) -> dict:
    """The last line of `stdout` that parses as a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object on stdout")


def run_in_venv(name: str, packages: list[str], script: str, args: list[str], timeout: float = 1800) -> dict:
    """Run a Python script where `packages` (pip spelling, e.g. "faiss-cpu==1.15.1") are importable, and return
    the JSON object it printed last on stdout, plus "_python" (the interpreter used) and "_venv" ("main .venv,
    peers already importable" or the throwaway venv's folder).

    script: a path to a .py file (absolute or relative to the repo root), or else the source text of one.
    The script runs with the repo root as working directory and on PYTHONPATH; stderr passes through.
    Raises RuntimeError (with the tail of the script's stdout) when it fails or prints no JSON.
    """
    if importable_in_main(packages):
        python, where = MAIN_PYTHON, "main .venv, peers already importable"
    else:
        python = throwaway_venv(name, packages)
        where = str(python.parent.parent.relative_to(REPO))
    path = Path(script) if script.endswith(".py") else None
    with tempfile.TemporaryDirectory() as tmp:
        if path is None:
            path = Path(tmp) / f"anchor_{name}.py"
            path.write_text(script)
        elif not path.is_absolute():
            path = REPO / path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([str(python), str(path), *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: script exited {done.returncode}: {done.stdout[-2000:]}")
    try:
        result = last_json(done.stdout)
    except ValueError as error:
        raise RuntimeError(f"{name}: {error}: {done.stdout[-2000:]}") from error
    return {**result, "_python": str(python), "_venv": where}


def wall_and_cpu(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run `command` from the repo root: (wall seconds, CPU seconds user + sys of it and its children, stdout
    and stderr together); RuntimeError with the output's tail if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} exited {done.returncode}: {done.stdout[-1500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stdout


def timed(fn, repeat: int = 1) -> float:
    """Best wall-clock seconds of `repeat` calls of fn()."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def comparisons() -> list[str]:
    """Names of the comparison modules present: `ORDER` first, then the others found here, alphabetically."""
    found = sorted(p.stem.removeprefix("anchor_") for p in BENCH.glob("anchor_*.py"))
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def ratio(row: dict) -> float | None:
    """> 1 means ours is better: ours/anchor for throughput units (ending in '/s'), anchor/ours for time units.
    A row may force the direction with higher_is_better (bool)."""
    ours, anchor = row.get("ours"), row.get("anchor")
    if not isinstance(ours, int | float) or not isinstance(anchor, int | float) or not ours or not anchor:
        return None
    higher = row.get("higher_is_better")
    if higher is None:
        unit = str(row.get("unit", "")).strip()
        if unit.endswith("/s"):
            higher = True
        elif unit.split("/")[0].strip() in TIME_UNITS:
            higher = False
        else:
            return None
    return ours / anchor if higher else anchor / ours


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "-" if value is None else str(value)


def markdown(rows: list[dict], header: str) -> str:
    """The Markdown table (with a header paragraph) of all rows."""
    lines = [header, "", "| name | ours | anchor | ratio | unit | device | quality / note |",
             "|---|---:|---:|---:|---|---|---|"]
    for row in rows:
        r = ratio(row)
        notes = "; ".join(str(row[k]) for k in ("quality", "note") if row.get(k))
        lines.append(f"| {row.get('name', '?')} | {_number(row.get('ours'))} | {_number(row.get('anchor'))} | "
                     f"{'-' if r is None else f'{r:.2f}x'} | {row.get('unit', '')} | {row.get('device', '')} | "
                     f"{notes.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def run_one(name: str, quick: bool, timeout: float, in_process: bool) -> list[dict]:
    """Rows of one comparison; a failure gives one row naming the error."""
    started = time.perf_counter()
    try:
        if in_process:
            rows = importlib.import_module(f"benchmarks.anchor_{name}").measure(quick)
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name] + (["--quick"] if quick else [])
            done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=timeout,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
            if done.returncode != 0:
                raise RuntimeError(f"exited {done.returncode}: {done.stdout.strip()[-300:]}")
            rows = last_json(done.stdout)["rows"]
    except Exception as error:  # any failure becomes a row
        message = " ".join(f"{type(error).__name__}: {error}".split())[:400]
        rows = [{"name": name, "ours": None, "anchor": None, "unit": "", "device": device_label(),
                 "note": f"FAILED {message}"}]
    print(f"[anchors] {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data / fewer repeats, for a smoke run")
    parser.add_argument("--only", nargs="+", default=None, help="comparison names (anchor_<name>.py)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per comparison")
    parser.add_argument("--in-process", action="store_true", help="no subprocess per comparison")
    parser.add_argument("--out", type=Path, default=TABLE_PATH)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one comparison in this process: print its rows as JSON
        rows = importlib.import_module(f"benchmarks.anchor_{args.child}").measure(args.quick)
        print(json.dumps({"rows": rows}, default=float))
        return
    names = comparisons()
    if args.only:
        missing = [n for n in args.only if n not in names]
        if missing:
            parser.error(f"no benchmarks/anchor_<name>.py for {missing}; present: {names}")
        names = [n for n in names if n in args.only]
    rows = [row for name in names for row in run_one(name, args.quick, args.timeout, args.in_process)]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    header = (f"Anchored comparisons ({'quick' if args.quick else 'full'} run, {time.strftime('%Y-%m-%d')}, commit "
              f"{commit}, {os.cpu_count()} CPUs, {platform.platform()}). ratio > 1 means ours is better: "
              "ours/anchor for throughput units, anchor/ours for time units.")
    table = markdown(rows, header)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
