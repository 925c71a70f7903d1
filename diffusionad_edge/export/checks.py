"""The bars every exported artifact is held to before it is called good (torch-free, so the CLI
can show them in ``--help`` without importing PyTorch)."""

#: FP32 artifacts must match PyTorch this closely (max abs error of map and score).
FP32_TOLERANCE = 1e-3
#: Default bound on the image-AUROC drop of a reduced precision against FP32.
DEFAULT_MAX_DROP = 0.02
#: Default bound on the drop of each map metric (pixel AUROC, pixel AP, AUPRO) against FP32: the
#: image score can survive quantization while the map it is the top-k mean of does not.
DEFAULT_MAX_MAP_DROP = 0.01
#: the map metrics the export gate bounds, and the ``dae export`` option that sets each bound
MAP_METRICS = ("pixel_auroc", "pixel_ap", "aupro")
MAP_OPTIONS = {"pixel_auroc": "--max-pixel-auroc-drop", "pixel_ap": "--max-pixel-ap-drop", "aupro": "--max-aupro-drop"}
#: how the report names each metric
METRIC_LABELS = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "pixel_ap": "pixel AP", "aupro": "AUPRO"}
#: Held-out normal images (and as many synthetic anomalies made from them) in the parity check.
CHECK_IMAGES = 16
#: Held-out normal images that place the thresholds (the check set's and more, when the checkpoint has them).
THRESHOLD_NORMALS = 64
