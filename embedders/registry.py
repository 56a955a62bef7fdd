"""Imports every backbone module so that each registers itself in `embedders.base.BACKBONES`."""
from embedders import handcrafted, random_baseline  # noqa: F401
from embedders import musicnn  # noqa: F401
from embedders import clap  # noqa: F401
from embedders import hf_audio  # noqa: F401
