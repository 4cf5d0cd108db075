"""`edge update`: install a signed model release beside the running one, or go back (issue 24).

    sudo edge update --bundle models-2026.12.05.tar.gz [--config /etc/edge/profile.yaml]
    sudo edge update --rollback
    sudo edge update --shipped      # the package's own models as the first release (the installer)
    edge update --status

The store is the profile's `models.store` (or --store); the services load `<store>/current`
(EDGE_MODELS_DIR in their units) when they start: restart them after an update. The bundle
must be signed for the profile's `models.release_key`; it is self-tested on this CPU before
the switch (edge.updates). Uses only the public names of `edge`.
"""
from __future__ import annotations

import json

from edge import EdgeError, ModelStore, load_config


def add_arguments(parser) -> None:
    parser.add_argument("--config", help="device profile YAML (models.release_key, models.store); "
                        "default: the built-in defaults")
    parser.add_argument("--store", metavar="DIR", help="model store (overrides models.store)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--bundle", metavar="FILE", help="a signed model bundle (python -m export release)")
    what.add_argument("--rollback", action="store_true", help="go back to the previous model set")
    what.add_argument("--shipped", action="store_true", help="install the package's own (signed) models")
    what.add_argument("--status", action="store_true", help="which model sets are current and previous")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    config = load_config(args.config)
    store = ModelStore(args.store or config.models.store)
    key, threads = config.models.release_key, config.threads
    try:
        if args.status:
            out = dict(store.status(), store=str(store.root), installed=store.installed())
            print(json.dumps(out, indent=2) if args.json else
                  f"model store {store.root}: current {out['current'] or 'none'}, previous {out['previous'] or 'none'}")
            return 0
        if args.rollback:
            result = store.rollback(key)
        elif args.shipped:
            result = store.install_folder(None, key, threads)
        else:
            result = store.install_bundle(args.bundle, key, threads)
    except PermissionError as exc:
        raise EdgeError(f"cannot write the model store {store.root} ({exc.strerror}): run as root "
                        "(sudo edge update ...)") from None
    except OSError as exc:
        raise EdgeError(f"model store {store.root}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps(result._asdict(), indent=2))
        return 0
    if not result.changed:
        print(f"release {result.version} is already the current model set in {store.root}")
        return 0
    verb = "rolled back to" if args.rollback else "installed"
    print(f"{verb} release {result.version} in {store.root} (previous: {result.previous or 'none'})")
    for file, figure in sorted(result.self_test.items()):
        print(f"  self-test {file}: {figure}")
    print("the services load it when they start: systemctl restart edge-kiosk (the nightly job: at its next run)")
    return 0
