# Quick start: `make run` (the main job) and `make test` (the whole suite).
# Both install missing Debian packages and build first.
PRESET ?= release
BUILD  := build/$(PRESET)
KVQ    := $(BUILD)/kvq
MODEL  ?= Qwen/Qwen2.5-0.5B
OUT    ?= runs/latest
JOBS   ?= $(shell nproc)

.PHONY: all setup configure build test test-arm64 run bench asan fuzz ci format format-check tidy clean

all: build

setup:
	@scripts/setup.sh

# WERROR=ON (CI's setting) makes every compiler warning an error.
configure: setup
	@cmake --preset $(PRESET) $(if $(WERROR),-DKVQ_WERROR=$(WERROR)) >/dev/null

build: configure
	@cmake --build --preset $(PRESET) -j $(JOBS)

test: build
	@ctest --preset $(PRESET) -j $(JOBS)

run: build
	$(KVQ) run --model $(MODEL) --out $(OUT)

bench: build
	@for b in $(BUILD)/bench/bench_*; do echo "== $$b"; $$b; done

asan:
	@$(MAKE) --no-print-directory test PRESET=asan

# The kernel tests cross-built for aarch64 (Debian's g++-aarch64-linux-gnu and
# arm64 packages, installed when missing) and run under qemu-user on every
# SIMD target qemu's `-cpu max` offers (SVE2, SVE, NEON, scalar), with
# 512-bit SVE vectors (qemu's default) and then 128-bit ones (SVE2_128).
test-arm64: setup
	@JOBS=$(JOBS) scripts/test-arm64.sh

# Every libFuzzer target for FUZZ_SECONDS (default 60) each, under ASan + UBSan.
fuzz: setup
	@scripts/fuzz.sh

# What CI runs: the suite, the suite under sanitizers, the bounded fuzz jobs.
ci: test
	@scripts/ci-extra.sh

format:
	@git ls-files '*.cpp' '*.h' | xargs clang-format -i

format-check:
	@git ls-files '*.cpp' '*.h' | xargs clang-format --dry-run --Werror

# clang-tidy with the checked-in profile (.clang-tidy: bugprone, performance)
# over the library and the CLI; any finding fails.
tidy: setup
	@cmake --preset tidy >/dev/null
	@run-clang-tidy -quiet -p build/tidy -j $(JOBS) '$(CURDIR)/(src|tools)/' >build/tidy/tidy.log 2>&1 \
	  || { sed 's/\x1b\[[0-9;]*m//g' build/tidy/tidy.log | grep -E 'warning:|error:' | sort -u; exit 1; }

clean:
	rm -rf build
