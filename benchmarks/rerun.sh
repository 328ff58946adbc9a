#!/usr/bin/env bash
# Re-run the benchmarks, each twice, on a quiet machine; JSON, logs and an index go to one dated folder,
# and benchmarks/summarize.py turns that folder into the tables of docs/performance.md.
#
#   bash benchmarks/rerun.sh                       # every benchmark, 2 runs (~70 min on 2 cores)
#   RUNS=1 ONLY=halving,profile bash benchmarks/rerun.sh         # run 1 of two benchmarks
#   OUT=<same folder> FIRST=2 RUNS=2 ONLY=halving bash benchmarks/rerun.sh   # a second run into that folder
#   .venv/bin/python benchmarks/summarize.py out/bench-<stamp>
#
# The whole set runs once, then again, so the two runs of one benchmark lie ~35 minutes apart: their
# spread is what this machine's drift does to a number. Sizes are the ones docs/performance.md uses.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
RUNS="${RUNS:-2}"
ONLY="${ONLY:-halving,profile,profile-rg,infer,tune,refit,memory,demo}"
D="${OUT:-out/bench-$(date -u +%Y%m%d-%H%M)}"
mkdir -p "$D"
echo "# benchmarks/rerun.sh, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), runs=$RUNS, only=$ONLY" >> "$D/index.txt"
for k in $(seq "${FIRST:-1}" "$RUNS"); do
  for b in ${ONLY//,/ }; do
    case "$b" in
      halving) cmd=("$PY" benchmarks/halving.py --json "$D/halving-$k.json") ;;
      halving-cnn) cmd=("$PY" benchmarks/halving.py --architecture cnn --sample 20000 --json "$D/halving-cnn-$k.json") ;;
      profile) cmd=("$PY" benchmarks/profile_image.py --rows 20000,200000 --repeats 3 --json "$D/profile-$k.json") ;;
      profile-rg) cmd=("$PY" benchmarks/profile_image.py --rows 200000 --repeats 3 --row-group 8192 --json "$D/profile-rg-$k.json") ;;
      infer) cmd=("$PY" benchmarks/infer.py --paths pbu,image,tensor --json "$D/infer-$k.json") ;;
      tune) cmd=("$PY" benchmarks/tune.py --epochs 15 --skip a,d,cv --json "$D/tune-$k.json") ;;
      refit) cmd=("$PY" benchmarks/refit.py --json "$D/refit-$k.json") ;;
      memory) cmd=("$PY" benchmarks/memory.py --rows 100000,400000 --json "$D/memory-$k.json") ;;
      demo) cmd=(env OUT="$D/demo-$k" bash scripts/dev.sh demo) ;;
      *) echo "rerun.sh: unknown benchmark $b" >&2; exit 2 ;;
    esac
    start=$(date -u +%FT%TZ); t0=$SECONDS
    "${cmd[@]}" > "$D/$b-$k.log" 2>&1
    rc=$?
    echo "$b run $k: start $start, $((SECONDS - t0)) s, rc $rc, load $(cut -d' ' -f1-3 /proc/loadavg): ${cmd[*]}" | tee -a "$D/index.txt"
  done
done
echo "results: $D (summarise: $PY benchmarks/summarize.py $D)"
