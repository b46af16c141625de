"""The ONNX Runtime embedder against the real bundled model: the same vectors as PyTorch, exported once, and a
model it cannot export faithfully falls back to PyTorch instead of embedding differently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from twinchat.adapters import onnx_embedder
from twinchat.adapters.embedders import SentenceTransformerEmbedder, bundled_model_path
from twinchat.adapters.onnx_embedder import OnnxEmbedder, export
from twinchat.config import Settings
from twinchat.factory import make_embedder

TEXTS = [
    "Bought 12 x RED RETROSPOT CAKE STAND at £10.95 on 2011-03-02",
    "Have you ever bought a cake stand?",
    "",
    "ok",
    "Ticket: the parcel arrived crushed — café order #5371, refund asked for",
    "A review that runs on and on past the model's window of 256 tokens. " * 40,
] + [f"Support note {i}: asked about delivery to {i} Elm Street" * (1 + i % 4) for i in range(70)]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return np.array(SentenceTransformerEmbedder().embed_batch(TEXTS))


def test_the_default_embedder_is_onnx_and_embeds_as_pytorch_does(
    tmp_path: Path, torch_vectors: np.ndarray
) -> None:
    embedder = make_embedder(Settings(model_cache=tmp_path))
    assert isinstance(embedder, OnnxEmbedder)
    vectors = np.array(embedder.embed_batch(TEXTS))  # more than one batch of 64, long texts cut, one empty
    assert vectors.shape == torch_vectors.shape == (len(TEXTS), 384)
    assert np.abs(vectors - torch_vectors).max() < 1e-5
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Order of the answer follows the order asked, whatever the batching by length did.
    assert np.abs(np.array(embedder.embed_batch(TEXTS[::-1])) - vectors[::-1]).max() < 1e-6

    graphs = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(graphs) == 1 and not list((tmp_path / "onnx").glob(".*")), "no partial files left"
    meta = json.loads(graphs[0].with_suffix(".json").read_text())
    assert meta["max_seq_length"] == 256 and meta["dimensions"] == 384
    assert meta["checked_max_difference"] < onnx_embedder.TOLERANCE


def test_an_export_is_made_once_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph, _ = export(bundled_model_path("all-MiniLM-L6-v2"), tmp_path)
    written = graph.stat().st_mtime_ns

    def no_second_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_embedder, "_export_checked", no_second_export)
    again = OnnxEmbedder(cache=tmp_path)
    assert len(again.embed_batch(["a cake stand"])[0]) == 384
    assert graph.stat().st_mtime_ns == written


def test_a_model_the_export_would_change_falls_back_to_pytorch(tmp_path: Path) -> None:
    # The bundled model with CLS pooling instead of mean pooling: the exported graph (mean pooling) would give
    # other vectors, so the check refuses it and the embedder runs the model with PyTorch, with a warning.
    model = tmp_path / "cls-model"
    shutil.copytree(bundled_model_path("all-MiniLM-L6-v2"), model)
    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(
        json.dumps({**config, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )

    embedder = OnnxEmbedder(str(model), cache=tmp_path / "cache")
    with pytest.warns(UserWarning, match="PyTorch instead of ONNX Runtime.*differ"):
        vectors = np.array(embedder.embed_batch(TEXTS[:4]))
    assert (
        np.abs(vectors - np.array(SentenceTransformerEmbedder(str(model)).embed_batch(TEXTS[:4]))).max()
        < 1e-6
    )
    assert not list((tmp_path / "cache" / "onnx").glob("*.onnx")), "a refused export is not kept"


def test_calls_from_many_threads_at_once_get_the_vectors_of_one_call(tmp_path: Path) -> None:
    # One session serves every caller: an import's batches spread over the workers, and the API's queries
    # encoded on other threads meanwhile.
    from concurrent.futures import ThreadPoolExecutor

    embedder = OnnxEmbedder(cache=tmp_path, workers=2)
    alone = np.array(embedder.embed_batch(TEXTS))
    with ThreadPoolExecutor(6) as pool:
        batches = [pool.submit(embedder.embed_batch, TEXTS) for _ in range(3)]
        queries = list(pool.map(lambda t: embedder.embed_batch([t]), TEXTS))
        assert all(np.abs(np.array(b.result()) - alone).max() < 1e-6 for b in batches)
    assert np.abs(np.array([q[0] for q in queries]) - alone).max() < 1e-5


def test_texts_started_while_others_encode_queue_behind_them_and_can_be_cancelled(tmp_path: Path) -> None:
    # An import queues its next batch while the one before still encodes: both come back as one call would
    # give them, and a batch cancelled before the workers reach it is never encoded.
    embedder = OnnxEmbedder(cache=tmp_path, workers=2)
    alone = np.array(embedder.embed_batch(TEXTS))
    long = [TEXTS[5]] * 256  # four batches at the model's full window: the workers are busy for a while
    first = embedder.start_batch(long)
    second = embedder.start_batch(TEXTS)
    third = embedder.start_batch(TEXTS)
    assert third.cancel()
    assert np.abs(np.array(second.result(timeout=60)) - alone).max() < 1e-6
    assert np.abs(np.array(first.result(timeout=60)) - alone[5]).max() < 1e-6
    assert third.cancelled()
    assert embedder.start_batch([]).result(timeout=0) == []
