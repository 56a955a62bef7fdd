"""Anchor: MusiCNN embedding throughput (audio-seconds per wall-second, end to end: decode, resample to 16 kHz,
log-mel, model), ours (the PyTorch port `embedders.musicnn` through the pipeline's runner `embed_tracks`)
against the original `musicnn` package's `extractor(file, model='MTT_musicnn', extract_features=True)` on
TensorFlow (CPU), on the same 44.1 kHz stereo OGG and FLAC files.

Clips: Bach chorales of the music21 corpus rendered with the General-MIDI soundfont (`catalog.demo_music`, the
demo catalog's renderer) at 44.1 kHz, 30-60 s each, written as stereo (the right channel a 7 ms delayed,
quieter copy), alternately OGG Vorbis and FLAC. Both sides first process one clip untimed (TensorFlow graph,
librosa and torch warm-up), then all clips timed, 2 threads each.

The original runs in a throwaway venv (`anchors.run_in_venv`): musicnn 0.1.0's code uses `tf.compat.v1.layers`,
which TensorFlow dropped with Keras 3 (2.16), so the venv pins tensorflow-cpu 2.15.1 and numpy < 2; the
musicnn package itself (code and weights) is the one the main .venv holds (installed with --no-deps). Its
extractor computes tags and features in one call per file; so does our pipeline (the embedding step runs
`EmbeddingWithTags`: one decode and one forward give the embedding and the tag tables), so there are two rows:
embedding only, and embedding + tags as the pipeline computes them.

Wall time on a shared machine swings with the other processes; each side is therefore also given in audio
seconds per CPU-second of its process (all threads; time.process_time), which the load disturbs much less.
Full runs time each side twice and keep the faster pass.

Quality: the tag probabilities (mean over each clip's patches), ours against the original's (largest absolute
difference, top-tag agreement), and the cosine of the first patch's 200-d penultimate layer. Only the first
patch: musicnn 0.1.0's extractor returns the first patch's penultimate (and cnn1..3) values for every patch (with
its BATCH_SIZE of 1, the loop over the later batches appends the first batch's variables; the taggram is right).
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import soundfile as sf

THREADS = 2
SAMPLE_RATE = 44100  # Hz, the clips' rate
MUSICNN_PACKAGES = ["tensorflow-cpu==2.15.1", "numpy<2"]  # musicnn 0.1.0 needs tf.compat.v1.layers (Keras 2)
RIGHT_DELAY_S = 0.007  # the right channel: the left delayed by 7 ms, at 0.8 of its level

# Runs in the throwaway venv: argv = JSON list of paths (the first is the untimed warm-up), threads, passes. Prints
# one JSON line: seconds and cpu_s (wall and process CPU time of the fastest pass over the other files), audio_s
# (their duration), first_patch (per file: the penultimate layer of its first patch), tags (per file: the mean
# taggram), versions.
MUSICNN_SCRIPT = r'''
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import soundfile as sf
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[2]))
tf.config.threading.set_inter_op_parallelism_threads(int(sys.argv[2]))
import librosa
from musicnn.extractor import extractor

paths, passes = json.loads(sys.argv[1]), int(sys.argv[3])
extractor(paths[0], model="MTT_musicnn", extract_features=True)  # warm-up: graph, checkpoint, librosa
best = None
for _ in range(passes):
    first_patch, tags = [], []
    started, cpu = time.perf_counter(), time.process_time()
    for path in paths[1:]:
        taggram, _, features = extractor(path, model="MTT_musicnn", extract_features=True)
        first_patch.append(features["penultimate"][0].tolist())
        tags.append(taggram.mean(axis=0).tolist())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if best is None or seconds < best[0]:
        best = (seconds, cpu)
print(json.dumps({"seconds": best[0], "cpu_s": best[1], "audio_s": sum(sf.info(p).duration for p in paths[1:]),
                  "first_patch": first_patch, "tags": tags,
                  "versions": f"tensorflow {tf.__version__}, librosa {librosa.__version__}, numpy {np.__version__}"}))
'''


def write_clips(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` stereo 44.1 kHz clips of 30-60 s in `folder`, alternately .ogg (Vorbis) and .flac (16 bit):
    chorales of the music21 corpus rendered by `catalog.demo_music.render` with varied instruments and drums."""
    from catalog.demo_music import RenderStyle, corpus_work_paths, load_composition, render

    rng = np.random.default_rng(seed)
    works = corpus_work_paths("bach")
    paths = []
    for index in range(count):
        piece = load_composition(works[int(rng.integers(len(works)))])
        seconds = float(rng.uniform(30.0, 60.0))
        style = RenderStyle(programs=tuple(int(p) for p in rng.choice([0, 24, 40, 48, 52, 73], 4)),
                            tempo_bpm=float(rng.uniform(50, 80)), transpose=int(rng.integers(-5, 6)),
                            drums=("none", "light", "driving")[index % 3])
        left = render(piece, style, sample_rate=SAMPLE_RATE, max_seconds=seconds)
        delay = int(RIGHT_DELAY_S * SAMPLE_RATE)
        right = 0.8 * np.concatenate([np.zeros(delay, np.float32), left[:-delay]])
        path = folder / f"clip{index:02d}.{'ogg' if index % 2 == 0 else 'flac'}"
        sf.write(str(path), np.stack([left, right], axis=1), SAMPLE_RATE,
                 subtype="VORBIS" if path.suffix == ".ogg" else "PCM_16")
        paths.append(path)
    return paths


