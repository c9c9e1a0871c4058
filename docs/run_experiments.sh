#!/usr/bin/env bash
# Reproduces docs/EXPERIMENTS.md on the synthetic data (2-core CPU: about 2.5 hours in all).
#   bash docs/run_experiments.sh [OUT_DIR]      (default runs/experiments)
# Each step's wall time is appended to OUT_DIR/timings.tsv.
set -euo pipefail
OUT="${1:-runs/experiments}"
mkdir -p "$OUT"
COMMON=(--subjects 4 --epochs 10)
# The steps of the first round document the paper-literal model: pin it (the CLI's default is now
# --temporal align+context, see README "Model").
PAPER=(--temporal none)

step() {   # step NAME CMD...
  local name="$1"; shift
  local t0=$SECONDS
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$OUT/$name.log"
  printf '%s\t%s\t%s\n' "$name" "$((SECONDS - t0))" "$*" >> "$OUT/timings.tsv"
}

# Table 2-style overall result, 10-fold subject-dependent, leak-free trial split (the paper's stated protocol)
# vs the common leaky window split
step kfold_trial  himoe-fast train "${COMMON[@]}" --protocol kfold --folds 10 --split trial  --impl fast --no-progress "${PAPER[@]}" --out "$OUT/kfold_trial"
step kfold_window himoe-fast train "${COMMON[@]}" --protocol kfold --folds 10 --split window --impl fast --no-progress "${PAPER[@]}" --out "$OUT/kfold_window"
# Fig. 2 trajectories and Fig. 4a routing heatmap of the first fold
step plots        himoe-fast plots "$OUT/kfold_trial" --missing-rate 0.3
# Table 5-style subject-independent evaluation
step loso         himoe-fast train "${COMMON[@]}" --protocol loso --impl fast --no-progress "${PAPER[@]}" --out "$OUT/loso"
# Table 4-style binary classification
step binary       himoe-fast train "${COMMON[@]}" --protocol holdout --task binary --impl fast --no-progress "${PAPER[@]}" --out "$OUT/binary"
# DREAMER format (synthetic, 23 subjects like the real set)
step dreamer_synth himoe-fast synth --kind dreamer --subjects 23 --out "$OUT/dreamer_data/DREAMER.mat"
step dreamer      himoe-fast train --dataset dreamer --data-dir "$OUT/dreamer_data" --epochs 40 --protocol holdout --impl fast --no-progress "${PAPER[@]}" --out "$OUT/dreamer"
# Table 6 ablations and Fig. 4b emotion-expert count
step ablate       himoe-fast ablate "${COMMON[@]}" --protocol holdout --seeds 0,1,2 --expert-counts 1,2,4,8,16 --impl fast "${PAPER[@]}" --out "$OUT/ablate"
# the same ablation with 30% of modalities missing (train and test), where routing has work to do
step ablate_missing30 himoe-fast ablate "${COMMON[@]}" --protocol holdout --seeds 0,1,2 --missing-rate 0.3 --impl fast "${PAPER[@]}" --out "$OUT/ablate_missing30"
# Table 3 / Fig. 3 robustness to missing modalities: paper-literal Hi-MoE, the default Hi-MoE
# (--temporal align+context) and the four baselines, paired (same splits and masks per seed)
step robustness   himoe-fast robustness "${COMMON[@]}" --protocol holdout --models himoe_paper,himoe,late_fusion,bilstm,tacoformer,ianet --rates 0,0.1,0.2,0.3,0.4 --seeds 0,1,2 --impl fast --jobs 2 --out "$OUT/robustness"
# Asynchrony benchmark: every model with 0-6 s lags (and random per-subject lags) on gsr and ppg,
# plus the delays the lag aligner learned (8 epochs, like the measurements that motivated it)
step asynchrony   himoe-fast asynchrony --subjects 4 --epochs 8 --protocol holdout --seeds 0,1,2 --lags 0,1,2,4,6,random --lagged gsr,ppg --impl fast --jobs 2 --out "$OUT/asynchrony"
