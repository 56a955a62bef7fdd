"""Say what a file that does not decode as audio actually is, for failure messages a user understands
(libsndfile's own message for a text file named `.mp3` is "File does not exist or is not a regular file
(possibly a pipe?)")."""
from __future__ import annotations

from pathlib import Path

SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"), (b"PK\x03\x04", "a ZIP archive"), (b"\x1f\x8b", "a gzip archive"),
    (b"<!DOCTYPE html", "an HTML page"), (b"<html", "an HTML page"), (b"\x7fELF", "a program (ELF)"),
)


def describe(path: str | Path, probe_bytes: int = 512) -> str:
    """A short description of what `path` is: missing, empty, a known non-audio format, text, or unknown
    bytes (shown in hex)."""
    path = Path(path)
    if not path.exists():
        return "the file does not exist (or is a broken link)"
    if not path.is_file():
        return "not a regular file"
    size = path.stat().st_size
    if size == 0:
        return "an empty file (0 bytes)"
    with open(path, "rb") as handle:
        head = handle.read(probe_bytes)
    for magic, name in SIGNATURES:
        if head.lstrip().startswith(magic):
            return f"{name}, not audio"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"a text file, not audio (it starts {text[:40].strip()!r})"
    return f"not an audio format soundfile reads ({size} bytes, starting {head[:8].hex(' ')})"
