"""A base-model folder of the studio's machine sent to a Ray node through MLflow
(studio/modalities/llm/ship.py), without Ray: uploaded once per content, fetched into the node's files
when its path holds no model there, found there by the path the user gave, and named in the bundle by
the studio machine's folder. The whole way on a Ray head: tests/cluster/test_ray_llm.py."""

from __future__ import annotations

import os

import pytest

from studio.core.errors import JobError
from tests.llm.tiny import build_model


def test_a_folder_goes_to_mlflow_once_and_a_node_without_it_fetches_it(studio_home, tmp_path, monkeypatch):
    from studio import tracking
    from studio.modalities.llm import ship
    from studio.modalities.llm.models import find_base_model

    model = build_model(tmp_path / "tiny-llama")
    ref = str(model)
    sent = ship.publish_base_model(ref)
    assert sent["path"] == str(model.resolve()) and sent["bytes"] == sum(
        p.stat().st_size for p in model.iterdir()
    )
    assert ship.publish_base_model(ref)["run"] == sent["run"]  # the same content: not sent again
    experiment = tracking.client().get_experiment_by_name(ship.EXPERIMENT)
    assert len(tracking.client().search_runs([experiment.experiment_id])) == 1
    assert ship.publish_base_model("SomeOrg/some-model") is None  # an id is looked up on the node

    node = tmp_path / "node"
    monkeypatch.delenv(ship.COPIES_ENV, raising=False)
    here, said = ship.fetch_base_model(sent, node)  # the node has the folder at the same path
    assert here == model and said.endswith("already on this node")
    model.rename(tmp_path / "away")  # a node without it
    try:
        copy, said = ship.fetch_base_model(sent, node)
        assert copy == node / "base-models" / sent["digest"] and "fetched from MLflow" in said
        assert sorted(p.name for p in copy.iterdir()) == sorted(
            [*os.listdir(tmp_path / "away"), ship.ORIGIN_FILE]
        )
        assert ship.folder_digest(copy) == sent["digest"]
        assert find_base_model(ref) == copy  # the spec's path finds the node's copy
        assert ship.origin_of(copy) == str(model.resolve())  # what the bundle and the run's tag name
        again, said = ship.fetch_base_model(sent, node)
        assert again == copy and "already fetched to this node" in said
    finally:
        (tmp_path / "away").rename(model)


def test_a_folder_larger_than_the_limit_is_refused_in_one_sentence(studio_home, tmp_path, monkeypatch):
    from studio.modalities.llm import ship
    from studio.modalities.llm.models import human_bytes

    model = build_model(tmp_path / "tiny-llama")
    size = human_bytes(sum(p.stat().st_size for p in model.iterdir()))
    monkeypatch.setenv(ship.MAX_BYTES_ENV, "100000")
    with pytest.raises(JobError) as err:
        ship.publish_base_model(str(model))
    assert str(err.value) == (
        f"The base model folder '{model}' is {size}, more than the 97.7 KB the studio sends to Ray nodes: "
        "put the model on every node at the same path, or raise STUDIO_RAY_MAX_MODEL_BYTES."
    )
