"""The experiment matrix the asset factories iterate over: which backbones are embedded and which
recommenders are trained on each. Add a name here (it must be registered in embedders/ or recommenders/)
and the asset graph grows by a branch; nothing else changes."""
import os
from dataclasses import dataclass, field, replace

BASELINE_BACKBONE = "random"  # every system is tested against its twin on this backbone
NO_BACKBONE = "none"  # the backbone label of pure collaborative baselines
REPORT_KS: tuple[int, ...] = (10, 20, 50)
HEADLINE_K = 50

# The studies an experiment can run. "hot" is the backbone x recommender matrix and always runs; the others
# need more of the catalog than audio and listening: cold start needs tracks first played after the time
# cutoff, artist similarity needs the `artist_edges` table, text search needs tags or captions.
STUDIES: tuple[str, ...] = ("hot", "cold_start", "artist_similarity", "text_search")


@dataclass(frozen=True)
class Experiment:
    backbones: tuple[str, ...] = ("random", "handcrafted", "musicnn_mtt")
    content_recommenders: tuple[str, ...] = ("knn", "shallow", "bert4rec", "contrastive", "hybrid")
    cf_baselines: tuple[str, ...] = ("popularity", "ease")
    studies: tuple[str, ...] = STUDIES
    # constructor options per recommender; the demo caps epochs so `make demo` fits in 15 minutes on 2 cores
    # (with 12 bert4rec and 15 shallow epochs it took 15 min 14 s once the tags pass joined)
    options: dict[str, dict] = field(default_factory=lambda: {
        "bert4rec": {"max_epochs": 10, "patience": 3},
        "shallow": {"max_epochs": 12, "patience": 3},
        "contrastive": {"max_epochs": 30, "patience": 3},
        "hybrid": {"max_epochs": 30, "patience": 3},
    })

    def __post_init__(self) -> None:
        unknown = sorted(set(self.studies) - set(STUDIES))
        if unknown or "hot" not in self.studies:
            raise ValueError(f"Experiment.studies must include 'hot' and name only {list(STUDIES)}; got {list(self.studies)}")

    def runs(self, study: str) -> bool:
        """Whether this experiment includes `study` (one of STUDIES)."""
        if study not in STUDIES:
            raise ValueError(f"unknown study {study!r}; known: {list(STUDIES)}")
        return study in self.studies

    def hot_systems(self) -> list[tuple[str, str]]:
        """Every (recommender, backbone) pair trained in the hot scenario."""
        return ([(r, b) for r in self.content_recommenders for b in self.backbones]
                + [(r, NO_BACKBONE) for r in self.cf_baselines])


DEMO = Experiment()


def experiment_from_env(base: Experiment = DEMO) -> Experiment:
    """`base` with the studies named in `MUSICREC_STUDIES` (comma-separated, e.g. "hot" or "hot,cold_start");
    unset or empty: `base` unchanged. ValueError (from Experiment) for an unknown study or one without "hot"."""
    names = tuple(s.strip() for s in os.environ.get("MUSICREC_STUDIES", "").split(",") if s.strip())
    return replace(base, studies=names) if names else base
