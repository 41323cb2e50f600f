# Granary developer entry points. Thin wrappers: the work lives in the npm tools and scripts/.
# `make` alone lists the targets.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# --no: never download a tool on the fly; everything comes from `npm ci` (works offline).
NPX := npx --no --

.PHONY: help setup generate generate-check lint typecheck build test run clean bench bench-smoke bench-wan bench-wan-smoke chaos chaos-smoke

help: ## List the targets
	@echo "Granary — make targets:"
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z-]*:.*## / { printf "  %-15s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

setup: ## Install the pinned dependencies (npm ci)
	npm ci

generate: ## Regenerate src/gen from proto/ (buf generate)
	$(NPX) buf generate

generate-check: ## Regenerate and fail if src/gen differs from what is committed
	bash scripts/generate-check.sh

lint: ## buf lint + buf breaking vs main, type-check, eslint, layer/cycle check
	$(NPX) buf lint
	bash scripts/buf-breaking.sh
	$(MAKE) --no-print-directory typecheck
	$(NPX) eslint .
	node scripts/check-imports.mjs

typecheck: ## Type-check src, tests and scripts (tsc --noEmit)
	$(NPX) tsc -p . --noEmit

build: ## Compile src/ to dist/ (tests and bin/granary.js run the built code)
	$(NPX) tsc -p tsconfig.build.json

test: build typecheck ## Build, type-check, then run every test (vitest run)
	$(NPX) vitest run

run: build ## Build, then start a local dev mesh (granary dev)
	node bin/granary.js dev

clean: ## Remove build output and generated interop code
	rm -rf dist interop/python/gen

# bench / bench-smoke run the loopback scenarios, then the WAN lab (which, without root, says
# so and passes); both always run, and the target fails if either did.
bench: ## Full benchmark (~40-60 min; ends with one table of every goal, goals.md; the first run also seeds the 1M-artifact rejoin pair once, ~10-30 min, 6.8 GB in bench/.cache): loopback A-C, E, then the WAN lab as root; bench/results/<time>*/
	$(NPX) tsc -p tsconfig.bench.json
	since=$$(date +%s); status=0; node dist-bench/bench/main.js || status=$$?; node dist-bench/bench/wan/main.js || status=$$?; node dist-bench/bench/goals.js --since $$since || status=$$?; exit $$status

bench-smoke: ## Every benchmark scenario, loopback and WAN, at a tiny size (< 3 min); fails if a figure is missing
	$(NPX) tsc -p tsconfig.bench.json
	since=$$(date +%s); status=0; node dist-bench/bench/main.js --smoke || status=$$?; node dist-bench/bench/wan/main.js --smoke || status=$$?; node dist-bench/bench/goals.js --since $$since --smoke || status=$$?; exit $$status

bench-wan: ## WAN lab alone (as root, ~20 min): namespaces, delay line, tbf, loss; figures vs iperf3/rsync/serial/bare; WAN_* env
	$(NPX) tsc -p tsconfig.bench.json
	node dist-bench/bench/wan/main.js

bench-wan-smoke: ## WAN lab alone at a tiny size (~1.5 min as root; says why and passes when not root)
	$(NPX) tsc -p tsconfig.bench.json
	node dist-bench/bench/wan/main.js --smoke

chaos: build ## Reliability suite at full size (long; as root); CHAOS_SEED=<seed> replays, CHAOS_ONLY=<scenario> runs one
	node chaos/run.mjs

chaos-smoke: build ## Every reliability scenario at a small size (<= 10 min, in CI); CHAOS_SEED=<seed> replays
	node chaos/run.mjs --smoke
