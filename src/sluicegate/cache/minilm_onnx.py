"""The MiniLM encoder as an ONNX graph built from the packaged weights, run by ONNX Runtime.

The same BERT forward pass as `embedder.MiniLM`'s numpy code, about twice as fast on one core: ONNX Runtime
packs the weight matrices once when the session starts, where BLAS through numpy re-packs them on every
matmul (with ~20 tokens, that packing is most of the work). No model file is downloaded or written: the
graph is assembled in memory from the safetensors tensors at start-up (half a second; the weight matrices
are handed to the session as arrays, not copied through the model), and its vectors agree with the numpy
path's to within 1e-6 cosine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

OPSET = 20  # LayerNormalization (17) and Gelu (20) as single operators
#: constants with at least this many elements are handed to the session as arrays (the weight matrices)
EXTERNAL_FROM = 4096


class OnnxEncoder:
    """Token ids of one text in, its mean-pooled (not yet normalised) last hidden state out."""

    def __init__(self, weights: dict[str, npt.NDArray[Any]], config: dict[str, Any]) -> None:
        options = onnxruntime.SessionOptions()
        # One core, like the numpy path: a gateway scales by processes, and spinning threads would
        # compete with the event loop.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        graph = _Graph(weights, config)
        model = graph.model().SerializeToString()
        # The weight matrices stay numpy arrays that the session reads in place instead of travelling through
        # the serialised model into copies of its own: start-up takes half the time and peaks 160 MB lower.
        # Both lists are kept: the session does not own that memory.
        self._arrays = graph.external
        self._values = [onnxruntime.OrtValue.ortvalue_from_numpy(array) for array in graph.external.values()]
        options.add_external_initializers(list(graph.external), self._values)
        self._session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def pooled(self, ids: list[int]) -> npt.NDArray[np.float32]:
        result: npt.NDArray[np.float32] = self._session.run(None, {"input_ids": np.asarray(ids, dtype=np.int64)})[0]
        return result


class _Graph:
    """Builds the encoder's nodes one operator at a time; each helper returns its output's name."""

    def __init__(self, weights: dict[str, npt.NDArray[Any]], config: dict[str, Any]) -> None:
        self.weights = weights
        self.heads = int(config["num_attention_heads"])
        self.width = int(config["hidden_size"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        #: the large constants, given to the session as arrays rather than inside the model
        self.external: dict[str, npt.NDArray[np.float32]] = {}

    def model(self) -> Any:
        x = self._embeddings("input_ids")
        for index in range(self.layers):
            x = self._layer(x, f"encoder.layer.{index}.")
        pooled = self._op("ReduceMean", x, self._const(np.array([0], dtype=np.int64)), keepdims=0)
        graph = helper.make_graph(
            self.nodes,
            "minilm",
            [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["tokens"])],
            [helper.make_tensor_value_info(pooled, TensorProto.FLOAT, [self.width])],
            self.initializers,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])

    def _embeddings(self, ids: str) -> str:
        words = self._op("Gather", self._weight("embeddings.word_embeddings.weight"), ids)
        length = self._op("Shape", ids)
        start = self._const(np.array([0], dtype=np.int64))
        positions = self._op("Slice", self._weight("embeddings.position_embeddings.weight"), start, length)
        token_type = self._const(self._tensor("embeddings.token_type_embeddings.weight")[0])
        x = self._op("Add", self._op("Add", words, positions), token_type)
        return self._layer_norm(x, "embeddings.LayerNorm.")

    def _layer(self, x: str, prefix: str) -> str:
        attention = self._attention(x, prefix + "attention.self.")
        out = self._linear(attention, prefix + "attention.output.dense.")
        x = self._layer_norm(self._op("Add", x, out), prefix + "attention.output.LayerNorm.")
        hidden = self._op("Gelu", self._linear(x, prefix + "intermediate.dense."))
        out = self._linear(hidden, prefix + "output.dense.")
        return self._layer_norm(self._op("Add", x, out), prefix + "output.LayerNorm.")

    def _attention(self, x: str, prefix: str) -> str:
        heads, width = self.heads, self.width
        size = width // heads
        # One matmul for query, key and value, then (tokens, 3, heads, size) -> (3, heads, tokens, size).
        parts = ("query", "key", "value")
        weight = np.concatenate([self._tensor(f"{prefix}{part}.weight") for part in parts]).T
        bias = np.concatenate([self._tensor(f"{prefix}{part}.bias") for part in parts])
        qkv = self._op("Add", self._op("MatMul", x, self._const(weight)), self._const(bias))
        split = self._op("Reshape", qkv, self._const(np.array([-1, 3, heads, size], dtype=np.int64)))
        split = self._op("Transpose", split, perm=[1, 2, 0, 3])
        q, k, v = (self._op("Gather", split, self._const(np.array(i, dtype=np.int64)), axis=0) for i in range(3))
        scores = self._op("MatMul", q, self._op("Transpose", k, perm=[0, 2, 1]))
        scores = self._op("Mul", scores, self._const(np.array(1.0 / math.sqrt(size), dtype=np.float32)))
        attended = self._op("MatMul", self._op("Softmax", scores, axis=-1), v)
        attended = self._op("Transpose", attended, perm=[1, 0, 2])
        return self._op("Reshape", attended, self._const(np.array([-1, width], dtype=np.int64)))

    def _linear(self, x: str, prefix: str) -> str:
        weight = self._const(self._tensor(prefix + "weight").T)
        return self._op("Add", self._op("MatMul", x, weight), self._weight(prefix + "bias"))

    def _layer_norm(self, x: str, prefix: str) -> str:
        scale, bias = self._weight(prefix + "weight"), self._weight(prefix + "bias")
        return self._op("LayerNormalization", x, scale, bias, epsilon=self.eps, axis=-1)

    def _tensor(self, name: str) -> npt.NDArray[np.float32]:
        return np.asarray(self.weights[name], dtype=np.float32)

    def _weight(self, name: str) -> str:
        return self._const(self._tensor(name))

    def _const(self, value: npt.NDArray[Any]) -> str:
        name = f"c{len(self.initializers)}"
        # np.array, not ascontiguousarray: the latter turns a 0-d index into a 1-d one
        array = np.array(value, order="C")
        if array.size < EXTERNAL_FROM:
            self.initializers.append(numpy_helper.from_array(array, name))
            return name
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape)
        tensor.data_location = TensorProto.EXTERNAL
        for key, text in (("location", "in-memory"), ("offset", "0"), ("length", str(array.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, text
        self.initializers.append(tensor)
        self.external[name] = array
        return name

    def _op(self, kind: str, *inputs: str, **attributes: Any) -> str:
        name = f"{kind.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(kind, list(inputs), [name], **attributes))
        return name
