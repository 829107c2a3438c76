"""Trained classifier runs restored for use (`judge`): the one path that predict, export, the
transfer judge, the proxy evaluator and the GAN's frozen loss classifier take. (A trained
generator is used as a transfer method: `transfer.generator`.)"""
