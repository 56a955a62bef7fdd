"""Imports every recommender module so that each registers itself in `recommenders.base.RECOMMENDERS`."""
from recommenders import knn  # noqa: F401
