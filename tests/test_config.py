import json

import pytest

from teravox.config import Params, from_mapping, load, parse_bytes
from teravox.config.params import FIELDS, SECTIONS
from teravox.errors import ParamError


def test_defaults_are_safe():
    p = Params()
    # every optional correction is off except flat/dark and -log
    assert p.flat_dark and p.minus_log
    assert not (p.outliers or p.air or p.paganin or p.circ_mask)
    assert p.stripe_prep == p.stripe_recon == p.rings == "off"
    assert p.i0 == "off" and p.half_acquisition == "off"


def test_every_parameter_has_help_and_a_known_section():
    for name, f in FIELDS.items():
        assert f.metadata["help"], name
        assert f.metadata["section"] in SECTIONS, name


def test_sections_and_flat_keys_are_equivalent():
    a = from_mapping({"recon": {"center": 12.5}, "prep": {"outliers": True}})
    b = from_mapping({"center": 12.5, "outliers": True})
    assert a == b and a.center == 12.5


def test_unknown_key_named():
    with pytest.raises(ParamError, match="unknown parameter.*centre"):
        from_mapping({"centre": 3})


@pytest.mark.parametrize("key,value,needle", [
    ("center", "middle", "center"),
    ("outliers", "yes", "outliers: expected true or false"),
    ("proj_chunks", 2.5, "proj_chunks: expected an integer"),
    ("dtype", "int32", "dtype: expected one of"),
    ("proj_chunks", 0, "proj_chunks must be at least 1"),
    ("memory", "lots", "memory"),
    ("dtype_range", [5, 1], "dtype_range"),
])
def test_wrong_types_rejected_with_the_key(key, value, needle):
    with pytest.raises(ParamError, match=needle):
        from_mapping({key: value})


def test_int_accepted_for_float_and_auto_center():
    assert from_mapping({"center": 10}).center == 10.0
    assert from_mapping({"center": "auto"}).center == "auto"


@pytest.mark.parametrize("text,value", [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", int(1.5 * 2**30)),
                                        ("2048", 2048), ("3 GB", 3 * 2**30)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


def test_param_files_json_and_yaml(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"center": 3.5, "memory": "2G"}))
    (tmp_path / "p.yaml").write_text("recon:\n  center: 3.5\nchunks:\n  memory: 2G\n")
    assert load(tmp_path / "p.json") == load(tmp_path / "p.yaml")
    (tmp_path / "bad.json").write_text("{center: ")
    with pytest.raises(ParamError, match="bad.json: not valid JSON"):
        load(tmp_path / "bad.json")
    with pytest.raises(ParamError, match="missing.json: cannot read"):
        load(tmp_path / "missing.json")
    (tmp_path / "typo.yaml").write_text("recon:\n  centre: 3\n")
    with pytest.raises(ParamError, match="typo.yaml: unknown parameter"):
        load(tmp_path / "typo.yaml")


def test_cli_flags_override_file(tmp_path):
    import argparse

    from teravox.config import add_arguments, from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--center", "7.25", "--outliers", "--flat-dark", "false",
                              "--row-range", "2,10", "--memory", "1G"])
    p = from_args(args, {"center": 1.0, "air": True})
    assert p.center == 7.25 and p.outliers and not p.flat_dark and p.air
    assert p.row_range == [2, 10] and p.memory_bytes() == 2**30
    with pytest.raises(ParamError, match="proj_chunks"):
        from_args(parser.parse_args(["--proj-chunks", "many"]))
