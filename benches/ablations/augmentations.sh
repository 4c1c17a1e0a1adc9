#!/bin/bash
# The augmentation rows of the README's recipe ablation: the 30-minute recipe cut to 3 epochs,
# one augmentation setting changed per run, measured on the validation images each run holds
# out (linear probe at 1, 10 and all labels per class over 3 seeds, kNN with all labels).
#   PRETEXT=target/release/pretext DATA=/usr/share/datasets/fashion-mnist \
#       nice benches/ablations/augmentations.sh
set -eu
PRETEXT=${PRETEXT:-target/release/pretext}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-runs/ablations}
mkdir -p "$OUT"
run() {
  name=$1; shift
  config="$OUT/aug-$name.toml"
  sed -e 's/^epochs = 24/epochs = 3/' configs/fashion-mnist-30min.toml > "$config"
  # Task settings go under kind = "simclr".
  for setting in "$@"; do sed -i "/^kind = \"simclr\"/a $setting" "$config"; done
  echo "== $name: $*"
  "$PRETEXT" pretrain --quiet --config "$config" --data "$DATA" --out "$OUT/aug-$name" --force
  for n in 1 10 all; do
    "$PRETEXT" probe --checkpoint "$OUT/aug-$name" --protocol linear --labels-per-class $n \
      --on validation --data "$DATA"
  done
  "$PRETEXT" probe --checkpoint "$OUT/aug-$name" --protocol knn --labels-per-class all \
    --on validation --data "$DATA"
}
run no-blur "blur_prob = 0.0"
run crop-0.08 "crop_scale = [0.08, 1.0]"
run crop-0.4 "crop_scale = [0.4, 1.0]"
run noise "noise_prob = 0.5"
run jitter-0.8 "brightness = 0.8" "contrast = 0.8"
