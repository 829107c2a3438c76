"""Trained runs restored for use: a genre classifier judging audio (`judge`) and a style-transfer
generator converting it (`generator`). The one path that predict, export, the transfer judge,
the proxy evaluator and the GAN's frozen loss classifier use."""
