"""The port of Unbounded Depth Neural Networks (Nazaret & Blei, ICML 2022), a baseline of the
depth study (docs/udn.md): `model` (q(L), the heads, the ELBO, `train_udn`) and `optim`
(PyTorch's Adam in keras.ops). Not an experiment of its own; importing this package does not
import Keras (the registry imports every module of `gdeeper.experiments`)."""
