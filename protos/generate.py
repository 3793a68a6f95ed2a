"""Generate the Python modules of the Fivetran SDK protos (``python -m protos.generate``).

Runs grpcio-tools' protoc over ``protos/*.proto`` and writes ``<name>_pb2.py``, ``<name>_pb2.pyi`` and
``<name>_pb2_grpc.py`` next to them. The ``.proto`` files import each other by bare file name (as
upstream does, so descriptors keep the upstream file names), which makes protoc emit top-level imports
such as ``import common_pb2``; they are rewritten to ``from protos import common_pb2`` so the generated
code works as a package without touching ``sys.path``.

``--out DIR`` writes elsewhere (the stale-code test regenerates into a temporary directory and compares
byte for byte with the committed files). Needs the ``test`` extra (grpcio-tools).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PACKAGE = "protos"
PROTO_FILES = ("common.proto", "connector_sdk.proto", "destination_sdk.proto")
MODULES = tuple(name.removesuffix(".proto") for name in PROTO_FILES)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

# `import common_pb2 as common__pb2` / `from common_pb2 import X as X` at the start of a line.
_BARE_IMPORT = re.compile(rf"^import ({'|'.join(MODULES)})_pb2 as ", re.MULTILINE)
_BARE_FROM = re.compile(rf"^from ({'|'.join(MODULES)})_pb2 import ", re.MULTILINE)


def generated_file_names() -> list[str]:
    return [module + suffix for module in MODULES for suffix in GENERATED_SUFFIXES]


def _package_qualified(source: str) -> str:
    source = _BARE_IMPORT.sub(rf"from {PACKAGE} import \1_pb2 as ", source)
    return _BARE_FROM.sub(rf"from {PACKAGE}.\1_pb2 import ", source)


def generate(out_dir: Path) -> list[Path]:
    """Run protoc into ``out_dir`` and post-process the imports; return the files written."""
    from grpc_tools import protoc  # the test extra; imported here so `import protos` never needs it

    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_DIR}",
            f"--proto_path={well_known}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            *(str(PROTO_DIR / name) for name in PROTO_FILES),
        ]
        status = protoc.main(args)
        if status != 0:
            raise RuntimeError(f"protoc failed with exit status {status}; see its messages above")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in generated_file_names():
            text = (Path(raw) / name).read_text(encoding="utf-8")
            target = out_dir / name
            target.write_text(_package_qualified(text), encoding="utf-8")
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO_DIR, help="output directory (default: protos/)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
