"""The local MiniLM: the ONNX Runtime graph and the numpy fallback compute the same vectors."""

from __future__ import annotations

import numpy as np
import pytest

from sluicegate.cache.embedder import MiniLM, shared_minilm

TEXTS = [
    "How do I reset my password?",
    "",
    "Café naïve résumé — Ünïcödé, CJK 漢字 and emoji 🙂 survive the tokenizer",
    "refund " * 400,  # past the 256-token cut
    "What is 2 + 2? Answer with one number.",
]


@pytest.fixture(scope="module")
def numpy_model() -> MiniLM:
    return MiniLM(runtime="numpy")


def test_the_gateway_runs_the_onnx_graph_when_onnxruntime_is_installed() -> None:
    assert shared_minilm().runtime == "onnx"


@pytest.mark.parametrize("text", TEXTS)
def test_onnx_and_numpy_agree(numpy_model: MiniLM, text: str) -> None:
    onnx_vector = shared_minilm().embed_one(text)
    numpy_vector = numpy_model.embed_one(text)
    assert onnx_vector.dtype == np.float32 and onnx_vector.shape == (384,)
    assert abs(float(np.linalg.norm(onnx_vector)) - 1.0) < 1e-5
    # numpy uses the tanh form of GELU, the graph the exact one: the vectors differ in the 6th decimal
    assert float(onnx_vector @ numpy_vector) > 0.99999


def test_many_texts_are_the_same_vectors_as_one_at_a_time(numpy_model: MiniLM) -> None:
    model = shared_minilm()
    together = model.embed_many(TEXTS)
    assert together.shape == (len(TEXTS), 384)
    for row, text in zip(together, TEXTS, strict=True):
        assert float(row @ model.embed_one(text)) > 0.999999
    batched = numpy_model.embed_many(TEXTS)  # padded batches with a mask on the numpy path
    assert float(np.min(np.sum(together * batched, axis=1))) > 0.99999


def test_related_texts_are_closer_than_unrelated_ones() -> None:
    model = shared_minilm()
    anchor, paraphrase, other = model.embed_many(
        ["How do I reset my password?", "How can I change my forgotten password?", "What is the capital of Peru?"]
    )
    assert float(anchor @ paraphrase) > 0.7 > float(anchor @ other)
