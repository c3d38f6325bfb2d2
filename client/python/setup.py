"""Builds tokend/_proto/tokend_pb2.py from proto/tokend.proto with protoc
(Debian: protobuf-compiler) when the package is built or installed: nothing
generated is committed. Everything else is in pyproject.toml.

The .proto is found at $TOKEND_PROTO (a file path), else at
../../proto/tokend.proto from here (pip builds in place, so
`pip install ./client/python` from the repository finds it)."""

import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _proto_file():
    path = os.environ.get("TOKEND_PROTO") or os.path.join(
        HERE, "..", "..", "proto", "tokend.proto"
    )
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise SystemExit(
            f"tokend: {path} not found: build from the tokend repository, or "
            "set TOKEND_PROTO to proto/tokend.proto"
        )
    return path


class BuildWithProtoc(build_py):
    def run(self):
        super().run()
        protoc = shutil.which("protoc")
        if protoc is None:
            raise SystemExit("tokend: protoc not found (Debian: protobuf-compiler)")
        proto = _proto_file()
        out = os.path.join(self.build_lib, "tokend", "_proto")
        os.makedirs(out, exist_ok=True)
        subprocess.check_call(
            [protoc, "-I", os.path.dirname(proto), f"--python_out={out}", proto]
        )


setup(cmdclass={"build_py": BuildWithProtoc})
