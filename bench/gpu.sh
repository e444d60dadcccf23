#!/usr/bin/env bash
# Every benchmark's GPU section in one prepared run (see docs/BENCHMARKS.md).
# Through the device tool: results go to $OUT (else bench/results/), one JSON file per benchmark.
# Keep the whole script under 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEST=${OUT:-bench/results}
STAMP=$(date +%Y-%m-%d)
mkdir -p "$DEST"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" || exit 1
status=0
for bench in chat brush_edit video_memory music arbiter; do
  script="bench/$bench.py"
  [ -f "$script" ] || { echo "skip $bench (no $script)"; continue; }
  echo "== $bench"
  if timeout 150 "$PY" "$script" --gpu > "$DEST/$bench.log" 2>&1; then
    tail -n 1 "$DEST/$bench.log" > "$DEST/$STAMP-$bench-gpu.json"
    cat "$DEST/$STAMP-$bench-gpu.json"
  else
    echo "$bench failed; see $DEST/$bench.log"; tail -n 20 "$DEST/$bench.log"; status=1
  fi
done
exit $status
