"""Weights from outside: import directories and warm starts (`import_dir`), Keras ImageNet
weights (`keras_weights`) and the original musicnn (`musicnn_original`, `musicnn_wheel`)."""
