"""The experiment matrix the asset factories iterate over: which backbones are embedded and which
recommenders are trained on each. Add a name here (it must be registered in embedders/ or recommenders/)
and the asset graph grows by a branch; nothing else changes."""

BACKBONES: tuple[str, ...] = ("random", "handcrafted")
HOT_RECOMMENDERS: tuple[str, ...] = ("knn",)
BASELINE_BACKBONE = "random"  # every system is tested against its twin on this backbone
REPORT_KS: tuple[int, ...] = (10, 20, 50)
HEADLINE_K = 50
