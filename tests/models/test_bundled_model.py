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
    # Trained on 256 px chips, shipped for 512 px model windows (rewindow.py).
    assert meta["input_size"] == [512, 512] and meta["config"]["model"]["input_size"] == [256, 256]
    assert meta["rewindowed"]["trained_gsd"] == 0.3
    assert meta["rewindowed"]["command"].startswith("python scripts/bundled_model/rewindow.py ")


def test_post_processing_is_the_validation_best_by_building_f1(meta):
    """The shipped threshold, separation threshold and min area are the best row of the search."""
    search = meta["postprocess_search"]
    assert len(search) >= 20
    chosen = [
        r
        for r in search
        if r["threshold"] == meta["threshold"]
        and r["separation_threshold"] == meta["separation"]["threshold"]
        and r["min_area_m2"] == meta["polish"]["min_area_m2"]
    ]
    assert len(chosen) == 1
    assert chosen[0]["F1@0.5"] == max(r["F1@0.5"] for r in search)
    # The pixel-F1 defaults it replaced scored clearly worse on the same images.
    default = [r for r in search if (r["threshold"], r["min_area_m2"]) == (0.5, 2.0)]
    assert default and max(r["F1@0.5"] for r in default) < chosen[0]["F1@0.5"] - 0.05


def test_the_bundled_onnx_is_the_export_of_the_bundled_keras_model(meta):
    """The light engine's default model is the same model: exported from this very file."""
    pytest.importorskip("onnxruntime", reason="reading .onnx metadata needs onnxruntime")
    from mapseg_core.models.artifact import file_sha256

    keras_file, onnx_file = bundled_model_path("keras"), bundled_model_path("onnx")
    exported = read_metadata(onnx_file)
    assert exported["onnx"]["source"] == keras_file.name
    assert exported["onnx"]["source_sha256"] == file_sha256(keras_file), (
        "the bundled .onnx was exported from another model: run scripts/bundled_model/ship.py "
        "--ship, or mapseg export mapseg_core/models/bundled/buildings-b0.keras -o "
        "mapseg_core/models/bundled/buildings-b0.onnx --overwrite"
    )
    same = ("gsd", "channels", "threshold", "separation", "polish", "heldout_scores")
    assert {k: exported.get(k) for k in same} == {k: meta.get(k) for k in same}
    assert not re.search(r'"/(work|home|root|tmp|Users)/', json.dumps(exported))
