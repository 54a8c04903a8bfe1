# kasgate — `make run` starts an embedded gateway on a fresh clone; `make test` runs the suite.
.PHONY: run test build lint typecheck openapi bench migrate check clean docker

node_modules: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch node_modules

dist: node_modules $(shell find src -name '*.ts' 2>/dev/null) $(wildcard src/ui/assets/*) tsconfig.json tsconfig.build.json
	npm run build
	@touch dist

## run: install, build and start the gateway (embedded PGlite + in-process bus unless DATABASE_URL / REDIS_URL are set)
run: dist
	node dist/main.js serve

## test: the whole suite, on the local PostgreSQL and Redis (DATABASE_URL / REDIS_URL override)
test: node_modules
	npm test

build: dist

typecheck: node_modules
	npm run typecheck

lint: node_modules
	npm run lint

## check: what CI runs after installing: typecheck, lint, tests
check: typecheck lint test

## openapi: rewrite openapi/openapi.json from the route schemas (a test fails when it drifts)
openapi: node_modules
	npm run openapi

## bench: every scenario against the floor relay, on the built dist/; ratios on stdout and in bench/results/
bench: dist
	BENCH_DIST=1 npm run bench

migrate: dist
	node dist/main.js migrate

docker:
	docker build -t kasgate .

clean:
	rm -rf dist coverage bench/results
