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
# The whole run stays under 8 minutes: each benchmark gets at most 150 s, and none starts with
# less than 30 s of the budget left (it is reported as skipped, and the run fails).
deadline=$((SECONDS + 470))
for bench in chat brush_edit image_families video_memory video_families music music_families arbiter; do
  script="bench/$bench.py"
  [ -f "$script" ] || { echo "skip $bench (no $script)"; continue; }
  left=$((deadline - SECONDS))
  if [ "$left" -lt 30 ]; then echo "skip $bench (the 8-minute budget is spent)"; status=1; continue; fi
  [ "$left" -gt 150 ] && left=150
  echo "== $bench"
  if timeout "$left" "$PY" "$script" --gpu > "$DEST/$bench.log" 2>&1; then
    tail -n 1 "$DEST/$bench.log" > "$DEST/$STAMP-$bench-gpu.json"
    cat "$DEST/$STAMP-$bench-gpu.json"
  else
    echo "$bench failed; see $DEST/$bench.log"; tail -n 20 "$DEST/$bench.log"; status=1
  fi
done
exit $status
