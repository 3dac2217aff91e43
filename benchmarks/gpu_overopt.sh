#!/usr/bin/env bash
# Over-optimisation at GPU scale (one call, about 6 minutes on an H200): DDPO with
# benchmarks/controls.py's --gpu settings on each synthetic proxy, raw and TextNorm, 3 seeds each,
# twelve runs at once on one GPU, gold tracked every 8 rounds. Each reward's spec and temperature come
# from the grid (textnorm.experiments.overopt.CPU_GRID, the one settings source; an earlier version of
# this script used temperature 0.3 for every TextNorm reward).
#   bash benchmarks/gpu_overopt.sh OUT_DIR
#   DEVICE=cpu MINUTES=0.05 EVAL=1 EXTRA="steps=1 samples_per_prompt=4 batch_size=32 sample_steps=5" bash benchmarks/gpu_overopt.sh /tmp/x  # CPU test
set -u
out=$1; mkdir -p "$out"; dev=${DEVICE:-cuda}; min=${MINUTES:-4.0}; extra=${EXTRA:-}
if [ -d wheels ] && ! python3 -c "import diffusers" 2>/dev/null; then pip install --quiet --no-index --no-deps --target .site wheels/*.whl; export PYTHONPATH=$PWD/.site:$PWD; fi
export PYTHONPATH=${PYTHONPATH:-$PWD}; py=${PYTHON:-python3}
grid_rewards='from textnorm.experiments.overopt import CPU_GRID as G
for name in ("preference", "TextNorm(preference)", "contrastive", "TextNorm(contrastive)"):
    print(G["rewards"][name]["spec"], G["rewards"][name].get("temperature", 1.0))'
while read -r r temp; do
  n=$(echo $r | tr ':/' '__')
  $py benchmarks/controls.py --gpu --device $dev --workers 3 --minutes $min --eval-samples ${EVAL:-32} --methods ddpo --set reward=\"$r\" temperature=$temp eval_every=8 $extra --out $out/runs/$n > $out/$n.log 2>&1 &
done < <($py -c "$grid_rewards")
wait
mkdir -p $out/sum; for d in $out/runs/*; do cp $d/summary.json $out/sum/$(basename $d).json; done
cat $out/*.log
