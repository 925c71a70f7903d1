"""Export: the fixed-timestep detector graph, ONNX/OpenVINO artifacts, bundles and their checks."""
