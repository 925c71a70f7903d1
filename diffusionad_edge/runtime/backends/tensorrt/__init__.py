"""TensorRT: the runner (``runner.py``), the engines it runs, built on the device and kept in the
bundle keyed by TensorRT version and GPU (``engine.py``), and the CUDA buffers, stream and graphs
under it (``cuda_memory.py``)."""
