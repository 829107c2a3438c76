"""Configs older than the code: keys added after runs were saved, filled in one place.

A run's `config.json` (or a user's config file) from before a key existed behaves as if it had
the key, with the value that reproduces how it was trained. Every config passes through
`with_added_keys` on its way in (`jaxgenre.train`, `rundir.load_config`), so the code reads
`config.frontend.compress` and keeps no fallback values of its own.
"""
import ml_collections

# task -> {key: the value runs saved without the key were trained with}
ADDED_KEYS = {
    "classifier": {"frontend.compress": "db", "frontend.log_gain": 10000.0,
                   "data.label": "genre_top", "model.init_from": None, "model.freeze_bn": False,
                   "optim.encoder_lr_scale": 1.0, "optim.freeze": []},
    "stargan": {"gan.chroma_weight": 0.0, "gan.onset_weight": 0.0, "gan.diff_augment": "",
                "model.eq_prior": 0.0},
    "autoencoder": {"gan.onset_weight": 0.0, "gan.diff_augment": "", "model.eq_prior": 0.0},
}
# task -> {section: its keys and values}: sections added after runs were saved
ADDED_SECTIONS = {
    "classifier": {"distill": {"teacher_workdir": None, "teacher_checkpoint": "best",
                               "temperature": 4.0, "weight": 0.5}},
}


def task_name(config: ml_collections.ConfigDict) -> str:
    return config.get("task", "classifier")  # runs saved before tasks existed were classifiers


def with_added_keys(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` with each key added for its task that it lacks set to the value
    older runs were trained with, and each section added since whole. Keys of other sections it
    does not have are left out."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for section, values in ADDED_SECTIONS.get(task_name(config), {}).items():
            if section not in config:
                config[section] = ml_collections.ConfigDict(values)
        for key, value in ADDED_KEYS.get(task_name(config), {}).items():
            section, leaf = key.split(".")
            if section in config and leaf not in config[section]:
                config[section][leaf] = value
    return config
