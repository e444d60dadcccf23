#!/usr/bin/env bash
# `make package-test`: run the bundle from a copied location with a clean environment (no Python
# on PATH, no source tree beside it), headless, twice at once sharing one arbiter.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x dist/Hearth/Hearth ] || { echo "no bundle: run make package first"; exit 1; }
scratch=$(mktemp -d)
trap 'pkill -f "$scratch/Hearth/Hearth --arbiter" 2>/dev/null || true; rm -rf "$scratch"' EXIT
cp -a dist/Hearth "$scratch/Hearth"
mkdir -p "$scratch/home" "$scratch/empty-bin" "$scratch/runtime"
run_bundle() {
  (cd "$scratch/home" && env -i HOME="$scratch/home" PATH="$scratch/empty-bin" QT_QPA_PLATFORM=offscreen \
     HF_HUB_OFFLINE=1 HEARTH_RUNTIME_DIR="$scratch/runtime" "$scratch/Hearth/Hearth" --self-test)
}
start=$(date +%s)
run_bundle > "$scratch/first.log" 2>&1 & first=$!
sleep 5
run_bundle > "$scratch/second.log" 2>&1 & second=$!
arbiters=0
for _ in $(seq 1 60); do
  n=$(pgrep -fc "$scratch/Hearth/Hearth --arbiter" || true)
  [ "$n" -gt "$arbiters" ] && arbiters=$n
  kill -0 $first 2>/dev/null || kill -0 $second 2>/dev/null || break
  sleep 2
done
status=0
wait $first || status=1
wait $second || status=1
cat "$scratch/first.log" "$scratch/second.log" | grep -E "self-test" || true
echo "arbiter processes seen at once: $arbiters (expected 1)"
echo "package-test took $(( $(date +%s) - start )) s"
[ "$arbiters" -eq 1 ] || status=1
[ $status -eq 0 ] || { tail -n 40 "$scratch/first.log" "$scratch/second.log"; }
exit $status
