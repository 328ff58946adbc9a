#!/usr/bin/env bash
# sparkdl_lite developer entry point: set up a fresh Debian machine, then run the main job or the tests.
#   bash scripts/dev.sh demo   # set up, then run the main job end to end on local Spark (tune + label)
#   bash scripts/dev.sh test   # set up, then run the test suite
#   bash scripts/dev.sh setup  # only set up (.venv, Java 17, Fashion-MNIST)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

need_apt=()
if ! command -v java >/dev/null 2>&1 || ! java -version 2>&1 | grep -qE 'version "(17|21)'; then
  need_apt+=(openjdk-17-jre-headless)
fi
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
command -v "$PYTHON" >/dev/null 2>&1 || need_apt+=(python3 python3-venv python3-pip)
if [ "${#need_apt[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo ">> apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv "$VENV"
  fi
fi
stamp="$VENV/.sparkdl_lite_installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # TensorFlow is an extra (README "Install"): [cpu] picks tensorflow-cpu here, [dev] adds the test tools.
  echo ">> pip install -e .[cpu,connect,dev] into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[cpu,connect,dev]"
  touch "$stamp"
fi

export SPARK_LOCAL_IP=127.0.0.1
export PYSPARK_PYTHON="$PWD/$VENV/bin/python"
export PYSPARK_DRIVER_PYTHON="$PYSPARK_PYTHON"

case "${1:-test}" in
  setup) echo ">> set up: $VENV ready" ;;
  test)
    shift || true
    "$VENV/bin/python" -m pytest -q "$@"
    if [ "$#" -eq 0 ]; then
      # The Spark Connect half: its own process (a Connect server cannot start beside a classic SparkContext).
      SPARKDL_LITE_CONNECT_SUITE=1 "$VENV/bin/python" -m pytest -q tests/connect
    fi ;;
  lint)
    "$VENV/bin/ruff" check sparkdl_lite tests benchmarks ;;
  demo)
    # The main job, small: tune the built-in CNN, 8 param maps on 10,000 Fashion-MNIST images (train/validation
    # split; each model trains ~9 s, long enough that running them side by side pays), then label 500 test PNGs.
    OUT="${OUT:-out/demo}"
    SECONDS=0
    "$PYSPARK_PYTHON" -m sparkdl_lite.cli tune --data fashion-mnist --sample 10000 --architecture cnn \
        --grid "learningRate=3e-4,1e-3,3e-3,1e-2 dropout=0,0.25" --epochs 5 --out "$OUT/tune"
    "$PYSPARK_PYTHON" -m sparkdl_lite.cli images --data fashion-mnist --split test --limit 500 --out "$OUT/images"
    "$PYSPARK_PYTHON" -m sparkdl_lite.cli label --model "$OUT/tune/best_model" --images "$OUT/images" \
        --out "$OUT/labels.parquet" --class-names fashion-mnist
    echo ">> demo done in ${SECONDS}s"
    echo ">> report: $OUT/tune/report.md (plot: $OUT/tune/sensitivity.png, table: $OUT/tune/results.csv)"
    echo ">> labels: $OUT/labels.parquet, best model: $OUT/tune/best_model" ;;
  *) echo "usage: bash scripts/dev.sh [setup|test|lint|demo]" >&2; exit 2 ;;
esac
