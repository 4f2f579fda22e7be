# The two commands of the README: `make demo` (run the stack with a simulated
# camera) and `make test` (the default test run, also what CI runs).
.PHONY: setup test test-slow demo train-cpu bench lint

setup:
	scripts/setup.sh

test: setup
	.venv/bin/python -m pytest -q

test-slow: setup
	.venv/bin/python -m pytest -q -m slow

demo: setup
	.venv/bin/python -m vialguard_stack.demo

train-cpu: setup
	.venv/bin/python -m trainer.cli all --profile cpu --out model_repository

bench: setup
	.venv/bin/python -m benchmarks.run_all
