"""edge/safe_load.py: profiles (YAML) and sidecars/manifests (JSON) read in bounded memory
and time, every problem a one-line EdgeError."""
import os
import time

import pytest

from edge.errors import EdgeError
from edge.safe_load import load_json, load_json_file, load_yaml, read_text_file


def _refused(fn, *args, **kw) -> str:
    with pytest.raises(EdgeError) as info:
        fn(*args, **kw)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


# ---- JSON --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, says", [
    ("[" * 100_000 + "]" * 100_000, "nested 100000 levels"),  # RecursionError in json.loads
    ('{"a": ' * 50_000 + "1" + "}" * 50_000, "nested 50000 levels"),
    ("[" * 100_000, "nested 100000 levels"),  # unterminated
    ("1" * 5000, "5000 digits"),
    ('{"n": -' + "9" * 31 + "}", "32 digits"),
    ("NaN", "NaN"),
    ('{"x": Infinity}', "Infinity"),
    ('{"x": 1e999}', "out of range"),
    ('{"person": "a", "person": "b"}', "appears twice"),
    ('{"person": "\\ud800"}', "lone surrogate"),
    ('{"\\udfff": 1}', "lone surrogate"),
    ("", "Expecting value"),
    ('{"a": 1', "Expecting"),
])
def test_load_json_refuses_hostile_documents_in_one_line(text, says):
    started = time.monotonic()
    message = _refused(load_json, text, "sidecar in/a.json")
    assert message.startswith("sidecar in/a.json is not valid JSON: "), message
    assert says in message, message
    assert time.monotonic() - started < 2.0


def test_load_json_keeps_ordinary_documents():
    assert load_json('{"person": "p1", "tags": [1, 2.5, null, true], "note": "[[{{"}', "x") == {
        "person": "p1", "tags": [1, 2.5, None, True], "note": "[[{{"}
    assert load_json(b'{"a": "\\u00e9\\ud83d\\ude00"}', "x") == {"a": "\u00e9\U0001F600"}
    assert load_json("[" * 32 + "]" * 32, "x") is not None  # exactly the cap
    _refused(load_json, "[" * 33 + "]" * 33, "x")
    assert load_json("[" * 5 + "]" * 5, "x", max_depth=5) == [[[[[]]]]]


def test_load_json_brackets_inside_strings_do_not_count():
    text = '{"s": "' + "[" * 10_000 + '\\"{{{"}'
    assert load_json(text, "x") == {"s": "[" * 10_000 + '"{{{'}


def test_load_json_rejects_non_utf8_bytes():
    assert "not a text (UTF-8) file" in _refused(load_json, b'{"a": "\xff"}', "sidecar s.json")


def test_load_json_pathological_strings_stay_linear():
    # `"\"\"\"...` unterminated: a scanner that retried from every quote took 1.3 s for
    # 16 KB and minutes for a megabyte.
    started = time.monotonic()
    _refused(load_json, '"\\' * 500_000, "x")
    _refused(load_json, '"' * 1_000_000, "x")
    assert time.monotonic() - started < 3.0


def test_load_json_file_caps_size_before_reading(tmp_path):
    big = tmp_path / "big.json"
    big.write_text("[" + "1," * 600_000 + "1]")
    assert "more than the 65536" in _refused(load_json_file, str(big), "sidecar", 65536)
    ok = tmp_path / "ok.json"
    ok.write_text('{"person": "p1"}')
    assert load_json_file(str(ok), "sidecar", 65536) == {"person": "p1"}
    assert "does not exist" in _refused(load_json_file, str(tmp_path / "no.json"), "sidecar", 10)
    assert "not a regular file" in _refused(load_json_file, str(tmp_path), "sidecar", 10)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert "not a regular file" in _refused(load_json_file, str(fifo), "sidecar", 10)  # no hang


def test_load_json_file_unreadable_is_one_line(tmp_path):
    from faults_helpers import as_user  # root reads whatever the mode: read as another user

    locked = tmp_path / "locked.json"
    locked.write_text("{}")
    locked.chmod(0)
    tmp_path.chmod(0o755)
    with as_user():
        assert "cannot be read: Permission denied" in _refused(load_json_file, str(locked), "sidecar", 100)


# ---- YAML --------------------------------------------------------------------------------

LAUGHS = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"]
                   + [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]"
                      for i in range(8)])


@pytest.mark.parametrize("text, says", [
    (LAUGHS, "aliases"),
    ("x: " + "[" * 1000 + "]" * 1000, "nested"),
    ("x: " + "9" * 5000, "digits"),
    ("x: !!float abc", "YAML"),
    ("x: !!python/object:os.system {}", "YAML"),
    ("x: [1, 2", "YAML"),
    ("video: {fps: !!float &1e3}", "YAML"),  # found by fuzzing: IndexError inside PyYAML
    ("x: !!int &a", "YAML"),
])
def test_load_yaml_refuses_hostile_documents_in_one_line(text, says):
    started = time.monotonic()
    message = _refused(load_yaml, text, "config p.yaml")
    assert message.startswith("config p.yaml is not valid YAML"), message
    assert says in message, message
    assert time.monotonic() - started < 2.0


def test_load_yaml_keeps_dates_as_text():
    assert load_yaml("when: 2001-13-45\nok: 2001-12-14", "x") == {"when": "2001-13-45", "ok": "2001-12-14"}


def test_read_text_file_refuses_big_files_before_reading(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: the size alone must refuse it
    message = _refused(read_text_file, str(big), "config", 256 * 1024)
    assert "52428800 bytes" in message
