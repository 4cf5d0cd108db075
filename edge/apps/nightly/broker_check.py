"""Is the MQTT set-up usable at all? Checked before the night starts, and by `edge config check`.

A wrong set-up is the user's to fix and must be loud: a password file or CA file that is
missing or unreadable, a CA file that holds no certificate, a CA file or port 8883 with a
plain (non-TLS) connection, a password file without a user name. Each is one line; the job
exits 2 at start instead of calling the broker "unreachable" night after night while its
queue grows under the timer. A broker that is merely away is not an error here: the job
queues and exits 0 (the publisher, edge.reporting, says so).

Only the standard library (ssl): `edge config check` runs this on a build host too.
"""
from __future__ import annotations

import os
import stat
from typing import List, Optional

TLS_PORT = 8883  # MQTT over TLS (IANA); 1883 is plain MQTT


def _file_problem(path: str, key: str) -> Optional[str]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"key '{key}': {path} does not exist"
    except OSError as exc:
        return f"key '{key}': {path} cannot be read: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"key '{key}': {path} is not a regular file"
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return f"key '{key}': {path} cannot be read: {exc.strerror or exc}"
    return None


def broker_setup_errors(settings) -> List[str]:
    """One line per problem of an MQTT set-up (`settings`: the profile's `mqtt` section or
    the publisher's BrokerSettings: host, port, tls, ca_file, username, password_file);
    [] when it is usable. Reads the files it names; never connects."""
    errors: List[str] = []
    tls, ca_file = bool(settings.tls), settings.ca_file
    if ca_file and not tls:
        errors.append(f"key 'mqtt.ca_file' is set ({ca_file}) but the connection is plain MQTT "
                      "(mqtt.tls false or an mqtt:// URL): set mqtt.tls true or remove the CA file")
    elif not tls and int(settings.port) == TLS_PORT:
        errors.append(f"key 'mqtt.port' is {TLS_PORT} (MQTT over TLS) but mqtt.tls is false: "
                      "set mqtt.tls true, or the broker's plain port")
    if ca_file and tls:  # (a plain connection never reads it: the mismatch above is the one line)
        problem = _file_problem(ca_file, "mqtt.ca_file")
        if problem is None:
            import ssl

            try:
                ssl.create_default_context(cafile=ca_file)
            except (ssl.SSLError, ValueError, OSError) as exc:
                problem = f"key 'mqtt.ca_file': {ca_file} holds no usable CA certificate (PEM): {exc}"
        if problem:
            errors.append(problem)
    if settings.password_file:
        if not settings.username:
            errors.append("key 'mqtt.password_file' is set but mqtt.username is not: set the user name")
        problem = _file_problem(settings.password_file, "mqtt.password_file")
        if problem is None:
            with open(settings.password_file, "rb") as f:
                if not f.read(4096).strip():
                    problem = f"key 'mqtt.password_file': {settings.password_file} is empty"
        if problem:
            errors.append(problem)
    return [line.replace("\n", " ") for line in errors]
