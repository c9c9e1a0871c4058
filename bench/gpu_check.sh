#!/usr/bin/env bash
# GPU check of the fast path: parity tests WITHOUT the Triton interpreter, the parity CLI (fp32 and
# bf16), `himoe-fast bench --json` and the pytest-benchmark suites; one results file.
#
#   bash bench/gpu_check.sh                 # results in $OUT if set, else ./gpu_results
#
# Output: $DIR/gpu_check.json  = {"ok", "gpu", "versions", "steps": [{"name", "rc", "seconds", "tail"}],
#                                 "bench": <himoe-fast bench --json>, "parity_cli": [...]}
# (plus one log per step beside it). Exit status: 0 when every step passed, else 1 (2 without CUDA).
# Steps are bounded by timeouts (seconds, overridable): TESTS_TIMEOUT, PARITY_TIMEOUT, BENCH_TIMEOUT,
# PYBENCH_TIMEOUT. SKIP_PYBENCH=1 leaves out the pytest-benchmark suites.
set -uo pipefail

cd "$(dirname "$0")/.."
DIR="${OUT:-./gpu_results}"
mkdir -p "$DIR"
unset TRITON_INTERPRET                      # real kernels on the GPU
PY="${PYTHON:-python}"
TESTS_TIMEOUT="${TESTS_TIMEOUT:-420}"
PARITY_TIMEOUT="${PARITY_TIMEOUT:-240}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-300}"
PYBENCH_TIMEOUT="${PYBENCH_TIMEOUT:-300}"
STEPS_FILE="$DIR/steps.tsv"
: > "$STEPS_FILE"

# GPU_CHECK_ALLOW_CPU=1: smoke-run this script's plumbing on a CPU machine (tests then use the interpreter)
if [ "${GPU_CHECK_ALLOW_CPU:-0}" != "1" ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible; nothing to check" >&2
    exit 2
fi

# run_step NAME TIMEOUT CMD...: runs CMD with a timeout, output to the terminal and $DIR/NAME.log,
# records "NAME<TAB>rc<TAB>seconds" in $STEPS_FILE.
run_step() {
    local name="$1" limit="$2"
    shift 2
    echo "=== $name: $*"
    local t0=$SECONDS
    timeout --signal=TERM --kill-after=20 "$limit" "$@" 2>&1 | tee "$DIR/$name.log"
    local rc=$?                               # pipefail: the command's status, not tee's
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$STEPS_FILE"
    echo "=== $name: rc=$rc ($((SECONDS - t0)) s)"
}

"$PY" - > "$DIR/env.json" <<'EOF'
import json, torch, triton
print(json.dumps({"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (cpu)",
                  "torch": torch.__version__,
                  "triton": triton.__version__, "cuda": torch.version.cuda}))
EOF

# 1. parity tests on the GPU (no interpreter); one fixed kernel config so that many odd test
#    shapes do not each trigger an autotuning sweep
run_step parity_tests "$TESTS_TIMEOUT" env HIMOE_FAST_AUTOTUNE=0 "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_fast_bank.py tests/test_fast_encoders.py tests/test_fast_model.py tests/test_fast_router.py \
    tests/test_fast_cli.py \
    --junitxml="$DIR/parity_tests.xml"

# 2. the parity CLI at the DEAP preset: fp32 (DESIGN.md tolerances) for every router, bf16 for one
PARITY_JSON=()
for spec in "dot soft fp32" "cosine top1 fp32" "diff uniform fp32" "dot soft bf16"; do
    set -- $spec
    name="parity_cli_${1}_${2}_${3}"
    run_step "$name" "$PARITY_TIMEOUT" "$PY" -m himoe_fast.cli.app parity --preset deap --router "$1" \
        --routing "$2" --dtype "$3" --backend auto -B 4 -T 8 --json "$DIR/$name.json"
    PARITY_JSON+=("$DIR/$name.json")
done

# 3. himoe-fast bench (autotuned kernels): the per-component table + JSON
run_step bench_cli "$BENCH_TIMEOUT" "$PY" -m himoe_fast.cli.app bench --preset deap -B 32 -T 8 \
    --warmup 5 --repeats 20 --json "$DIR/bench.json"

# 4. pytest-benchmark suites of the fast path (reference, torch and triton variants)
BENCH_FILES=()
for f in bench/test_bench_bank.py bench/test_bench_model.py bench/test_bench_router.py bench/test_bench_ntxent.py; do
    [ -f "$f" ] && BENCH_FILES+=("$f")
done
if [ "${SKIP_PYBENCH:-0}" != "1" ] && [ "${#BENCH_FILES[@]}" -gt 0 ]; then
    run_step pytest_bench "$PYBENCH_TIMEOUT" "$PY" -m pytest -q -p no:cacheprovider -s "${BENCH_FILES[@]}" \
        --benchmark-json="$DIR/pytest_bench.json"
fi

# 5. one results file
"$PY" - "$DIR" "${PARITY_JSON[@]}" <<'EOF'
import json, os, sys
d = sys.argv[1]
def load(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
def tail(name, n=60):
    try:
        with open(os.path.join(d, name + ".log"), errors="replace") as fh:
            return "".join(fh.readlines()[-n:])
    except OSError:
        return ""
steps = []
with open(os.path.join(d, "steps.tsv")) as fh:
    for line in fh:
        name, rc, sec = line.rstrip("\n").split("\t")
        steps.append({"name": name, "rc": int(rc), "seconds": int(sec), "tail": tail(name)})
parity = []
for p in sys.argv[2:]:
    rep = load(p)
    if rep is not None:
        bad = [c for c in rep["checks"] if not c["ok"]]
        parity.append({"file": os.path.basename(p), "ok": rep["ok"], "dtype": rep["dtype"],
                       "n_checks": len(rep["checks"]), "failures": bad,
                       "worst": max(rep["checks"], key=lambda c: c["max_abs"] / (c["atol"] + 1e-30))})
env = load(os.path.join(d, "env.json")) or {}
result = {"ok": all(s["rc"] == 0 for s in steps), "gpu": env.get("gpu"), "versions": env,
          "steps": steps, "parity_cli": parity, "bench": load(os.path.join(d, "bench.json"))}
tmp = os.path.join(d, ".gpu_check.json.tmp")
with open(tmp, "w") as fh:
    json.dump(result, fh, indent=2)
os.replace(tmp, os.path.join(d, "gpu_check.json"))

print("\n==================== gpu_check summary ====================")
print(f"GPU: {env.get('gpu')}  torch {env.get('torch')}  triton {env.get('triton')}")
for s in steps:
    print(f"  {'PASS' if s['rc'] == 0 else 'FAIL'}  {s['name']:<28} rc={s['rc']:<4} {s['seconds']:>5} s")
bench = result["bench"]
if bench:
    print(f"bench: torch.mm {bench['gemm_gflops']:.0f} GFLOP/s on {bench['device']}")
    for r in bench["rows"]:
        print(f"  {r['name']:<22} ref {r['ref_ms']:9.3f} ms  fast {r['fast_ms']:9.3f} ms  "
              f"{r['speedup']:6.2f}x  err {r['max_err']:.1e}  peak {r['ref_peak_mb']:.1f} / {r['fast_peak_mb']:.1f} MB")
print(f"results: {os.path.join(d, 'gpu_check.json')}  ->  {'ALL PASS' if result['ok'] else 'FAILURES'}")
sys.exit(0 if result["ok"] else 1)
EOF
