"""Layers the model families share: convolutions fast on every backend (`conv`, `depthwise`),
pooling, spectral normalisation and the conv-BN-activation blocks (`layers`)."""
