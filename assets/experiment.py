"""The experiment matrix the asset factories iterate over: which backbones are embedded and which
recommenders are trained on each. Add a name here (it must be registered in embedders/ or recommenders/)
and the asset graph grows by a branch; nothing else changes."""

BACKBONES: tuple[str, ...] = ("random", "handcrafted", "musicnn_mtt")
CONTENT_RECOMMENDERS: tuple[str, ...] = ("knn", "shallow", "bert4rec", "contrastive", "hybrid")
CF_BASELINES: tuple[str, ...] = ("popularity", "ease")  # no embeddings: backbone label "none"
NO_BACKBONE = "none"


def hot_systems() -> list[tuple[str, str]]:
    """Every (recommender, backbone) pair trained in the hot scenario."""
    return [(r, b) for r in CONTENT_RECOMMENDERS for b in BACKBONES] + [(r, NO_BACKBONE) for r in CF_BASELINES]
BASELINE_BACKBONE = "random"  # every system is tested against its twin on this backbone
REPORT_KS: tuple[int, ...] = (10, 20, 50)
HEADLINE_K = 50
