"""Search space for the StarGAN: the style-versus-content trade-off of its loss weights, the two
learning rates and the small-data tools (DiffAugment, the onset-envelope term).

  python -m jaxgenre.sweep --config configs/stargan.py:demo --space configs/sweeps/stargan.py \
      --study_dir runs/sweep_st --objective val_target_accuracy:max,val_chroma_kept:max \
      --trials 24 --timeout 2h --start_from_config \
      --config.gan.classifier_workdir=runs/gan_classifier \
      --config.evals.val.classifier_workdir=runs/val_classifier

Two objectives (the transfer proxy's target accuracy and chroma kept, on validation) make the
result a Pareto front: the trade-off every style-transfer table shows by hand. The space holds
the `:demo` recipe's values, so --start_from_config measures the recipe as trial 0.
"""
from jaxgenre.sweep.space import choice, log_uniform


def get_space():
    return {
        "gan.g_learning_rate": log_uniform(1e-4, 1e-3),
        "gan.d_learning_rate": log_uniform(1e-4, 1e-3),
        "gan.adv_weight": log_uniform(1.0, 16.0),
        "gan.cycle_weight": log_uniform(1.0, 20.0),
        "gan.chroma_weight": log_uniform(0.25, 4.0),
        "gan.classifier_weight": log_uniform(0.25, 4.0),
        "gan.onset_weight": choice([0.0, 1.0, 4.0]),
        "gan.diff_augment": choice(["", "roll,cutout,gain"]),
    }
