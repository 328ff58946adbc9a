#!/usr/bin/env bash
# Check the package as a new user gets it: build the sdist and the wheel (from the sdist), install the
# wheel into a clean venv, first without TensorFlow (import works; the first TF use says what to install),
# then with the CPU choice ([cpu]); run `sparkdl-lite --version` and one real TFTransformer transform on
# local[1] Spark, loopback only, checked against NumPy (scripts/check_wheel.py).
#   bash scripts/check_wheel.sh    # needs python3 with venv and Java 17/21 (bash scripts/dev.sh setup)
# Work dir: $CHECK_WHEEL_DIR (default /tmp/sparkdl_lite_check_wheel); the venv is rebuilt on every run and
# removed after a pass (CHECK_WHEEL_KEEP=1 keeps it). pip's cache is left on, so the venv reuses the
# wheels and downloads every other venv on this machine has already fetched (pyspark, tensorflow-cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PYTHON="${PYTHON:-python3}"
WORK="${CHECK_WHEEL_DIR:-${TMPDIR:-/tmp}/sparkdl_lite_check_wheel}"
PIP_FLAGS=(-q --no-compile --progress-bar off)  # no .pyc for ~20k files: the check imports only a few
SECONDS=0
step() { echo ">> check_wheel [${SECONDS}s] $*"; }
fail() { echo "check_wheel: FAILED: $*" >&2; exit 1; }

java -version >/dev/null 2>&1 || fail "no java on PATH; run: bash scripts/dev.sh setup"
mkdir -p "$WORK"

step "build sdist, then the wheel from it"
tools="$WORK/tools"  # the build frontend only; kept between runs
if [ ! -x "$tools/bin/pyproject-build" ]; then
  "$PYTHON" -m venv "$tools"
  "$tools/bin/python" -m pip install "${PIP_FLAGS[@]}" build
fi
rm -rf "$WORK/dist"
if ! "$tools/bin/pyproject-build" --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1; then
  cat "$WORK/build.log" >&2; fail "the build failed (log: $WORK/build.log)"
fi
if grep -E 'BuildBackendWarning|Setuptools[A-Za-z]*Warning' "$WORK/build.log" >&2; then
  fail "the build printed setuptools warnings (above; log: $WORK/build.log): fix the metadata in pyproject.toml"
fi
wheel=$(ls "$WORK"/dist/sparkdl_lite-*-py3-none-any.whl)
version=$(basename "$wheel" | cut -d- -f2)
echo "   $(basename "$wheel")"

step "clean venv, then the wheel without extras"
venv="$WORK/venv"
py="$venv/bin/python"
rm -rf "$venv"
"$PYTHON" -m venv "$venv"
"$py" -m pip install "${PIP_FLAGS[@]}" --upgrade pip
"$py" -m pip install "${PIP_FLAGS[@]}" "$wheel"

# Run everything from outside the checkout, so its sparkdl_lite/ cannot shadow the installed one.
cd "$WORK"
unset PYTHONPATH PYTHONHOME SPARK_HOME
export SPARK_LOCAL_IP=127.0.0.1
export PYSPARK_PYTHON="$py"
export PYSPARK_DRIVER_PYTHON="$py"
export TF_CPP_MIN_LOG_LEVEL=2

"$py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("tensorflow") is not None)' \
  || fail "installing the wheel without extras pulled TensorFlow in; TF belongs in the [cpu]/[gpu] extras only"
if out=$("$py" -c 'from sparkdl_lite import TFGraph; TFGraph.from_bytes(b"x")' 2>&1); then
  fail "without TensorFlow, TFGraph.from_bytes raised nothing"
fi
grep -q 'ImportError: sparkdl_lite needs TensorFlow >= 2.16.*pip install "sparkdl_lite\[cpu\]"' <<<"$out" \
  || { echo "$out" >&2; fail "without TensorFlow, the first TF use did not raise the clear ImportError"; }
echo "   without TF: import works; first TF use: $(tail -n 1 <<<"$out" | cut -c1-90)..."

step "the wheel with the CPU choice: $(basename "$wheel")[cpu]"
"$py" -m pip install "${PIP_FLAGS[@]}" "$wheel[cpu]"
got=$("$venv/bin/sparkdl-lite" --version)
[ "$got" = "$version" ] || fail "sparkdl-lite --version printed '$got'; expected '$version'"
echo "   sparkdl-lite --version: $got"

step "one real transform (local[1] Spark, loopback)"
"$py" "$ROOT/scripts/check_wheel.py"

[ "${CHECK_WHEEL_KEEP:-0}" = 1 ] || rm -rf "$venv"
step "passed"
