"""Signal processing on the accelerator: the log-mel / MFCC frontend (`frontend`, with the one
STFT), waveform and spectrogram augmentations (`augment`), and the log-mel -> audio inverse
(`vocoder`)."""
