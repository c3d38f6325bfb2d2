#!/bin/sh
# `pip install` of client/python into a fresh venv, as a user would, then an
# import of the installed package and its generated messages (ctest entry
# python_client_install). No package index: --no-index, and the build
# backend from Debian's python3-setuptools (--no-build-isolation), with the
# venv seeing the system's packages (python3-protobuf).
#   install_check.sh REPO_ROOT
set -eu
repo=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A copy: setuptools writes build/ and *.egg-info next to the sources.
cp -R "$repo/client/python" "$tmp/pkg"
rm -rf "$tmp/pkg/build" "$tmp/pkg"/*.egg-info "$tmp/pkg/tokend/_proto/tokend_pb2.py"
/usr/bin/python3 -m venv --system-site-packages "$tmp/venv"
TOKEND_PROTO="$repo/proto/tokend.proto" "$tmp/venv/bin/python" -m pip install \
  -q --no-index --no-build-isolation "$tmp/pkg"
cd "$tmp"
"$tmp/venv/bin/python" - <<'PY'
import sys
import tokend
from tokend._proto import tokend_pb2

assert tokend.__file__.startswith(sys.prefix), tokend.__file__
assert tokend_pb2.Request.DESCRIPTOR.fields_by_name["verify"].number == 3
print("installed", tokend.__version__, "at", tokend.__file__)
PY
