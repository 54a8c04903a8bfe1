# kasgate — `make run` starts an embedded gateway on a fresh clone; `make test` runs the suite.
.PHONY: run test build lint typecheck openapi bench migrate check clean docker

# Stamp files, not the directories: vitest and tsx write their caches into node_modules/, and a
# directory's time changes with its entries, so `make run` after `make test` rebuilt dist/ for
# nothing. test/ops/makefile.test.ts checks that nothing rebuilds unless a source changed.
INSTALLED := node_modules/.kasgate-installed
BUILT := dist/.kasgate-built

$(INSTALLED): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

$(BUILT): $(INSTALLED) $(shell find src -name '*.ts' 2>/dev/null) $(wildcard src/ui/assets/*) tsconfig.json tsconfig.build.json
	npm run build
	@touch $@

## run: install, build and start the gateway (embedded PGlite + in-process bus unless DATABASE_URL / REDIS_URL are set)
run: $(BUILT)
	node dist/main.js serve

## test: the whole suite, on the local PostgreSQL and Redis (DATABASE_URL / REDIS_URL override)
test: $(INSTALLED)
	npm test

build: $(BUILT)

typecheck: $(INSTALLED)
	npm run typecheck

lint: $(INSTALLED)
	npm run lint

## check: what CI runs after installing: typecheck, lint, tests
check: typecheck lint test

## openapi: rewrite openapi/openapi.json from the route schemas (a test fails when it drifts)
openapi: $(INSTALLED)
	npm run openapi

## bench: every scenario against the floor relay, on the built dist/; ratios on stdout and in bench/results/
bench: $(BUILT)
	BENCH_DIST=1 npm run bench

migrate: $(BUILT)
	node dist/main.js migrate

docker:
	docker build -t kasgate .

clean:
	rm -rf dist coverage bench/results
