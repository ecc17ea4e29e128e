# hookline — the commands a developer and an operator need.
# `make help` lists them.

CARGO ?= cargo
# A developer's machine: the development secret (and the sandbox's sevDesk token) are allowed.
export HOOKLINE_DEV ?= 1
export HOOKLINE_SHOPIFY_SECRETS ?= hookline_dev_secret

.PHONY: help services run demo test lint fmt config-docs bench chaos clean dlq-list dlq-show dlq-replay dlq-archive dlq-purge

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

services: ## start RabbitMQ (+ management API), PostgreSQL and Redis if they are down
	@bash scripts/services.sh

run: services ## run sandbox, worker and ingestor on localhost defaults until Ctrl-C
	@bash scripts/run.sh

demo: services ## send signed webhooks through ingestor, broker, worker, PostgreSQL and the ERP sandbox
	@bash scripts/demo.sh

test: services ## run every test (unit, property, doc and black-box against the local services)
	@bash scripts/test.sh

lint: ## formatting, clippy and cargo-deny (licenses, bans, sources), as CI wants them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if $(CARGO) deny --version >/dev/null 2>&1; then \
	  $(CARGO) deny --offline check licenses bans sources; \
	else \
	  echo "cargo-deny not installed (cargo install cargo-deny --locked): licenses, bans and sources not checked"; \
	fi

fmt: ## format the code
	$(CARGO) fmt --all

config-docs: ## regenerate docs/configuration.md from the settings' declarations
	HOOKLINE_WRITE_CONFIG_DOCS=1 $(CARGO) test -q -p hookline-worker --test api config_docs

chaos: services ## the long chaos run: real binaries, one failure per scenario, checked against ground truth (run it alone: it restarts RabbitMQ and PostgreSQL)
	$(CARGO) build -p hookline-ingestor -p hookline-worker -p hookline-chaos
	./target/debug/hookline-chaos $(if $(ONLY),--only $(ONLY))

bench: services ## release build; orders end to end (zero faults, chaos mix), then ingestor vs raw broker and inventory end to end; writes BENCHMARKS.md
	$(CARGO) build --release -p hookline-ingestor -p hookline-worker -p hookline-bench
	rm -f target/bench-orders.md
	HOOKLINE_E2E_ORDERS=1000 HOOKLINE_E2E_CHAOS=0 HOOKLINE_E2E_REPORT=$(CURDIR)/target/bench-orders.md \
	  $(CARGO) test --release -p hookline-worker --test api orders_end_to_end -- --nocapture
	HOOKLINE_E2E_ORDERS=1000 HOOKLINE_E2E_REPORT=$(CURDIR)/target/bench-orders.md \
	  $(CARGO) test --release -p hookline-worker --test api orders_end_to_end -- --nocapture
	./target/release/hookline-bench --out BENCHMARKS.md

# Dead letters: DOMAIN=inventory|orders|compliance, REASON=retries_exhausted|…, LIMIT=n, EVENT=<event id>.
DLQ_FILTER = $(if $(DOMAIN),--domain $(DOMAIN)) $(if $(REASON),--reason $(REASON)) $(if $(LIMIT),--limit $(LIMIT)) $(if $(EVENT),--event-id $(EVENT))

dlq-list: ## list dead letters (DOMAIN=, REASON=, LIMIT=); nothing is removed
	@$(CARGO) run -q -p hookctl -- dlq list $(DLQ_FILTER)

dlq-show: ## show one dead letter (EVENT=<event id>)
	@$(CARGO) run -q -p hookctl -- dlq show $(EVENT)

dlq-replay: ## replay dead letters to hookline.events (DOMAIN=, REASON=, LIMIT=, EVENT=, DRY_RUN=1)
	@$(CARGO) run -q -p hookctl -- dlq replay $(DLQ_FILTER) $(if $(DRY_RUN),--dry-run)

dlq-archive: ## move dead letters into PostgreSQL's dead_letter_archive (DOMAIN=, REASON=, LIMIT=, EVENT=)
	@$(CARGO) run -q -p hookctl -- dlq archive $(DLQ_FILTER)

dlq-purge: ## delete archived dead letters older than OLDER_THAN (default 90d)
	@$(CARGO) run -q -p hookctl -- dlq purge --older-than $(or $(OLDER_THAN),90d)

clean:
	$(CARGO) clean
