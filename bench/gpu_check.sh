#!/usr/bin/env bash
# First check of the fast path on a GPU machine, sized to fit 10 minutes on a cold machine (empty
# Triton cache, extension not built). Each step has its own time budget; one JSON at the end.
#
#   bash bench/gpu_check.sh [DIR]           # results in DIR, else $OUT, else ./gpu_results
#
# Steps (budget in seconds, overridable by the environment variable named):
#   0. env          driver, GPU, torch/triton/CUDA versions and the ptxas Triton uses       (-)
#   1. warm         the self-check probe + fp32/bf16 fwd+bwd of the DEAP preset with the fixed
#                   kernel configs: fills Triton's cache for the steps below                 WARM_BUDGET=120
#   2. parity_tests parity tests without the interpreter (fixed configs: no autotune sweep)  TESTS_BUDGET=120
#   3. parity_fp32 / parity_bf16   `himoe-fast parity --preset deap` at fp32 and bf16        PARITY_BUDGET=45 each
#   4. bench        `himoe-fast bench --json` (fixed configs; autotuning is a later, longer run) BENCH_BUDGET=60
#   5. ntxent_cuda  the NT-Xent extension's CUDA tests (builds the CUDA kernels with nvcc)   NTXENT_BUDGET=100
#   6. train        a 2-epoch `himoe-fast train --gpus 1` (default --impl auto)              TRAIN_BUDGET=90
# Output: DIR/gpu_check.json = {"ok", "env", "steps": [{"name", "rc", "seconds", "budget", "tail"}],
#         "bench": <bench --json>, "parity": [...], "train_metrics": {...}} plus one log per step.
# Exit status: 0 when every step passed, 1 otherwise, 2 without a CUDA device.
#
# Triton 3.9 compiles sm_90 code with its bundled ptxas (CUDA 13), whose cubins need a CUDA 13
# driver (>= 580). With an older driver, point Triton at the ptxas of a CUDA toolkit the driver
# supports:   export TRITON_PTXAS_PATH=/usr/local/cuda-12.8/bin/ptxas   (step 0 prints both).
set -uo pipefail

cd "$(dirname "$0")/.."
DIR="${1:-${OUT:-./gpu_results}}"
mkdir -p "$DIR"
unset TRITON_INTERPRET                      # real kernels on the GPU
PY="${PYTHON:-python}"
STEPS_FILE="$DIR/steps.tsv"
: > "$STEPS_FILE"
export HIMOE_FAST_CACHE="${HIMOE_FAST_CACHE:-$DIR/cache}"

if [ "${GPU_CHECK_ALLOW_CPU:-0}" != "1" ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible; nothing to check" >&2
    exit 2
fi

# run_step NAME BUDGET CMD...: CMD under a timeout, output to the terminal and DIR/NAME.log;
# records "NAME<TAB>rc<TAB>seconds<TAB>budget" in $STEPS_FILE.
run_step() {
    local name="$1" limit="$2"
    shift 2
    echo "=== $name (budget ${limit} s): $*"
    local t0=$SECONDS
    timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee "$DIR/$name.log"
    local rc=$?                               # pipefail: the command's status, not tee's
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$limit" >> "$STEPS_FILE"
    echo "=== $name: rc=$rc ($((SECONDS - t0)) s of ${limit})"
}

# 0. environment: the driver and the ptxas Triton will use
"$PY" - > "$DIR/env.json" <<'EOF'
import json, os, shutil, subprocess, torch, triton
env = {"torch": torch.__version__, "triton": triton.__version__, "torch_cuda": torch.version.cuda}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    env.update(gpu=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count)
    env["driver"] = str(torch._C._cuda_getDriverVersion())
if shutil.which("nvidia-smi"):
    r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                       capture_output=True, text=True)
    env["nvidia_smi"] = r.stdout.strip()
try:
    from triton.backends.nvidia.compiler import get_ptxas
    cap = int(env.get("capability", "9.0").replace(".", ""))
    tool = get_ptxas(cap)
    env["ptxas"] = tool.path
    env["ptxas_version"] = subprocess.run([tool.path, "--version"], capture_output=True,
                                          text=True).stdout.strip().splitlines()[-1]
except Exception as e:  # noqa: BLE001
    env["ptxas"] = f"unknown ({type(e).__name__}: {e})"
env["TRITON_PTXAS_PATH"] = os.environ.get("TRITON_PTXAS_PATH")
print(json.dumps(env))
EOF
"$PY" -c "import json,sys; e=json.load(open(sys.argv[1])); print('gpu_check: GPU', e.get('gpu'), '| driver', e.get('driver'), '|', e.get('nvidia_smi')); print('gpu_check: ptxas', e.get('ptxas'), '|', e.get('ptxas_version'), '| TRITON_PTXAS_PATH =', e.get('TRITON_PTXAS_PATH')); print('gpu_check: a cubin that fails to load (CUDA_ERROR_UNSUPPORTED_PTX_VERSION) means the driver is older than this ptxas: set TRITON_PTXAS_PATH to a matching ptxas')" "$DIR/env.json"