def run_ours(paths: list[Path], with_tags: bool, passes: int,
             precision: str = "float32") -> tuple[float, float, np.ndarray | None]:
    """(wall seconds, CPU seconds, (n, 50) tag probabilities or None) of the fastest of `passes` runner passes over
    `paths[1:]`, after an untimed warm-up on `paths[0]`; with `with_tags` the runner embeds through
    `EmbeddingWithTags` (embedding and tags from one forward), as the pipeline's embedding step does.
    `precision`: the backbone option (float32 or bfloat16)."""
    from embedders.base import create_embedder
    from embedders.runner import embed_tracks
    from embedders.tags import EmbeddingWithTags

    embedder = create_embedder("musicnn_mtt", device="cpu", precision=precision)
    table = pl.DataFrame({"track_id": [p.stem for p in paths], "audio_path": [p.name for p in paths]})
    root = paths[0].parent
    embed_tracks(embedder, table.head(1), root, progress=lambda _: None)  # warm-up
    timed, best, tags = table.slice(1), (float("inf"), 0.0), None
    for _ in range(passes):
        started, cpu = time.perf_counter(), time.process_time()
        if with_tags:
            both = embed_tracks(EmbeddingWithTags(embedder), timed, root, progress=lambda _: None).vectors.matrix
            tags = both[:, embedder.dim:]
        else:
            embed_tracks(embedder, timed, root, progress=lambda _: None)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        best = min(best, (seconds, cpu))
    return best[0], best[1], tags


def first_patches(paths: list[Path]) -> np.ndarray:
    """(n, 200) our penultimate layer of each file's first 3 s patch (decoded as the runner decodes)."""
    from embedders.audio import load_mono
    from embedders.base import create_embedder

    embedder = create_embedder("musicnn_mtt", device="cpu")
    return np.stack([embedder.patch_outputs([load_mono(p, embedder.sample_rate, max_seconds=4.0)])[1]
                     .penultimate[0].numpy() for p in paths])


def run_original(paths: list[Path], passes: int) -> dict:
    """The original extractor in its throwaway venv: the script's JSON, or {"error": reason} when it cannot run."""
    from benchmarks.anchors import run_in_venv

    try:
        return run_in_venv("musicnn", MUSICNN_PACKAGES, MUSICNN_SCRIPT,
                           [json.dumps([str(p) for p in paths]), str(THREADS), str(passes)])
    except Exception as error:  # the row then says why the original did not run
        return {"error": " ".join(f"{type(error).__name__}: {error}".split())[-300:]}


def stage_profile(path: Path) -> dict[str, float]:
    """CPU seconds (time.process_time, all threads) per stage of our code for one clip: decode (soundfile and
    downmix), resample (soxr to 16 kHz), log-mel and patches, model (every patch, one forward)."""
    import soxr
    import torch

    from embedders.base import create_embedder
    from embedders.mel import SAMPLE_RATE as MODEL_RATE
    from embedders.musicnn import cut_patches

    embedder = create_embedder("musicnn_mtt", device="cpu")
    times = {}
    started = time.process_time()
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    times["decode"] = time.process_time() - started
    started = time.process_time()
    wave = soxr.resample(mono, rate, MODEL_RATE, quality="HQ").astype(np.float32)
    times["resample"] = time.process_time() - started
    with torch.inference_mode():
        started = time.process_time()
        patches = cut_patches(embedder.log_mel(wave), embedder.hop_frames)
        times["mel"] = time.process_time() - started
        started = time.process_time()
        for start in range(0, len(patches), embedder.patches_per_batch):
            embedder.model(patches[start:start + embedder.patches_per_batch])
        times["model"] = time.process_time() - started
    return times


