# hookline — the commands a developer and an operator need.
# `make help` lists them.

CARGO ?= cargo
export HOOKLINE_SHOPIFY_SECRETS ?= hookline_dev_secret

.PHONY: help services run demo test lint fmt bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

services: ## start RabbitMQ (+ management API), PostgreSQL and Redis if they are down
	@bash scripts/services.sh

run: services ## run the ingestor on localhost defaults (http://127.0.0.1:8080)
	$(CARGO) run -p hookline-ingestor --bin hookline-ingestor

demo: services ## send signed sample webhooks through a real ingestor and show where they landed
	@bash scripts/demo.sh

test: services ## run every test (unit, property and black-box against the local services)
	$(CARGO) test --workspace --all-targets

lint: ## formatting and clippy, as CI wants them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

bench: services ## release build, then ingestor vs raw broker publish-confirm, written to BENCHMARKS.md
	$(CARGO) build --release -p hookline-ingestor -p hookline-worker -p hookline-bench
	./target/release/hookline-bench --out BENCHMARKS.md

clean:
	$(CARGO) clean
