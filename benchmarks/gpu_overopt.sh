#!/usr/bin/env bash
# Over-optimisation at GPU scale, as run on a lent H200 (one call, about 6 minutes): DDPO with
# benchmarks/controls.py's --gpu settings on each synthetic proxy, raw and TextNorm (temperature 0.3,
# chapter 03's), 3 seeds each, twelve runs at once on one GPU, gold tracked every 8 rounds.
#   bash benchmarks/gpu_overopt.sh OUT_DIR
#   DEVICE=cpu MINUTES=0.05 EVAL=1 EXTRA="steps=1 samples_per_prompt=4 batch_size=32 sample_steps=5" bash benchmarks/gpu_overopt.sh /tmp/x  # CPU test
set -u
out=$1; mkdir -p "$out"; dev=${DEVICE:-cuda}; min=${MINUTES:-4.0}; extra=${EXTRA:-}
if [ -d wheels ] && ! python3 -c "import diffusers" 2>/dev/null; then pip install --quiet --no-index --no-deps --target .site wheels/*.whl; export PYTHONPATH=$PWD/.site:$PWD; fi
export PYTHONPATH=${PYTHONPATH:-$PWD}; py=${PYTHON:-python3}
for r in raw:data/synth/proxy_preference textnorm:data/synth/proxy_preference raw:data/synth/proxy_contrastive textnorm:data/synth/proxy_contrastive; do
  n=$(echo $r | tr ':/' '__')
  $py benchmarks/controls.py --gpu --device $dev --workers 3 --minutes $min --eval-samples ${EVAL:-32} --methods ddpo --set reward=\"$r\" temperature=0.3 eval_every=8 $extra --out $out/runs/$n > $out/$n.log 2>&1 &
done
wait
mkdir -p $out/sum; for d in $out/runs/*; do cp $d/summary.json $out/sum/$(basename $d).json; done
cat $out/*.log
