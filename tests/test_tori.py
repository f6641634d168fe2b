"""Import of DanMAX Reconstructor .tori files, and `teravox params`."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from teravox.config.params import Params
from teravox.config.tori import load_tori, tori_data_file, tori_to_mapping
from teravox.errors import ParamError
from teravox.stages import params as params_stage

EXAMPLE = Path(__file__).parent / "data" / "example.tori"


@pytest.fixture()
def tori() -> dict:
    return json.loads(EXAMPLE.read_text())


def write(tmp_path: Path, tori: dict, name: str = "scan.tori") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(tori))
    return path


def test_example_maps_to_expected_params():
    params, notes = load_tori(EXAMPLE)
    assert isinstance(params, Params)
    # units: pixel 5.5e-5 cm → 0.55 µm, dist 30 cm → 0.3 m, alpha 0.001 → delta/beta 1/(4π²·0.001) ≈ 25.3 (TomoPy 1.x's filter)
    assert params.pixel_size_m == pytest.approx(5.5e-7)
    assert params.distance_m == pytest.approx(0.3)
    assert params.energy_kev == 35.0
    assert params.delta_beta == pytest.approx(1 / (4 * math.pi**2 * 0.001))
    assert params.paganin and params.paganin_pad
    # slice_ver [100, 1900] then crop rows [50, 1750] of what was loaded → file rows 150..1850
    assert params.row_range == [150, 1850]
    assert params.col_range == [120, 2440]
    # the GUI's centre is a column of the cropped image, which starts at detector column 120
    assert params.center == pytest.approx(1187.5 + 120)
    assert params.half_acquisition == "off"
    assert params.data_path == "/exchange/data"
    assert params.flat_file is None and params.dark_file is None   # = the scan itself
    assert params.theta_source == "file"
    assert params.flat_dark and params.i0 == "monitor"
    assert (params.outliers, params.outlier_dif, params.outlier_size) == (True, 0.2, 5)
    assert params.stripe_recon == "all" and params.stripe_prep == "off"
    assert (params.stripe_snr, params.stripe_la_size, params.stripe_sm_size) == (2.5, 81, 31)
    assert params.minus_log
    assert params.algorithm == "gridrec" and params.backend == "auto"
    assert params.filter_name == "shepp-logan"
    assert params.pad == "edge" and params.pad_width_px is None
    assert params.exclude_proj == [[1200, 1260]]
    assert params.circ_mask and params.circ_mask_ratio == 0.95 and params.circ_mask_value == 0.0
    assert params.rings == "fft" and params.ring_size == 31      # ring_size: rings=sinogram only
    assert params.dtype == "uint16" and params.dtype_range == [-0.5, 4.0]
    assert params.pyramid == 3
    # the ring removal is a different method: said so, with the parameters that are lost
    ring = [n for n in notes if n.startswith("post_recon_process_arguments.ring_removal: approximate")]
    assert len(ring) == 1 and "rwidth = 25" in ring[0] and "theta_min = 30" in ring[0]


def test_data_file_is_reported():
    assert tori_data_file(json.loads(EXAMPLE.read_text())).endswith("scan-0042.h5")


def test_alpha_and_lengths_convert(tori):
    tori["correction_arguments"]["phase_retrieval_kwargs"].update(alpha=0.002, dist=12.5, pixel_size=1e-4)
    mapping, _ = tori_to_mapping(tori, "x.tori")
    assert mapping["delta_beta"] == pytest.approx(1 / (4 * math.pi**2 * 0.002))
    assert mapping["distance_m"] == pytest.approx(0.125)
    assert mapping["pixel_size_m"] == pytest.approx(1e-6)


def test_switched_off_features_are_not_mapped(tori):
    tori["correction_arguments"]["phase_retrieval"] = False
    tori["correction_arguments"]["phase_retrieval_kwargs"]["alpha"] = "junk"   # never read
    tori["post_recon_process_arguments"]["ring_removal"] = False
    mapping, notes = tori_to_mapping(tori, "x.tori")
    assert "paganin" not in mapping and "delta_beta" not in mapping and "pixel_size_m" not in mapping
    assert "rings" not in mapping
    assert not any("ring_removal" in n for n in notes)


@pytest.mark.parametrize("function, method", [
    ("all_stripe", "all"), ("vo_all", "all"), ("remove_all_stripe", "all"),
    ("remove_stripe_based_sorting", "sorting"), ("remove_stripe_based_filtering", "filtering"),
    ("sf", "filtering"), ("remove_stripe_fw", "wavelet-fft"), ("fw", "wavelet-fft"),
    ("remove_stripe_based_fitting", "fitting"),
])
def test_stripe_functions(tori, function, method):
    tori["correction_arguments"]["stripe_function"] = function
    mapping, _ = tori_to_mapping(tori, "x.tori")
    assert mapping["stripe_recon"] == method


def test_unsupported_keys_are_listed(tori):
    ca = tori["correction_arguments"]
    ca["stripe_function"] = "remove_stripe_ti"
    ca["stripe_removal_kwargs"] = {"nblock": 0, "alpha": 1.5}
    ca["normalize_to_unity"] = True
    ca["flatten_images"] = True
    ca["flatten_images_kwargs"] = {"flatten_size": 50}
    tori["file_definitions"]["slice_hor"] = [0, -1, 2]
    tori["reconstruction_arguments"]["recon_kwargs"].update(filter_name="butterworth", num_iter=10)
    tori["post_recon_process_arguments"]["convert_kwargs"].update(mode="std", min=None, max=None)
    tori["something_new"] = {"a": 1}
    mapping, notes = tori_to_mapping(tori, "x.tori")
    keys = [n.split(":")[0] for n in notes]
    for key in ("correction_arguments.stripe_function", "correction_arguments.normalize_to_unity",
                "correction_arguments.flatten_images", "file_definitions.slice_hor",
                "reconstruction_arguments.recon_kwargs.filter_name",
                "reconstruction_arguments.recon_kwargs.num_iter",
                "post_recon_process_arguments.convert_kwargs.mode", "something_new"):
        assert key in keys, key
    assert "stripe_recon" not in mapping           # Titarenko: not silently replaced
    assert "filter_name" not in mapping            # stays at teravox's default
    assert "dtype_range" not in mapping and mapping["dtype"] == "uint16"


def test_half_acquisition_uses_the_centre_before_conversion(tori):
    ra = tori["reconstruction_arguments"]
    ra.update(sino_360_to_180=True, sino_360_to_180_old_center=2200.0)
    ra["recon_kwargs"]["center"] = 2160.0    # a column of the stitched 180° sinogram
    mapping, _ = tori_to_mapping(tori, "x.tori")
    assert mapping["half_acquisition"] == "auto"
    assert mapping["center"] == pytest.approx(2200.0 + 120)


def test_calculated_angles(tori):
    tori["file_definitions"].update(theta_source="calc", theta_start=0, theta_end=360)
    mapping, notes = tori_to_mapping(tori, "x.tori")
    assert mapping["theta_source"] == "calc"
    assert (mapping["theta_start_deg"], mapping["theta_end_deg"]) == (0.0, 360.0)
    assert any(n.startswith("file_definitions.theta_end: approximate") for n in notes)


def test_iterative_algorithm_selects_tomopy(tori):
    tori["reconstruction_arguments"]["recon_kwargs"]["algorithm"] = "sirt"
    mapping, _ = tori_to_mapping(tori, "x.tori")
    assert mapping["backend"] == "tomopy" and mapping["algorithm"] == "sirt"


def test_excluded_projections_count_file_indices(tori):
    tori["file_definitions"]["slice_proj"] = [10, -1, 2]
    tori["reconstruction_arguments"]["excluded_proj"] = [[5, 8]]
    mapping, _ = tori_to_mapping(tori, "x.tori")
    assert mapping["proj_range"] == [10, -1, 2]
    assert mapping["exclude_proj"] == [[20, 26]]


def test_minmax_convert_reuses_stored_range_with_a_note(tori):
    tori["post_recon_process_arguments"]["convert_kwargs"].update(mode="minmax", dtype="uint8")
    mapping, notes = tori_to_mapping(tori, "x.tori")
    assert mapping["dtype"] == "uint8" and mapping["dtype_range"] == [-0.5, 4.0]
    assert any("convert_kwargs.mode: approximate" in n for n in notes)


def test_wrong_type_is_one_line_naming_file_and_key(tmp_path, tori):
    tori["correction_arguments"]["outlier_removal_kwargs"]["dif"] = "0.2"
    path = write(tmp_path, tori)
    with pytest.raises(ParamError) as err:
        load_tori(path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert "correction_arguments.outlier_removal_kwargs.dif" in message
    assert "expected a number" in message


def test_wrong_bool_names_key(tmp_path, tori):
    tori["correction_arguments"]["phase_retrieval"] = "yes"
    with pytest.raises(ParamError, match=r"correction_arguments\.phase_retrieval: expected true or false"):
        load_tori(write(tmp_path, tori))


def test_non_json_file(tmp_path):
    path = tmp_path / "broken.tori"
    path.write_text("{'file_definitions': ")
    with pytest.raises(ParamError, match="broken.tori: not a .tori file: not valid JSON"):
        load_tori(path)


def test_json_without_tori_sections(tmp_path):
    path = tmp_path / "other.tori"
    path.write_text(json.dumps({"center": 3}))
    with pytest.raises(ParamError, match="expected the sections"):
        load_tori(path)


def test_minimal_fresh_tori_gives_defaults():
    """The GUI's fresh_tori() defaults: nothing switched on, no -log (said so)."""
    fresh = {
        "file_definitions": {"data_file": "", "data_path": "exchange/data", "slice_proj": [0, -1, 1],
                             "slice_ver": [0, -1, 1], "slice_hor": [0, -1, 1],
                             "theta_source": "exchange", "theta_start": 0, "theta_end": 180},
        "correction_arguments": {"normalize_dark": False, "normalize_flat": False,
                                 "minus_log_before_phase": False, "minus_log_after_phase": False},
        "reconstruction_arguments": {"recon_kwargs": {"center": None, "algorithm": "gridrec",
                                                      "filter_name": "parzen"}, "pad": True},
        "post_recon_process_arguments": {},
    }
    mapping, notes = tori_to_mapping(fresh, "fresh.tori")
    assert mapping["flat_dark"] is False and mapping["minus_log"] is False
    assert "center" not in mapping and mapping["filter_name"] == "parzen"
    assert any("minus_log" in n for n in notes)


