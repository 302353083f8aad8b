"""The model that ships: trained only on data whose licence allows it, credited, portable."""

from __future__ import annotations

import json
import re

import pytest

from mapseg_core.models.artifact import bundled_model_path, read_metadata

#: Licences under which a set may train the model that ships (the project's rule).
ALLOWED = re.compile(r"^(CC BY(-SA)? 4\.0|imagery CC BY 4\.0; labels ODbL 1\.0|attribution\b)")


@pytest.fixture(scope="module")
def meta():
    try:
        return read_metadata(bundled_model_path())
    except Exception as exc:  # a checkout without the 34 MB file
        pytest.skip(f"no bundled model in this checkout ({exc})")


def test_every_training_source_has_a_licence_that_allows_shipping(meta):
    sources = meta["training_data_sources"]
    trained = {name: s for name, s in sources.items() if s["use"] == "train"}
    assert len(trained) >= 5
    for name, source in trained.items():
        assert ALLOWED.match(source["licence"]), f"{name}: {source['licence']}"
        assert source["credit"] and source["credit"] in " ".join(meta["credits"])
        assert "train" in source["counts"] and source["counts"]["train"]["chips"] > 0
    # the sets without a training licence are listed, as evaluation only
    for name in ("massachusetts", "jonkoping-barnarp", "new-brunswick"):
        assert sources[name]["use"] == "evaluation" and "train" not in sources[name]["counts"]


def test_held_out_scores_cover_every_source(meta):
    scores = meta["heldout_scores"]
    assert set(scores) == {n for n, s in meta["training_data_sources"].items() if s["counts"]}
    for name, row in scores.items():
        use = meta["training_data_sources"][name]["use"]
        assert row["set"] == ("heldout" if use == "train" else "evaluation-only")
        assert 0.0 <= row["dice_coef"] <= 1.0 and row["buildings"] > 0


def test_metadata_names_nothing_of_the_training_machine(meta):
    text = json.dumps(meta)
    assert not re.search(r'"/(work|home|root|tmp|Users)/', text)
    assert meta["training_command"].startswith("mapseg train ")
    assert meta["gsd"] == 0.3 and meta["channels"] == ["building", "contact"]
