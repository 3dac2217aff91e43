#!/usr/bin/env bash
# The optimisers' gold controls at GPU scale, as run on a lent H100/H200 (one call, about 9 minutes):
# DDPO and RWSFT with benchmarks/controls.py's --gpu settings (3 seeds each), and DDPO at a third of
# the learning rate (3 seeds), nine runs at once on one GPU, each with at most MINUTES of training.
#
#   bash benchmarks/gpu_controls.sh OUT_DIR            # on the GPU machine
#   DEVICE=cpu MINUTES=0.2 EXTRA="steps=2 pool_size=8" EVAL=2 bash benchmarks/gpu_controls.sh /tmp/x   # CPU test
#
# The GPU machines have no diffusers (../shared/FACTS.md): wheels/ (pip download --no-deps
# diffusers==0.42.1 importlib_metadata zipp) is installed into .site first when it is there.
set -euo pipefail
out=${1:?usage: gpu_controls.sh OUT_DIR}
device=${DEVICE:-cuda}
minutes=${MINUTES:-5.5}
eval_samples=${EVAL:-32}
extra=${EXTRA:-}
if [ -d wheels ] && ! python3 -c "import diffusers" 2>/dev/null; then
    pip install --quiet --no-index --no-deps --target .site wheels/*.whl
    export PYTHONPATH=$PWD/.site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
py=${PYTHON:-python3}
"$py" -c "import torch, diffusers, textnorm; print('torch', torch.__version__, 'diffusers', diffusers.__version__, \
'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
# a one-step smoke run first, so a broken setup fails in seconds, not after minutes
"$py" benchmarks/controls.py --device "$device" --workers 1 --seeds 0 --methods ddpo --eval-samples 2 \
    --set steps=1 --out "$out/smoke" > "$out.smoke.log" 2>&1 || true   # exit 1 = the verdict FAIL
grep -q "^done:" "$out.smoke.log" || { cat "$out.smoke.log"; exit 1; }
echo "smoke run passed"
"$py" benchmarks/controls.py --gpu --device "$device" --workers 6 --minutes "$minutes" --eval-samples "$eval_samples" \
    ${extra:+--set $extra} --out "$out/gpu" > "$out/gpu.log" 2>&1 &
a=$!
"$py" benchmarks/controls.py --gpu --device "$device" --workers 3 --minutes "$minutes" --eval-samples "$eval_samples" \
    --methods ddpo --set lr=2e-5 $extra --out "$out/gpu_lr2e-5" > "$out/gpu_lr2e-5.log" 2>&1 &
b=$!
wait $a || true
wait $b || true
cat "$out/gpu.log" "$out/gpu_lr2e-5.log"
