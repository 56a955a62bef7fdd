"""Imports every recommender module so that each registers itself in `recommenders.base.RECOMMENDERS`."""
from recommenders import knn  # noqa: F401
from recommenders import popularity  # noqa: F401
from recommenders import ease  # noqa: F401
from recommenders import shallow  # noqa: F401
from recommenders import bert4rec  # noqa: F401
from recommenders import contrastive  # noqa: F401
from recommenders import hybrid  # noqa: F401
from recommenders import acarec  # noqa: F401
