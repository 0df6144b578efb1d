# Agora — the two commands:
#   make up     build everything and start a local marketplace on the embedded default model
#   make test   build everything and run every test (unit, integration, slow, and
#               the fuzz targets over their corpora: ctest label fuzz in build-fuzz)
# Both install what they need first (scripts/setup: Debian packages, the
# pinned llama.cpp source, the Node test clients) and are quick when it is there.

JOBS ?= $(shell nproc)
BUILD_DIR := build

.PHONY: all setup configure build build-fuzz test test-fast test-asan fuzz fuzz-seeds up bench format clean

all: build

setup:
	@scripts/setup

configure: setup
	@[ -f $(BUILD_DIR)/build.ninja ] || cmake --preset default

build: configure
	@cmake --build $(BUILD_DIR) -j$(JOBS)

test: build build-fuzz
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS)
	@ctest --test-dir $(FUZZ_DIR) --output-on-failure -j$(JOBS) -L fuzz

# The fuzz tree (tests/fuzz): clang, libFuzzer, ASan + UBSan, no llama.cpp.
FUZZ_DIR := build-fuzz
build-fuzz: setup
	@[ -f $(FUZZ_DIR)/build.ninja ] || cmake --preset fuzz >/dev/null
	@cmake --build $(FUZZ_DIR) -j$(JOBS)

# Every fuzz target for FUZZ_SECONDS (default 60) each, in turn; exits
# non-zero when anything was found (build-fuzz/findings/). FUZZ_TARGETS
# picks some, e.g. make fuzz FUZZ_TARGETS="http_request chat_request".
fuzz: setup
	@scripts/fuzz $(FUZZ_TARGETS)

# Rewrites the seeds that need keys (signed, sealed) and tests/fuzz/keys.
fuzz-seeds: build-fuzz
	@$(FUZZ_DIR)/tests/fuzz/agora-fuzz-seeds tests/fuzz/corpus

# The unit tests under AddressSanitizer (leaks included) and UBSan, which
# stops at the first report (the debug preset, build-debug/).
test-asan: setup
	@[ -f build-debug/build.ninja ] || cmake --preset debug >/dev/null
	@cmake --build build-debug -j$(JOBS)
	@UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --test-dir build-debug --output-on-failure -j$(JOBS) -L unit

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
	rm -rf $(BUILD_DIR) $(FUZZ_DIR)
