"""Writes the AsyncAPI document generated from the application: ``python -m service.asyncapi``.

The committed copy is docs/asyncapi.json; tests/unit/test_asyncapi.py fails when it drifts.
"""

import json
import sys
from pathlib import Path

from service.bootstrap import build
from service.config import Settings

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.json"


def render() -> str:
    """The document for default settings (no topic prefix), pretty-printed and stable."""
    # Defaults only: the environment (a test cluster, a prefix) must not leak into the document.
    application = build(Settings.model_construct())
    spec = json.loads(application.app.schema.to_specification().to_json())
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCUMENT
    target.write_text(render())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