# -- teravox params --------------------------------------------------------------------


def test_params_lists_every_parameter(capsys):
    assert params_stage.main([]) == 0
    out = capsys.readouterr().out
    for name in ("[input]", "[recon]", "center", "delta_beta", "dtype_range"):
        assert name in out
    assert "delta/beta ratio for Paganin" in out           # the help text
    assert "delta_beta = 1000.0" in out                    # and the default


def test_params_check_tori(capsys):
    assert params_stage.main(["--check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "scan-0042.h5" in out
    assert "* distance_m" in out and "0.3" in out
    assert "not supported or only approximated" in out and "ring_removal" in out


def test_params_check_json_file(tmp_path, capsys):
    good = tmp_path / "p.json"
    good.write_text(json.dumps({"recon": {"center": 12.5}, "paganin": True}))
    assert params_stage.main(["--check", str(good)]) == 0
    assert "* center" in capsys.readouterr().out


def test_params_check_json_output_round_trips(tmp_path, capsys):
    assert params_stage.main(["--check", str(EXAMPLE), "--json"]) == 0
    out = capsys.readouterr().out
    resolved = json.loads(out)
    assert resolved["distance_m"] == pytest.approx(0.3)
    path = tmp_path / "resolved.json"
    path.write_text(out)
    assert params_stage.main(["--check", str(path)]) == 0


@pytest.mark.parametrize("content, name, expect", [
    ('{"centre": 3}', "p.json", "unknown parameter(s) centre"),
    ('{"center": "middle"}', "p.json", "center"),
    ("center: [1, 2", "p.yaml", "not valid YAML"),
    ("not json", "s.tori", "not valid JSON"),
])
def test_params_check_bad_files(tmp_path, capsys, content, name, expect):
    path = tmp_path / name
    path.write_text(content)
    assert params_stage.main(["--check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("teravox params: error: ")
    assert expect in err and str(path) in err
    assert err.count("\n") == 1


def test_params_check_bad_tori_type(tmp_path, capsys, tori):
    tori["correction_arguments"]["outlier_removal_kwargs"]["size"] = "five"
    assert params_stage.main(["--check", str(write(tmp_path, tori))]) == 2
    err = capsys.readouterr().err
    assert "correction_arguments.outlier_removal_kwargs.size: expected an integer" in err


def test_params_check_missing_file(tmp_path, capsys):
    assert params_stage.main(["--check", str(tmp_path / "absent.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_tori_saved_as_json_is_recognised(tmp_path, capsys, tori):
    path = write(tmp_path, tori, name="settings.json")
    assert params_stage.main(["--check", str(path)]) == 0
    assert "ring_removal" in capsys.readouterr().out


def test_copy_of_input_is_not_modified(tori):
    before = copy.deepcopy(tori)
    tori_to_mapping(tori, "x.tori")
    assert tori == before
