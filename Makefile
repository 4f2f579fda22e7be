# The two commands of the README: `make demo` (run the stack with a simulated
# camera) and `make test` (the default test run, also what CI runs).
# Extra demo arguments: make demo ARGS="--good 5 --defective 5 --pace-ms 500"
.PHONY: setup test test-slow demo train-cpu elpv bench bench-inference bench-training bench-stack bench-ort \
        bench-gpu-prepare bench-gpu \
        proto sim-kit verify-audit campaign

PY := .venv/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

setup:
	scripts/setup.sh

test: setup
	$(PY) -m pytest -q

# Long tests kept out of the default run: whole-chain training, real-data check on
# elpv (installs requirements/elpv.txt), multi-device strategy, stack benchmark.
test-slow: setup
	$(PY) -m pip install --quiet -r requirements/elpv.txt
	$(PY) -m pytest -q -m slow

demo: setup
	$(PY) -m vialguard_stack.demo $(ARGS)

# Reproduces the committed cpu version: simulate -> ingest -> train -> calibrate
# -> evaluate on a held-out kit -> export a new version (about 55 min on 2 cores, measured),
# then the outline of R1 folded into its score, validated on the same held-out kit (3 min).
TRAIN_CPU_WORKDIR ?= runs/train-cpu
train-cpu: setup
	$(PY) -m trainer.cli all --profile cpu --out model_repository --workdir $(TRAIN_CPU_WORKDIR)
	$(PY) -m trainer.cli add-outline --calibration $(TRAIN_CPU_WORKDIR)/patches/calibration \
	    --validate-kit $(TRAIN_CPU_WORKDIR)/data/test --report-dir $(TRAIN_CPU_WORKDIR)/validate-outline

# Real-data check on elpv solar cells with the line's cpu training and local score
# (about 25 min on 2 cores: 16 x 250 training steps, as train-cpu's generator).
elpv: setup
	$(PY) -m pip install --quiet -r requirements/elpv.txt
	$(PY) -m trainer.cli elpv --out runs/elpv

bench: bench-inference bench-training bench-stack

bench-inference: setup
	$(PY) -m benchmarks.inference

bench-training: setup
	$(PY) -m benchmarks.training

bench-ort: setup
	$(PY) -m benchmarks.ort_options --repository model_repository

bench-stack: setup
	$(PY) -m benchmarks.stack --repository model_repository --concurrency 1,2

# The paper profile on a GPU in fp16 (issue 9): convert here (TensorFlow, about 11 GB of RAM),
# then on a GPU host with PyTorch, onnx and onnxruntime: make bench-gpu (no TensorFlow needed).
bench-gpu-prepare: setup
	$(PY) -m benchmarks.gpu_paper prepare --out .gpu/paper

bench-gpu:
	python3 -m pip install --quiet -r requirements/gpu-bench.txt
	python3 -m benchmarks.gpu_paper time --model .gpu/paper --batches 60,1,240 --json .gpu/paper/figures.json

proto: setup
	scripts/gen_proto.sh

sim-kit: setup
	$(PY) -m vialguard.simulator.cli kit --out data/kit --good 10 --defective 10 --runs 10 --seed 1

verify-audit: setup
	$(PY) -m aggregator.audit verify var/audit/verdicts.sqlite3

# Issue 7's fault/fuzz campaign on the local stack (loopback only, about 10 min on 2 cores):
# every fault under 1.5x the measured capacity, then 10,000 fuzzed requests; prints the tables.
# make campaign ARGS="--pace-ms 500" for the line's pace instead.
campaign: setup
	$(PY) -m vialguard_stack.campaign $(ARGS)