def measure(quick: bool) -> list[dict]:
    """Two rows (embedding only; embedding + tags) of audio-seconds per wall-second, ours and the original's."""
    import torch

    from benchmarks.anchors import device_label

    torch.set_num_threads(THREADS)
    count, passes = (4, 1) if quick else (9, 2)  # the first clip is the warm-up
    with tempfile.TemporaryDirectory(prefix="anchor_musicnn_") as tmp:
        paths = write_clips(Path(tmp), count)
        audio_s = sum(sf.info(str(p)).duration for p in paths[1:])
        seconds, cpu, _ = run_ours(paths, with_tags=False, passes=passes)
        both_seconds, both_cpu, ours_tags = run_ours(paths, with_tags=True, passes=passes)
        bf16_seconds, bf16_cpu, bf16_tags = run_ours(paths, with_tags=True, passes=passes, precision="bfloat16")
        original = run_original(paths, passes)
        ours_first = first_patches(paths[1:])
        stages = stage_profile(paths[1])
    profile = ", ".join(f"{name} {value / sum(stages.values()):.0%}" for name, value in stages.items())
    common = (f"{count - 1} clips, {audio_s:.0f} s of 44.1 kHz stereo OGG/FLAC, best of {passes}; ours "
              f"{audio_s / seconds:.0f}x real time (goal 100x); our CPU time on one clip: {profile}")
    if "error" in original:
        return [{"name": "MusiCNN embedding, end to end", "ours": audio_s / seconds, "anchor": None,
                 "unit": "audio-s/s", "device": device_label(),
                 "note": f"original musicnn did not run: {original['error']}; {common}"}]
    theirs_tags = np.asarray(original["tags"], np.float32)
    theirs_first = np.asarray(original["first_patch"], np.float32)
    cosine = (ours_first * theirs_first).sum(1) / (np.linalg.norm(ours_first, axis=1)
                                                  * np.linalg.norm(theirs_first, axis=1))

    def agreement(tags: np.ndarray) -> str:
        return (f"tag probabilities ours vs original: max |diff| {np.abs(tags - theirs_tags).max():.4f}, top tag "
                f"agrees on {int((tags.argmax(1) == theirs_tags.argmax(1)).sum())}/{len(tags)} clips")

    quality = f"{agreement(ours_tags)}; first-patch embedding cosine min {cosine.min():.5f}"
    anchor, anchor_cpu = original["audio_s"] / original["seconds"], original["audio_s"] / original["cpu_s"]
    venv = f"musicnn 0.1.0 MTT_musicnn on {original['versions']} ({original['_venv']})"
    return [
        {"name": "MusiCNN embedding, end to end", "ours": audio_s / seconds, "anchor": anchor,
         "unit": "audio-s/s", "device": device_label(), "quality": quality,
         "note": f"{venv}; per CPU-second ours {audio_s / cpu:.1f}, original {anchor_cpu:.1f} audio-s "
                 f"({anchor_cpu and audio_s / cpu / anchor_cpu:.2f}x); {common}"},
        {"name": "MusiCNN embedding + tags, end to end", "ours": audio_s / both_seconds, "anchor": anchor,
         "unit": "audio-s/s", "device": device_label(),
         "note": f"ours as the pipeline runs it: one decode and one forward give both (EmbeddingWithTags); the "
                 f"original: one extractor call per file gives both; per CPU-second ours "
                 f"{audio_s / both_cpu:.1f}, original {anchor_cpu:.1f} audio-s"},
        {"name": "MusiCNN embedding + tags, end to end, ours precision bfloat16", "ours": audio_s / bf16_seconds,
         "anchor": anchor, "unit": "audio-s/s", "device": device_label(), "quality": agreement(bf16_tags),
         "note": f"the backbone option precision: bfloat16 (model in bfloat16, features and outputs float32); "
                 f"{audio_s / bf16_seconds:.0f}x real time; per CPU-second ours {audio_s / bf16_cpu:.1f}, original "
                 f"{anchor_cpu:.1f} audio-s"},
    ]