# 1. warm the Triton cache with the fixed configs (also runs and caches the --impl auto self-check)
run_step warm "${WARM_BUDGET:-120}" "$PY" - <<'EOF'
import time, torch
from himoe_fast import HiMoE, HiMoEConfig
from himoe_fast.fast import to_fast
from himoe_fast.fast.parity import random_batch
from himoe_fast.fast.selfcheck import self_check
from himoe_fast.kernels.common import fixed_configs
cfg = HiMoEConfig.deap()
t0 = time.perf_counter()
print("self-check:", self_check(cfg, "cuda"), flush=True)
for router in ("dot", "cosine", "diff"):
    c = cfg.replace(router=router)
    for dtype in (torch.float32, torch.bfloat16):
        fast = to_fast(HiMoE(c)).cuda().to(dtype)
        inputs, present, labels, mask = random_batch(c, 32, 8, device="cuda", dtype=dtype)
        with fixed_configs():
            out = fast(inputs, present)
            fast.loss(out, labels, mask).backward()
        torch.cuda.synchronize()
        print(f"warm: {router} {dtype} done at {time.perf_counter() - t0:.1f} s", flush=True)
EOF

# 2. parity tests on the GPU with the fixed configs (each odd test shape would otherwise autotune)
run_step parity_tests "${TESTS_BUDGET:-120}" env HIMOE_FAST_AUTOTUNE=0 "$PY" -m pytest -q -x -p no:cacheprovider \
    tests/test_fast_bank.py tests/test_fast_router.py tests/test_fast_model.py tests/test_fast_autocast.py \
    --junitxml="$DIR/parity_tests.xml"

# 3. the parity CLI at the DEAP preset, fp32 (DESIGN.md tolerances) and bf16
for dt in fp32 bf16; do
    run_step "parity_$dt" "${PARITY_BUDGET:-45}" env HIMOE_FAST_AUTOTUNE=0 "$PY" -m himoe_fast.cli.app parity \
        --preset deap --dtype "$dt" --backend auto -B 4 -T 8 --json "$DIR/parity_$dt.json"
done

# 4. the per-component bench with the fixed configs (an autotuned bench is a longer, later run)
run_step bench "${BENCH_BUDGET:-60}" env HIMOE_FAST_AUTOTUNE=0 "$PY" -m himoe_fast.cli.app bench --preset deap \
    -B 32 -T 8 --warmup 3 --repeats 10 --json "$DIR/bench.json"

# 5. the NT-Xent extension's CUDA kernels (built here with nvcc) against the torch reference
run_step ntxent_cuda "${NTXENT_BUDGET:-100}" "$PY" -m pytest -q -x -p no:cacheprovider tests/test_ntxent_ext.py -k cuda

# 6. a short training run on one GPU with the default --impl auto
run_step train "${TRAIN_BUDGET:-90}" "$PY" -m himoe_fast.cli.app train --gpus 1 --epochs 2 --no-progress \
    --out "$DIR/train_run"

# 7. one results file
"$PY" - "$DIR" <<'EOF'
import json, os, sys
d = sys.argv[1]
def load(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
def tail(name, n=40):
    try:
        with open(os.path.join(d, name + ".log"), errors="replace") as fh:
            return "".join(fh.readlines()[-n:])
    except OSError:
        return ""
steps = []
with open(os.path.join(d, "steps.tsv")) as fh:
    for line in fh:
        name, rc, sec, budget = line.rstrip("\n").split("\t")
        steps.append({"name": name, "rc": int(rc), "seconds": int(sec), "budget": int(budget),
                      "timed_out": int(rc) in (124, 137), "tail": tail(name)})
parity = []
for dt in ("fp32", "bf16"):
    rep = load(os.path.join(d, f"parity_{dt}.json"))
    if rep is not None:
        parity.append({"dtype": dt, "ok": rep["ok"], "n_checks": len(rep["checks"]),
                       "failures": [c for c in rep["checks"] if not c["ok"]]})
result = {"ok": all(s["rc"] == 0 for s in steps), "env": load(os.path.join(d, "env.json")), "steps": steps,
          "parity": parity, "bench": load(os.path.join(d, "bench.json")),
          "train_metrics": load(os.path.join(d, "train_run", "metrics.json"))}
tmp = os.path.join(d, ".gpu_check.json.tmp")
with open(tmp, "w") as fh:
    json.dump(result, fh, indent=2)
os.replace(tmp, os.path.join(d, "gpu_check.json"))
env = result["env"] or {}
print("\n==================== gpu_check summary ====================")
print(f"GPU {env.get('gpu')}  driver {env.get('driver')}  torch {env.get('torch')}  triton {env.get('triton')}")
print(f"ptxas {env.get('ptxas')} ({env.get('ptxas_version')})")
for s in steps:
    state = "PASS" if s["rc"] == 0 else ("TIMEOUT" if s["timed_out"] else "FAIL")
    print(f"  {state:<7} {s['name']:<14} rc={s['rc']:<4} {s['seconds']:>4} s of {s['budget']}")
b = result["bench"]
if b:
    for r in b["rows"]:
        print(f"  {r['name']:<14} ref {r['ref_ms']:8.3f} ms  fast {r['fast_ms']:8.3f} ms  {r['speedup']:5.2f}x")
print(f"results: {os.path.join(d, 'gpu_check.json')}  ->  {'ALL PASS' if result['ok'] else 'FAILURES'}")
sys.exit(0 if result["ok"] else 1)
EOF
