"""The config base: every saved config round-trips through JSON, and a bad file is one clear error naming it."""

from __future__ import annotations

import json

import pytest

from canora.conditioning import FeatureParams
from canora.dsp.mel import MelSpec
from canora.dsp.pitch import F0Stats
from canora.errors import CheckpointError
from canora.refiner.model import RefinerConfig
from canora.vocoder.hifigan import GeneratorConfig
from canora.vocoder.nsf import NSFConfig

EXAMPLES = [MelSpec(), MelSpec(fmax=None, log_base="10"), GeneratorConfig(), NSFConfig(), RefinerConfig(),
            FeatureParams(f0_params={"voicing_threshold": 0.4}), F0Stats(200.0, 120.0, 400.0)]


@pytest.mark.parametrize("cfg", EXAMPLES, ids=lambda c: type(c).__name__)
def test_every_config_round_trips_through_json(cfg):
    back = type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and type(back) is type(cfg)


@pytest.mark.parametrize(("cls", "key", "value", "expected"), [
    (MelSpec, "sample_rate", "abc", "expected an integer"),
    (MelSpec, "hop_length", [256], "expected an integer"),
    (MelSpec, "log_base", "2", "expected one of"),
    (GeneratorConfig, "upsample_rates", 8, "expected a list"),
    (NSFConfig, "upsample_initial_channel", 1.5, "expected an integer"),
    (RefinerConfig, "layers", None, "expected an integer"),
    (FeatureParams, "f0_params", [1, 2], "expected a JSON object"),
])
def test_a_wrong_type_is_one_error_naming_the_file_and_field(cls, key, value, expected):
    d = cls().to_dict()
    d[key] = value
    with pytest.raises(CheckpointError) as e:
        cls.from_dict(d, source="model.json")
    msg = str(e.value)
    assert msg.startswith("model.json: ") and f"{cls.__name__}.{key}" in msg and expected in msg
    assert "\n" not in msg


def test_unknown_missing_and_invalid_values_name_the_file():
    with pytest.raises(CheckpointError, match=r"^x.json: MelSpec has unknown keys \['bogus'\]"):
        MelSpec.from_dict({**MelSpec().to_dict(), "bogus": 1}, "x.json")
    with pytest.raises(CheckpointError, match=r"^y.json: F0Stats lacks \['p95'\]"):
        F0Stats.from_dict({"median": 1.0, "p5": 1.0}, "y.json")
    # values of the right type that the class itself refuses (its __post_init__) name the file as well
    with pytest.raises(CheckpointError, match=r"^z.json: invalid RefinerConfig"):
        RefinerConfig.from_dict({**RefinerConfig().to_dict(), "kernel_size": 4}, "z.json")
    with pytest.raises(CheckpointError, match="must be a JSON object"):
        RefinerConfig.from_dict([1, 2], "w.json")


def test_an_nsf_config_from_canora_0_1_loads_as_the_legacy_design():
    old = {k: v for k, v in NSFConfig().to_dict().items() if k not in ("upsample", "source", "interp_kernel")}
    old["harmonics"] = 8
    cfg = NSFConfig.from_dict(old)
    assert (cfg.upsample, cfg.source, cfg.harmonics) == ("transposed", "step", 8)


def test_official_configs_may_write_resblock_as_a_number():
    d = GeneratorConfig().to_dict()
    d["resblock"] = 1
    assert GeneratorConfig.from_dict(d).resblock == "1"


# ---------------------------------------------------------------------- bounds, NaN, and the files themselves
@pytest.mark.parametrize(("cls", "key", "value", "expected"), [
    (GeneratorConfig, "upsample_initial_channel", 1_000_000, "outside the sane range 1..4096"),
    (NSFConfig, "harmonics", 100_000, "outside the sane range"),
    (NSFConfig, "upsample_rates", [8, 8, 400], "400 is outside the sane range 1..64"),
    (RefinerConfig, "n_singers", 10**9, "outside the sane range 1..4096"),
    (RefinerConfig, "residual_channels", 100_000, "outside the sane range"),
    (RefinerConfig, "loudness_scale_db", float("nan"), "expected a finite number"),
    (MelSpec, "sample_rate", 10**9, "outside the sane range"),
    (MelSpec, "fmin", float("inf"), "expected a finite number"),
])
def test_configs_are_bounded_before_anything_is_built(cls, key, value, expected):
    d = {**cls().to_dict(), key: value}
    with pytest.raises(CheckpointError, match=rf"m\.json: {cls.__name__}\.{key} = .*{expected}"):
        cls.from_dict(d, "m.json")


def test_config_files_are_read_only_from_regular_files_of_sane_size(tmp_path):
    import os

    from canora.config import MAX_JSON_BYTES, read_json_file
    from canora.errors import CanoraError

    os.mkfifo(tmp_path / "c.json")
    with pytest.raises(CanoraError, match=r"c\.json: is a named pipe \(FIFO\), not a regular file"):
        read_json_file(tmp_path / "c.json", "fix it")
    with pytest.raises(CanoraError, match=r"/dev/zero: is a character device"):
        read_json_file("/dev/zero", "fix it")
    with open(tmp_path / "big.json", "wb") as f:
        f.truncate(MAX_JSON_BYTES + 1)
    with pytest.raises(CanoraError, match=r"big\.json: .* too large for a JSON file"):
        read_json_file(tmp_path / "big.json", "fix it")
    (tmp_path / "loop.json").symlink_to(tmp_path / "loop.json")
    with pytest.raises(CanoraError, match="symbolic link loop"):
        read_json_file(tmp_path / "loop.json", "fix it")


def test_exports_hash_their_config_and_older_exports_still_load(tmp_path, tiny_models):
    """A new export carries config_sha256; an edited config fails it before anything is built; an export written
    before the field existed loads; the bundled models (written before it) load."""
    from canora.io.checkpoint import config_digest, load_export
    from canora.refiner import Refiner
    from canora.vocoder import Vocoder

    ref, voc = tiny_models
    doc = json.loads((voc / "model.json").read_text())
    assert doc["config_sha256"] == config_digest(doc)
    doc["config"]["upsample_initial_channel"] = 64
    (voc / "model.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="do not match config_sha256"):
        load_export(voc)
    old = json.loads((ref / "model.json").read_text())
    del old["config_sha256"]
    (ref / "model.json").write_text(json.dumps(old))
    assert Refiner.from_pretrained(ref).spec == MelSpec()
    Refiner.from_pretrained("bundled")
    Vocoder.from_pretrained("bundled")
