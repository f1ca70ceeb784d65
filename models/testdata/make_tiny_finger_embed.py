#!/usr/bin/env python3
"""Generates the tiny `finger-embed` test model and its reference outputs.

The model is small and deterministic (seeded weights): 16×16 grey input,
a 3×3 convolution, ReLU, flatten, a dense layer to 32 values. The fixture
holds seeded input images and what Python onnxruntime computes for them
after the manifest's preprocessing, so the Rust runtime can be checked
against it (`engine/src/embed/tests.rs`).

Run from the repository root (needs `pip install onnx onnxruntime numpy`):
    python3 models/testdata/make_tiny_finger_embed.py
then update the sha256 in models/testdata/tiny-finger-embed.toml.
"""

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261122)

conv_w = (rng.standard_normal((4, 1, 3, 3)) * 0.5).astype(np.float32)
conv_b = (rng.standard_normal(4) * 0.1).astype(np.float32)
dense_w = (rng.standard_normal((4 * 14 * 14, 32)) * 0.05).astype(np.float32)
dense_b = (rng.standard_normal(32) * 0.1).astype(np.float32)

graph = helper.make_graph(
    [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Flatten", ["relu"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "dense_w", "dense_b"], ["embedding"]),
    ],
    "tiny_finger_embed",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 16, 16])],
    [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 32])],
    initializer=[
        numpy_helper.from_array(conv_w, "conv_w"),
        numpy_helper.from_array(conv_b, "conv_b"),
        numpy_helper.from_array(dense_w, "dense_w"),
        numpy_helper.from_array(dense_b, "dense_b"),
    ],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="biomatch")
model.ir_version = 8
onnx.checker.check_model(model)
path = os.path.join(HERE, "tiny_finger_embed.onnx")
onnx.save(model, path)

# Inputs: seeded grey images; preprocessing as in the manifest:
# value = (pixel / 255 - 0.5) / 0.25.
images = rng.integers(0, 256, size=(4, 16, 16), dtype=np.uint8)
tensor = ((images.astype(np.float32) / 255.0 - 0.5) / 0.25)[:, None, :, :]
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
outputs = session.run(None, {"input": tensor})[0]
with open(os.path.join(HERE, "tiny_finger_embed.expected.json"), "w") as f:
    json.dump(
        {
            "onnxruntime": ort.__version__,
            "images": images.reshape(4, -1).tolist(),
            "outputs": outputs.tolist(),
        },
        f,
    )
print(path)
