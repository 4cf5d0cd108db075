"""`edge config check` names the files a profile references that are missing here (issue 18);
`--template` checks a profile away from its device (the shipped firmware_configs/)."""
from __future__ import annotations

from edge.apps.config_check import check_file


def test_referenced_files_that_are_missing_are_named(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text(f"audio:\n  source: {tmp_path}/night.wav\nvideo:\n  source: {tmp_path}/day.mp4\n"
                       f"mqtt:\n  enabled: true\n  tls: true\n  ca_file: {tmp_path}/ca.pem\n  username: gw\n"
                       f"  password_file: {tmp_path}/password\n")
    errors = check_file(str(profile))
    assert len(errors) == 4 and all(e.startswith(f"{profile}: key '") and "does not exist" in e for e in errors)
    for name in ("night.wav", "day.mp4", "ca.pem", "password"):
        assert sum(name in e for e in errors) == 1, name
    assert check_file(str(profile), files=False) == []  # --template
    (tmp_path / "night.wav").write_bytes(b"")
    (tmp_path / "password").write_text("")
    errors = check_file(str(profile))
    assert any("password is empty" in e for e in errors) and not any("night.wav" in e for e in errors)
