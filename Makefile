# Agora — the two commands:
#   make up     build everything and start a local marketplace on the embedded default model
#   make test   build everything and run every test (unit, integration, slow)
# Both install what they need first (scripts/setup: Debian packages, the
# pinned llama.cpp source, the Node test clients) and are quick when it is there.

JOBS ?= $(shell nproc)
BUILD_DIR := build

.PHONY: all setup configure build test test-fast up bench format clean

all: build

setup:
	@scripts/setup

configure: setup
	@[ -f $(BUILD_DIR)/build.ninja ] || cmake --preset default

build: configure
	@cmake --build $(BUILD_DIR) -j$(JOBS)

test: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS)

# Unit and integration tests only (skips the bench-1b synthesis).
test-fast: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS) -LE slow

up: build
	@$(BUILD_DIR)/agora up

models/bench-1b.gguf: | build
	@$(BUILD_DIR)/agora model synth --preset bench-1b --out $@

# Every benchmark (bench/run.mjs): rewrites the generated blocks of
# docs/BENCHMARKS.md and the plots in docs/bench/. Takes ~30 minutes; run it
# on a quiet machine. BENCH_ARGS passes options, e.g. BENCH_ARGS="--only gateway".
bench: build models/bench-1b.gguf
	@scripts/setup --bench
	@node bench/run.mjs $(BENCH_ARGS)

format:
	@find src tests bench -name '*.h' -o -name '*.cpp' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
