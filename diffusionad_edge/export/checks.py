"""The bars every exported artifact is held to before it is called good (torch-free, so the CLI
can show them in ``--help`` without importing PyTorch)."""

#: FP32 artifacts must match PyTorch this closely (max abs error of map and score).
FP32_TOLERANCE = 1e-3
#: Default bound on the image-AUROC drop of a reduced precision against FP32.
DEFAULT_MAX_DROP = 0.02
#: Held-out normal images (and as many synthetic anomalies made from them) in the parity check.
CHECK_IMAGES = 16
