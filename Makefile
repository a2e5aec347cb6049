# The two commands: `make demo` and `make test`. Both install what is missing (Debian packages),
# build, start the servers they need on free 127.0.0.1 ports, and stop them afterwards.
# `make package`: the Debian package libtempest-dev in build/; `make docs`: the API reference in
# build/docs/html.
.PHONY: test package chaos chaos-each demo demo-smoke demo-cluster demo-smoke-cluster demo-sentinel demo-smoke-sentinel bench bench-cluster bench-near bench-http bench-client bench-cache docs format format-check build clean

test:
	@bash scripts/test.sh

package:
	@bash scripts/package.sh

chaos:
	@bash scripts/chaos.sh

chaos-each:
	@EACH=1 DURATION=$${DURATION:-20s} bash scripts/chaos.sh

demo:
	@bash scripts/demo.sh

demo-smoke:
	@bash scripts/demo.sh --smoke

demo-cluster:
	@CLUSTER=1 bash scripts/demo.sh

demo-smoke-cluster:
	@CLUSTER=1 bash scripts/demo.sh --smoke

demo-sentinel:
	@SENTINEL=1 bash scripts/demo.sh

demo-smoke-sentinel:
	@SENTINEL=1 bash scripts/demo.sh --smoke

bench:
	@bash scripts/bench.sh

bench-cluster:
	@bash scripts/bench-cluster.sh

bench-near:
	@bash scripts/bench-near.sh

bench-http:
	@bash scripts/bench-http.sh

bench-cache:
	@bash scripts/bench-cache.sh

bench-client:
	@bash scripts/bench-client.sh

build:
	@bash -c 'source scripts/lib.sh && ensure_packages && configure_build build'

docs:
	@bash scripts/docs.sh

format:
	@bash scripts/format.sh

format-check:
	@bash scripts/format.sh --check

clean:
	rm -rf build build-asan build-fuzz build-release
