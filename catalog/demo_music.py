"""Real compositions for the demo catalog: music21 corpus works turned into note lists and rendered to audio
with the General-MIDI soundfont that `pretty_midi` ships, through `tinysoundfont`.

Units: note times are in beats (quarter notes) in a `Composition`; `render` turns them into seconds with a
tempo in beats per minute and returns mono float32 samples in [-1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DRUM_CHANNEL = 9  # General MIDI percussion channel
KICK, SNARE, CLOSED_HAT = 36, 38, 42  # General MIDI percussion keys


@dataclass(frozen=True)
class Composition:
    """A polyphonic piece: one row per note. `part` indexes the voice (0 = top), times in beats."""

    work_id: str  # e.g. "bach/bwv10.7"
    title: str
    part: np.ndarray  # (n,) int
    pitch: np.ndarray  # (n,) int, MIDI key
    start_beats: np.ndarray  # (n,) float
    duration_beats: np.ndarray  # (n,) float
    n_parts: int
    mode: str  # "major" or "minor"


@dataclass(frozen=True)
class RenderStyle:
    """How a virtual artist plays a piece: General-MIDI programs per voice, tempo, transposition, drums."""

    programs: tuple[int, ...]  # GM program per voice (cycled when the piece has more voices)
    tempo_bpm: float
    transpose: int  # semitones
    drums: str  # "none", "light" or "driving"
    velocity: int = 90


def soundfont_path() -> Path:
    """The General-MIDI soundfont shipped inside the pretty_midi package (TimGM6mb.sf2, about 6 MB)."""
    import pretty_midi

    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.exists():
        raise FileNotFoundError(f"{path}: pretty_midi's bundled soundfont is missing; reinstall pretty_midi")
    return path


def corpus_work_paths(composer: str = "bach") -> list[Path]:
    """Paths of the music21 corpus works of `composer`, sorted (deterministic order)."""
    from music21 import corpus

    return sorted(Path(p) for p in corpus.getComposer(composer))


def load_composition(path: Path) -> Composition:
    """Parse a corpus work into a `Composition` (chords are split into notes; rests and grace notes dropped)."""
    from music21 import converter

    score = converter.parse(str(path))
    parts, pitches, starts, durations = [], [], [], []
    for part_index, part in enumerate(score.parts):
        for element in part.flatten().notes:
            length = float(element.duration.quarterLength)
            if length <= 0:
                continue
            for pitch in element.pitches:
                parts.append(part_index)
                pitches.append(int(pitch.midi))
                starts.append(float(element.offset))
                durations.append(length)
    if not pitches:
        raise ValueError(f"{path}: the work has no notes")
    try:
        mode = str(score.analyze("key").mode)
    except Exception:  # music21 raises several types when a key cannot be estimated
        mode = "major"
    title = str(score.metadata.title) if score.metadata and score.metadata.title else path.stem
    return Composition(
        work_id=f"{path.parent.name}/{path.stem}",
        title=title,
        part=np.asarray(parts),
        pitch=np.asarray(pitches),
        start_beats=np.asarray(starts),
        duration_beats=np.asarray(durations),
        n_parts=max(parts) + 1,
        mode=mode if mode in ("major", "minor") else "major",
    )


def _drum_events(style: RenderStyle, seconds: float) -> list[tuple[float, int, int]]:
    """(time_s, key, velocity) drum hits on eighth notes for `seconds` of music."""
    if style.drums == "none":
        return []
    eighth = 30.0 / style.tempo_bpm
    hits = []
    for step in range(int(seconds / eighth)):
        t = step * eighth
        beat_in_bar = (step // 2) % 4
        if step % 2 == 0 and beat_in_bar in (0, 2):
            hits.append((t, KICK, 110))
        if step % 2 == 0 and beat_in_bar in (1, 3):
            hits.append((t, SNARE, 95 if style.drums == "driving" else 70))
        if style.drums == "driving" or step % 2 == 0:
            hits.append((t, CLOSED_HAT, 70))
    return hits


def render(
    piece: Composition,
    style: RenderStyle,
    sample_rate: int = 22050,
    max_seconds: float = 15.0,
    soundfont: Path | None = None,
) -> np.ndarray:
    """Render `piece` in `style` to mono float32 audio of at most `max_seconds` (plus no tail), peak-normalised
    to 0.9. Shape (n_samples,)."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(str(soundfont or soundfont_path()))
    seconds_per_beat = 60.0 / style.tempo_bpm
    for channel in range(piece.n_parts):
        synth.program_select(channel, sfid, 0, style.programs[channel % len(style.programs)])
    synth.program_select(DRUM_CHANNEL, sfid, 128, 0, is_drums=True)

    events: list[tuple[float, int, int, int, int]] = []  # (time_s, order, channel, key, velocity); off first
    for part, pitch, start, length in zip(piece.part, piece.pitch, piece.start_beats, piece.duration_beats):
        t_on = float(start) * seconds_per_beat
        if t_on >= max_seconds:
            continue
        key = int(np.clip(pitch + style.transpose, 0, 127))
        t_off = min(float(start + length) * seconds_per_beat, max_seconds)
        events.append((t_on, 1, int(part), key, style.velocity))
        events.append((t_off, 0, int(part), key, 0))
    for t, key, velocity in _drum_events(style, max_seconds):
        events.append((t, 1, DRUM_CHANNEL, key, velocity))
    events.sort()
    total = int(max_seconds * sample_rate)
    out = np.zeros((total, 2), np.float32)
    position = 0
    for t, is_on, channel, key, velocity in events:
        target = min(int(t * sample_rate), total)
        if target > position:
            chunk = np.frombuffer(synth.generate(target - position), dtype=np.float32).reshape(-1, 2)
            out[position:target] = chunk
            position = target
        if is_on:
            synth.noteon(channel, key, velocity)
        else:
            synth.noteoff(channel, key)
    if position < total:
        out[position:] = np.frombuffer(synth.generate(total - position), dtype=np.float32).reshape(-1, 2)
    mono = out.mean(axis=1)
    peak = float(np.abs(mono).max())
    return (mono * (0.9 / peak)).astype(np.float32) if peak > 0 else mono
