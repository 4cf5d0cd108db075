"""The device-profile schema: defaults, the shipped profile, one-line errors naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge.config import load_config, parse_config
from edge.errors import EdgeError

ROOT = Path(__file__).resolve().parent.parent
DESKTOP = ROOT / "firmware_configs" / "desktop.yaml"


def test_desktop_profile_loads_and_matches_schema_defaults():
    config = load_config(str(DESKTOP))
    assert config.profile == "desktop"
    assert config.video.analysis_fps == 10
    assert config.models.emotion.backend == "tflite"
    assert config.output.store_media is False
    # The profile spells every key out: its values equal the documented defaults, but for the
    # precision, which is `auto` there (measured per CPU) and a fixed file by default.
    data = config.as_dict()
    assert data["models"]["emotion"].pop("precision") == data["models"]["severity"].pop("precision") == "auto"
    defaults = parse_config({}).as_dict()
    del defaults["models"]["emotion"]["precision"], defaults["models"]["severity"]["precision"]
    assert data == defaults
    text = DESKTOP.read_text()
    assert text.count("\n") > 60 and all(f"\n{section}:" in text for section in defaults if section != "profile")


@pytest.mark.parametrize("data, key", [
    ({"video": {"fsp": 30}}, "video.fsp"),
    ({"colour": "red"}, "colour"),
    ({"models": {"emotion": {"backed": "onnx"}}}, "models.emotion.backed"),
])
def test_unknown_keys_are_refused_by_name(data, key):
    with pytest.raises(EdgeError) as info:
        parse_config(data, "x.yaml")
    message = str(info.value)
    assert f"unknown key '{key}'" in message and "\n" not in message


@pytest.mark.parametrize("data, key", [
    ({"video": {"fps": "thirty"}}, "video.fps"),
    ({"threads": True}, "threads"),
    ({"threads": 1.5}, "threads"),
    ({"output": {"store_media": "yes"}}, "output.store_media"),
    ({"video": "camera"}, "video"),
    ({"models": {"emotion": {"backend": "tensorrt"}}}, "models.emotion.backend"),
    ({"video": {"analysis_fps": 0}}, "video.analysis_fps"),
    ({"face": {"downscale": 1.5}}, "face.downscale"),
    ({"audio": {"device_rates_hz": [16000, "x"]}}, "audio.device_rates_hz"),
    ({"models": {"emotion": {"providers": ["cuda"]}}}, "models.emotion.providers"),
    ({"models": {"severity": {"providers": []}}}, "models.severity.providers"),
])
def test_wrong_types_and_values_name_the_key(data, key):
    with pytest.raises(EdgeError) as info:
        parse_config(data, "x.yaml")
    assert f"'{key}'" in str(info.value)


def test_file_errors_are_one_line(tmp_path):
    with pytest.raises(EdgeError, match="does not exist"):
        load_config(str(tmp_path / "absent.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("video: [unclosed\n")
    with pytest.raises(EdgeError, match="not valid YAML") as info:
        load_config(str(bad))
    assert "\n" not in str(info.value)


def test_a_config_naming_a_missing_model_fails_in_one_line(tmp_path):
    from edge.engine.models import load_models

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"models": {"emotion": {"name": "no_such_model"}}}))
    with pytest.raises(EdgeError, match="no_such_model") as info:
        load_models(load_config(str(path)))
    assert "\n" not in str(info.value)
    path.write_text(yaml.safe_dump({"models": {"severity": {"name": "gone"}}}))
    with pytest.raises(EdgeError, match="gone"):
        load_models(load_config(str(path)))


def test_absent_onnx_providers_fall_back_to_the_cpu(tmp_path):
    """A Jetson profile asks for TensorRT/CUDA; where onnxruntime lacks them the models still
    load, on the CPU, and the backend description says which providers really run."""
    from edge.engine.models import load_models

    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    path = tmp_path / "jetson.yaml"
    path.write_text(yaml.safe_dump({"models": {
        "emotion": {"backend": "onnx", "precision": "fp32", "providers": wanted},
        "severity": {"backend": "onnx", "precision": "fp32", "providers": wanted}}}))
    classifier, severity, _ = load_models(load_config(str(path)))
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    for backend in (classifier.backend, severity.model.backend):
        assert backend.providers == [p for p in wanted if p in available]
        assert "CPUExecutionProvider" in backend.description


@pytest.mark.parametrize("screen", [{"vote_frames": 20, "min_vote_frames": 30},
                                    {"vote_frames": 1200, "min_vote_frames": 1201}])
def test_min_vote_frames_must_not_exceed_vote_frames(screen):
    with pytest.raises(EdgeError, match="key 'screen.min_vote_frames' must be between 1 and") as info:
        parse_config({"screen": screen})
    assert "\n" not in str(info.value)
    assert parse_config({"screen": {"vote_frames": 30, "min_vote_frames": 30}}).screen.min_vote_frames == 30


def test_an_unknown_key_is_quoted_short():
    # Found by fuzzing (issue 21): a 1 MB key was repeated whole in the message.
    from edge.config import parse_config
    from edge.errors import EdgeError

    with pytest.raises(EdgeError) as info:
        parse_config({"video": {"x" * 1_000_000: 1}}, "config p.yaml")
    assert len(str(info.value)) < 400 and "unknown key 'video.xxx" in str(info.value)


def test_a_key_with_newlines_is_quoted_on_one_line():
    # Found by fuzzing (issue 21): a key with newlines made a 12-line error.
    from edge.config import parse_config
    from edge.errors import EdgeError

    with pytest.raises(EdgeError) as info:
        parse_config({"video": {"fps\n\n\nx": 1}}, "config p.yaml")
    assert "\n" not in str(info.value) and "fps\\n" in str(info.value)
