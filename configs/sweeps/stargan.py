"""Search space for the StarGAN: the style-versus-content trade-off of its loss weights and the
two learning rates.

  python -m jaxgenre.sweep --config configs/stargan.py:demo --space configs/sweeps/stargan.py \
      --study_dir runs/sweep_st --objective val_target_accuracy:max,val_chroma_kept:max \
      --trials 24 --timeout 2h

Two objectives (the transfer proxy's target accuracy and chroma kept, on validation) make the
result a Pareto front: the trade-off every style-transfer table shows by hand.
"""
from jaxgenre.sweep.space import log_uniform


def get_space():
    return {
        "gan.g_learning_rate": log_uniform(3e-5, 1e-3),
        "gan.d_learning_rate": log_uniform(3e-5, 1e-3),
        "gan.adv_weight": log_uniform(0.25, 8.0),
        "gan.cycle_weight": log_uniform(0.5, 20.0),
        "gan.identity_weight": log_uniform(0.1, 10.0),
        "gan.chroma_weight": log_uniform(0.1, 10.0),
        "gan.classifier_weight": log_uniform(0.1, 10.0),
    }
