# The commands a newcomer runs: `make run` and `make test`. Both install what is missing.
BUILD ?= build
DATA ?= data
PORT ?= 8080
JOBS ?= $(shell nproc)

.PHONY: deps build run test bench bench-http format clean

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@scripts/web-build.sh

run: build
	@scripts/run.sh $(BUILD) $(DATA) $(PORT)

test: build
	@scripts/test.sh $(BUILD)

bench: build
	@scripts/bench.sh $(BUILD)

bench-http: build
	@scripts/install-deps.sh --bench
	@bench/http/run.sh $(BUILD)

format:
	@find src tests bench -name '*.h' -o -name '*.cc' | xargs clang-format -i

clean:
	@rm -rf $(BUILD)
