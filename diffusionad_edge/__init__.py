"""diffusionad_edge: train DiffusionAD on a workstation, deploy it to edge devices."""

__version__ = "0.1.0"
