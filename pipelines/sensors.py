"""New catalog tracks: a sensor that notices new batch folders, and a nightly schedule that embeds whatever
is missing. Both launch the `embed` job (catalog tables + embeddings); everything below the embeddings then
reruns through the automation conditions only if the embeddings' data version changed."""
import json
from pathlib import Path

import dagster as dg

from assets.experiment import Experiment, FolderCatalog
from catalog.ingest import AUDIO_SUFFIXES


def scan_batches(root: Path, log) -> list[str]:
    """Batch folder names directly under `root`; logs every file that will be skipped (not audio)."""
    batches = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() not in AUDIO_SUFFIXES:
                log.info(f"skipping {path}: not an audio file ({path.suffix or 'no suffix'})")
        batches.append(folder.name)
    return batches


def build_new_batches_sensor(experiment: Experiment) -> dg.SensorDefinition:
    """The sensor watching the experiment's catalog folder (it skips every tick for other catalog kinds)."""
    catalog = experiment.catalog

    @dg.sensor(job_name="embed", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Registers new batch folders of a folder catalog and requests their embedding.")
    def new_catalog_batches(context: dg.SensorEvaluationContext):
        if not isinstance(catalog, FolderCatalog):
            return dg.SkipReason(f"catalog kind is {catalog.kind!r}: only a folder catalog receives new batches")
        root = Path(catalog.folder)
        if not root.is_dir():
            return dg.SkipReason(f"catalog folder {root} does not exist")
        known = set(json.loads(context.cursor)) if context.cursor else set()
        batches = scan_batches(root, context.log)
        new = [b for b in batches if b not in known]
        if not new:
            return dg.SkipReason(f"no new batch folder under {root} ({len(batches)} known)")
        context.update_cursor(json.dumps(batches))
        context.log.info(f"new catalog batches: {new}")
        return dg.RunRequest(run_key="batches:" + ",".join(new), tags={"musicrec/new_batches": ",".join(new)})

    return new_catalog_batches


nightly_reembed = dg.ScheduleDefinition(
    name="nightly_reembed", job_name="embed", cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every night: embed whatever catalog batches have no up-to-date embeddings yet.",
)
