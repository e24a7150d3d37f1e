#!/bin/sh
# The whole shapes-tiny recipe on a 2-core machine: phase 1 (the autoencoder) and phase 2 (layout
# prior and diffusion) do not depend on each other, so they run side by side, one thread each;
# then a third run exports the model from their checkpoints. Extra arguments go to every run
# (e.g. --seed). See training/README.md.
set -e
export OMP_WAIT_POLICY=PASSIVE
WORK=${WORK:-training/runs/shapes-tiny}
OUT=${OUT:-models/shapes-tiny}
run() {
  /usr/bin/python3 training/train.py --out "$OUT" --work "$WORK" --threads 1 "$@"
}
mkdir -p "$WORK"
run --stop-after autoencoder "$@" > "$WORK/autoencoder.out" 2>&1 &
autoencoder=$!
run --start-at diffusion --stop-after diffusion "$@"
wait $autoencoder || { echo "phase 1 failed: see $WORK/autoencoder.out" >&2; exit 1; }
run --resume "$@"
