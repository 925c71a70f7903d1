"""The backends: one runner interface (``runner.py``) and a runner per backend, with the table of
backends (``table.py``) that says which runner runs a bundle. Nothing here imports the line
package (``runtime/line``) or the frame path above it (``runtime/bundle.py`` and its neighbours);
each backend's own package (ONNX Runtime, OpenVINO, TensorRT, PyTorch) is imported only when a
runner starts."""
