"""Regenerates the committed Python stubs from the .proto files: forgetd/v1 (package forgetd.v1) and the
vendored Open Inference Protocol in inference/ (package forgetd.oip).

Run `make stubs`. tests/test_protos.py regenerates into a temporary folder and fails if the committed
stubs differ, so a .proto edit without regeneration cannot land.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PROTOS = Path(__file__).resolve().parent
PACKAGE = PROTOS / "forgetd" / "v1"
OIP = PROTOS / "inference"
OIP_PACKAGE = "forgetd.oip"

# protoc names a sibling stub by its bare module name (`import model_config_pb2 as ...`) because the OIP
# files import each other from their own root, as upstream publishes them.
_SIBLING_IMPORT = re.compile(r"^import (\w+_pb2) as (\w+)$", re.MULTILINE)
_POOL_IMPORT = "from google.protobuf import descriptor_pool as _descriptor_pool\n"
_POOL_ADD = "_descriptor_pool.Default().AddSerializedFile("


def generate(out_dir: Path) -> list[Path]:
    """Writes *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for forgetd/v1 into out_dir/forgetd/v1 and for the
    OIP files into out_dir/inference; returns the written paths."""
    return _generate_v1(out_dir) + _generate_oip(out_dir / "inference")


def _protoc(include_root: Path, protos: list[str], out_dir: Path) -> None:
    from grpc_tools import protoc  # the test extra; generation is a development step
    import grpc_tools

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{include_root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {protos}")


def _generate_v1(out_dir: Path) -> list[Path]:
    protos = sorted(str(p.relative_to(PROTOS)) for p in PACKAGE.glob("*.proto"))
    _protoc(PROTOS, protos, out_dir)
    return sorted((out_dir / "forgetd" / "v1").glob("*_pb2*.py*"))


def _generate_oip(out_dir: Path) -> list[Path]:
    """The OIP files keep their upstream names (grpc_service.proto, model_config.proto) so the compiled
    descriptors are byte for byte the ones tritonclient carries; the stubs are then made importable as
    forgetd.oip and registered in forgetd.oip.POOL instead of protobuf's default pool."""
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = sorted(p.name for p in OIP.glob("*.proto"))
    _protoc(OIP, protos, out_dir)
    siblings = {name.removesuffix(".proto") + "_pb2" for name in protos}
    written = sorted(out_dir.glob("*_pb2*.py*"))
    for path in written:
        path.write_text(_package_oip_stub(path.name, path.read_text(), siblings))
    return written


def _package_oip_stub(name: str, text: str, siblings: set[str]) -> str:
    def absolute(match: re.Match[str]) -> str:
        module, alias = match[1], match[2]
        return f"from {OIP_PACKAGE} import {module} as {alias}" if module in siblings else match[0]

    text = _SIBLING_IMPORT.sub(absolute, text)
    if name.endswith("_pb2.py"):
        # tritonclient, kserve and mlserver register the same `inference.*` names in the default pool
        # (under other file names or versions); a second registration there fails at import.
        text = _replace_once(name, text, _POOL_IMPORT, f"from {OIP_PACKAGE} import POOL as _OIP_POOL\n")
        text = _replace_once(name, text, _POOL_ADD, "_OIP_POOL.AddSerializedFile(")
    return text


def _replace_once(name: str, text: str, old: str, new: str) -> str:
    count = text.count(old)
    if count != 1:
        raise SystemExit(f"{name}: expected {old!r} once in protoc's output, found it {count} times: "
                         "the grpcio-tools pin changed the generated code; update protos/generate.py")
    return text.replace(old, new)


if __name__ == "__main__":
    written = generate(PROTOS)
    print("\n".join(str(p.relative_to(PROTOS.parent)) for p in written))
    sys.exit(0)
