"""`import tfds_fma` registers the TFDS dataset `fma`: `tfds.load('fma/small')`."""
from tfds_fma.fma import Builder, FmaConfig

__all__ = ["Builder", "FmaConfig"]
