"""What a task needs to know of its dataset, from the built dataset (training) or from the
`dataset_info.json` a run keeps (everything that reads a run back)."""
import dataclasses


@dataclasses.dataclass(frozen=True)
class DataSpec:
    name: str  # e.g. 'fma/small'
    class_names: tuple[str, ...]
    sample_rate: int
    crop_samples: int  # samples per training crop

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
