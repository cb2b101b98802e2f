"""The bag of words' options, on its own (no studio run): words weighted by how rare they are, the three
poolings and the direct word weights learn a planted keyword rule, rebuild from their config and state
dict alone (the bundle's way), and export to ONNX with the same outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from studio.core.text_runtime import BagOfWordsNet, HashingTextEncoder, build_bag_of_words, token_weights
from tests.text.test_text_training import reviews


def test_token_weights_are_smoothed_inverse_document_frequencies():
    ids = torch.tensor([[5, 5, 7, 0], [5, 9, 0, 0], [5, 0, 0, 0]])
    weights = token_weights(ids, 16)
    assert weights[0] == 0.0  # padding
    assert weights[5] == pytest.approx(1.0)  # in every row (twice in one: still one row)
    assert weights[7] == pytest.approx(np.log(4 / 2) + 1) and weights[9] == weights[7]
    assert weights[3] == pytest.approx(np.log(4 / 1) + 1)  # never seen: the rarest


@pytest.fixture(scope="module")
def planted():
    frame = reviews(400, seed=11)
    encoder = HashingTextEncoder.new(["review"], 64, 4096, 2, False)
    ids = torch.from_numpy(encoder.encode(frame)[0])
    x_num = torch.tensor(((frame["price"] - 50) / 29).to_numpy(), dtype=torch.float32).unsqueeze(1)
    y = torch.tensor((frame["label"] == "pos").to_numpy(), dtype=torch.int64)
    return ids, x_num, y


OPTIONS = [
    {"pooling": "mean"},
    {"pooling": "sqrt", "token_weights": True},
    {"pooling": "l2", "token_weights": True, "linear": True},
    {"pooling": "mean", "linear": True, "hidden": 16},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_each_option_learns_a_planted_keyword_rule_and_rebuilds_from_its_config(planted, options, tmp_path):
    ids, x_num, y = planted
    train, test = slice(0, 300), slice(300, 400)
    x_cat = torch.zeros(len(y), 0, dtype=torch.int64)
    torch.manual_seed(0)
    net = BagOfWordsNet(4096, 1, [], 2, embedding_dim=16, dropout=0.1, **options)
    net.fit_token_weights(ids[train])
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.02)
    for _ in range(8):
        for start in range(0, 300, 32):
            rows = slice(start, min(start + 32, 300))
            loss = torch.nn.functional.cross_entropy(net(x_num[rows], x_cat[rows], ids[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        out = net(x_num[test], x_cat[test], ids[test])
    accuracy = float((out.argmax(1) == y[test]).float().mean())
    assert accuracy > 0.8, accuracy  # the keyword decides 80 % of rows; a guess gets about half
    if options.get("token_weights"):
        assert float(net.token_weight[ids[0, 0]]) > 0 and "token_weight" in net.state_dict()

    # the bundle's way: the config (JSON) and the state dict, nothing else
    again = build_bag_of_words(net.config)
    again.load_state_dict(net.state_dict())
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x_num[test], x_cat[test], ids[test]), out)

    if options["pooling"] != "l2":  # one ONNX export (seconds) for the path with every option on
        return
    onnxruntime = pytest.importorskip("onnxruntime")
    from studio.core.runtime import TabularPreprocessor
    from studio.modalities.text.bundle import _try_export_text_onnx

    preprocessing = TabularPreprocessor.fit(pd.DataFrame({"price": [1.0, 2.0]}), ["price"], [], []).state
    info = _try_export_text_onnx(
        net,
        tmp_path / "model.onnx",
        preprocessing,
        {"type": "hashing", "max_tokens": 64},
        {"task": "classification"},
    )
    assert info["file"], info
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    feeds = {"numeric": x_num[test].numpy(), "categorical": x_cat[test].numpy(), "text": ids[test].numpy()}
    got = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
    np.testing.assert_allclose(got, out.numpy(), atol=1e-5)


def test_an_older_bundles_config_without_the_options_reads_as_the_plain_average():
    old = {
        "type": "bag_of_words",
        "buckets": 1024,
        "n_numeric": 0,
        "cardinalities": [],
        "n_out": 3,
        "embedding_dim": 8,
        "hidden": 0,
        "dropout": 0.2,
    }
    net = build_bag_of_words(old)
    assert net.plain and set(net.state_dict()) == {"bag.weight", "head.1.weight", "head.1.bias"}
    frame = pd.DataFrame({"t": ["one two", ""]})
    ids = torch.from_numpy(HashingTextEncoder.new(["t"], 8, 1024, 1, False).encode(frame)[0])
    assert net.eval()(torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.int64), ids).shape == (2, 3)
