"""Regenerates the committed Python stubs (package forgetd.v1) from protos/forgetd/v1/*.proto.

Run `make stubs`. tests/test_protos.py regenerates into a temporary folder and fails if the committed
stubs differ, so a .proto edit without regeneration cannot land.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTOS = Path(__file__).resolve().parent
PACKAGE = PROTOS / "forgetd" / "v1"


def generate(out_dir: Path) -> list[Path]:
    """Writes *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every .proto under forgetd/v1 into out_dir."""
    from grpc_tools import protoc  # the test extra; generation is a development step
    import grpc_tools

    protos = sorted(str(p.relative_to(PROTOS)) for p in PACKAGE.glob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {protos}")
    return sorted((out_dir / "forgetd" / "v1").glob("*_pb2*.py*"))


if __name__ == "__main__":
    written = generate(PROTOS)
    print("\n".join(str(p.relative_to(PROTOS.parent)) for p in written))
    sys.exit(0)
