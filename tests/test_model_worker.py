"""`serving.model_worker.WorkerProcess`: calls answered by a real spawned worker over its pipe, errors raised
in the worker re-raised in the server, and a worker killed mid-call failing only that call (the next call
starts a new process)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from embedders.handcrafted import HandcraftedEmbedder
from serving.model_worker import WorkerDied, WorkerProcess

pytestmark = pytest.mark.filterwarnings("ignore:Trying to estimate tuning:UserWarning")

RATE = 22050  # Hz, the handcrafted backbone's rate
SPEC = json.dumps({"module": "embedders.handcrafted", "name": "handcrafted", "options": {}}, sort_keys=True)


def write_tone(path: Path, seconds: float, hz: float) -> Path:
    t = np.arange(int(seconds * RATE)) / RATE
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), RATE)
    return path


def test_calls_errors_and_a_killed_worker(tmp_path) -> None:
    short = write_tone(tmp_path / "short.wav", 2.0, 440.0)
    long = write_tone(tmp_path / "long.wav", 240.0, 220.0)  # seconds of work: still running when killed
    (tmp_path / "notes.wav").write_text("not audio")

    async def scenario() -> tuple:
        worker = WorkerProcess("embed")
        try:
            vector = await worker.call("embed", SPEC, str(short))
            first_pid = worker.pid
            with pytest.raises(ValueError, match="notes.wav: cannot decode audio"):
                await worker.call("embed", SPEC, str(tmp_path / "notes.wav"))
            doomed = worker.call("embed", SPEC, str(long))
            queued = worker.call("embed", SPEC, str(short))  # waits in the server behind the doomed call
            await asyncio.sleep(0.5)
            os.kill(first_pid, signal.SIGKILL)
            with pytest.raises(WorkerDied, match="embed worker ended"):
                await doomed
            again = await queued
            return vector, again, first_pid, worker.pid
        finally:
            worker.close()

    vector, again, first_pid, second_pid = asyncio.run(scenario())
    expected = HandcraftedEmbedder().embed([sf.read(str(short), dtype="float32")[0]])[0]
    np.testing.assert_allclose(vector, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again, vector)
    assert second_pid is not None and second_pid != first_pid


class _ThreeArgumentError(ValueError):
    """An exception pickle cannot rebuild (its constructor wants more than its message)."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")


def test_errors_that_do_not_pickle_keep_their_kind_and_message() -> None:
    from serving.model_worker import _portable

    plain = ValueError("bad file")
    assert _portable(plain) is plain
    rebuilt = _portable(_ThreeArgumentError("a.wav", 3, "broken"))
    assert type(rebuilt) is ValueError and str(rebuilt) == "_ThreeArgumentError: a.wav:3: broken"
