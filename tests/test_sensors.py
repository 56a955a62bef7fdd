"""The new-batch sensor (pipelines/sensors.py::build_new_batches_sensor) evaluated with Dagster's own sensor context
on a folder catalog: first sight of the batches, a quiet second tick, a new batch, skipped non-audio files, and
a demo catalog that never receives batches."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import dagster as dg
from conftest import write_sine

from assets.experiment import parse_experiment
from pipelines.sensors import build_new_batches_sensor

TAG = "musicrec/new_batches"


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def sensor_for(folder: Path, source: str = "folder") -> dg.SensorDefinition:
    """The sensor of an experiment whose catalog is the folder `folder` (or, source "demo", the demo)."""
    catalog = {"kind": "folder", "folder": str(folder)} if source == "folder" else {"kind": source, "size": "tiny"}
    experiment = parse_experiment({"name": "t", "storage": str(folder.parent / "storage"), "catalog": catalog,
                                   "backbones": {"random": {}}, "recommenders": {"knn": {}}}, base=folder.parent)
    return build_new_batches_sensor(experiment)


def evaluate(folder: Path, cursor: str | None = None, source: str = "folder"):
    """(sensor result, context after the evaluation, log messages of the evaluation)."""
    context = dg.build_sensor_context(cursor=cursor)
    records = Records()
    context.log.addHandler(records)  # the context keeps one logger: the sensor logs through this one
    return sensor_for(folder, source)(context), context, records.messages


def catalog_folder(tmp_path: Path, batches=("b000", "b001")) -> Path:
    folder = tmp_path / "catalog"
    for batch in batches:
        write_sine(folder / batch / "tone0.wav", seconds=0.2)
        write_sine(folder / batch / "tone1.flac", seconds=0.2, freq=880.0)
    return folder


def test_first_evaluation_requests_every_batch_and_sets_the_cursor(tmp_path):
    result, context, messages = evaluate(catalog_folder(tmp_path))
    assert isinstance(result, dg.RunRequest)
    assert result.tags[TAG] == "b000,b001"
    assert result.run_key == "batches:b000,b001"
    assert json.loads(context.cursor) == ["b000", "b001"]
    assert any("new catalog batches: ['b000', 'b001']" in m for m in messages)


def test_second_evaluation_with_the_cursor_skips(tmp_path):
    folder = catalog_folder(tmp_path)
    _, first, _ = evaluate(folder)
    result, context, _ = evaluate(folder, cursor=first.cursor)
    assert isinstance(result, dg.SkipReason)
    assert "no new batch folder" in result.skip_message and "2 known" in result.skip_message
    assert context.cursor == first.cursor


def test_a_new_batch_folder_yields_a_run_request_for_that_batch_only(tmp_path):
    folder = catalog_folder(tmp_path)
    _, first, _ = evaluate(folder)
    write_sine(folder / "b002" / "new.wav", seconds=0.2)
    result, context, _ = evaluate(folder, cursor=first.cursor)
    assert isinstance(result, dg.RunRequest)
    assert result.tags[TAG] == "b002"
    assert result.run_key == "batches:b002"
    assert json.loads(context.cursor) == ["b000", "b001", "b002"]


def test_non_audio_files_are_logged_as_skipped(tmp_path):
    folder = catalog_folder(tmp_path, batches=("b000",))
    (folder / "b000" / "notes.txt").write_text("liner notes")
    (folder / "b000" / "cover").write_bytes(b"\x89PNG")
    result, _, messages = evaluate(folder)
    assert isinstance(result, dg.RunRequest) and result.tags[TAG] == "b000"
    skipped = [m for m in messages if m.startswith("skipping")]
    assert len(skipped) == 2
    assert any("notes.txt: not an audio file (.txt)" in m for m in skipped)
    assert any("cover: not an audio file (no suffix)" in m for m in skipped)
    assert not any("tone0.wav" in m or "tone1.flac" in m for m in skipped)


def test_demo_catalog_returns_a_skip_reason(tmp_path):
    result, context, _ = evaluate(catalog_folder(tmp_path), source="demo")
    assert isinstance(result, dg.SkipReason)
    assert "'demo'" in result.skip_message and "only a folder catalog" in result.skip_message
    assert context.cursor is None


def test_missing_folder_returns_a_skip_reason(tmp_path):
    result, _, _ = evaluate(tmp_path / "nowhere")
    assert isinstance(result, dg.SkipReason) and "does not exist" in result.skip_message
