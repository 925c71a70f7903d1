"""The TensorRT ONNX lint: what TensorRT 10's parser would refuse is found on the workstation."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from diffusionad_edge.export.tensorrt_lint import lint_onnx_for_tensorrt


def _save(tmp_path, nodes, inits, inputs, opset=17, name="g.onnx"):
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", inputs, [out], initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_a_plain_graph_passes(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("TopK", ["f", "k"], ["y", "i"])]
    assert lint_onnx_for_tensorrt(_save(tmp_path, nodes, {"k": np.array([5], np.int64)}, [x])) == []


def test_each_refusal_is_named(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])  # dynamic batch
    nodes = [
        helper.make_node("Unique", ["x"], ["u"], name="uniq"),
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="quant"),
        helper.make_node("Flatten", ["x"], ["f"]),
        helper.make_node("TopK", ["f", "k"], ["t", "ti"], name="topk"),
        helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="cubic", name="resize"),
        helper.make_node("MyOp", ["x"], ["y"], domain="com.example", name="custom"),
    ]
    inits = {"s": np.array(0.1, np.float32), "zp": np.array(3, np.int8), "k": np.array([5000], np.int64),
             "scales": np.array([1, 1, 2, 2], np.float32)}
    problems = lint_onnx_for_tensorrt(_save(tmp_path, nodes, inits, [x], opset=21))
    text = "\n".join(problems)
    for expected in ("opset 21", "dynamic shape", "Unique 'uniq': operator not supported", "QuantizeLinear 'quant': zero point",
                     "TopK 'topk': K=5000", "Resize 'resize': mode 'cubic'", "custom domain 'com.example'"):
        assert expected in text, (expected, problems)
    assert len(problems) == 7
