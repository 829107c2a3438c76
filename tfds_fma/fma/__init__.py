"""The `fma` TFDS dataset (Free Music Archive)."""
from tfds_fma.fma.fma_dataset_builder import Builder, FmaConfig

__all__ = ["Builder", "FmaConfig"]
