import pytest

from diffusionad_edge.errors import ConfigError
from diffusionad_edge.export.targets import list_targets, load_target


def test_builtin_profiles_present():
    names = {t.name for t in list_targets()}
    assert {"openvino-cpu", "openvino-gpu", "openvino-npu", "onnxruntime-cpu", "jetson-orin", "jetson-orin-nano"} <= names
    for t in list_targets():
        assert t.precision in t.precisions and t.input_size >= 32


def test_user_profile_and_validation(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\nbackend = "onnxruntime"\nprecision = "int8"\ninput_size = 128\n')
    t = load_target(f)
    assert (t.name, t.backend, t.input_size, t.check_precision(None)) == ("mine", "onnxruntime", 128, "int8")
    with pytest.raises(ConfigError, match="supports precisions"):
        t.check_precision("fp16")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nbackend = "coreml"\n')
    with pytest.raises(ConfigError, match="unknown backend"):
        load_target(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_target(broken)
    with pytest.raises(ConfigError, match="unknown target 'nope'"):
        load_target("nope")
