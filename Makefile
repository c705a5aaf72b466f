# postcove — the contract between a person, CI and the code.
# Every target works from a fresh clone on Debian 12 with Go installed;
# `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Pinned tool versions. `make gen` refuses to run with other ones, so that the
# committed generated code is reproducible and `make check-gen` is meaningful.
PROTOC_VERSION             := 3.21.12
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
STATICCHECK_VERSION        := v0.7.0

# Argon2 through libsodium when its header is installed (Debian's
# libsodium-dev, which scripts/install-deps.sh installs): it has AVX2 and
# AVX-512 code where golang.org/x/crypto has SSE4.1 only, and a login is
# mostly its hash (services/auth/internal/password/argon2_libsodium.go).
# Without it, or with GOTAGS= , auth is pure Go, as in the Docker images.
GOTAGS  ?= $(shell test -e /usr/include/sodium.h && echo libsodium)

BIN     := $(CURDIR)/.bin
MODULES  = $(shell go list -m -f '{{.Dir}}')
PROTOS  := $(shell find proto -name '*.proto')
DATA    ?= $(CURDIR)/data
# A count, not a duration: with a wall-clock -fuzztime, Go 1.26's fuzz
# coordinator can report a spurious "context deadline exceeded" failure at
# the deadline (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 3000x

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## build every binary into ./bin
	@mkdir -p bin
	go build -tags '$(GOTAGS)' -o bin/ ./services/auth/cmd/auth ./services/mailbox/cmd/mailbox ./services/mailctl/cmd/mailctl ./services/mta/cmd/mta

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

$(BIN)/staticcheck:
	GOBIN=$(BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: gen
gen: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## regenerate the protobuf Go code
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
	@protoc --version | grep -qx 'libprotoc $(PROTOC_VERSION)' || { echo "need protoc $(PROTOC_VERSION) (Debian 12 protobuf-compiler), have: $$(protoc --version)" >&2; exit 1; }
	cd proto && protoc -I . \
		--plugin=protoc-gen-go=$(BIN)/protoc-gen-go --go_out=. --go_opt=paths=source_relative \
		--plugin=protoc-gen-go-grpc=$(BIN)/protoc-gen-go-grpc --go-grpc_out=. --go-grpc_opt=paths=source_relative \
		$(PROTOS:proto/%=%)

.PHONY: check-gen
check-gen: gen ## fail when the committed generated code is stale
	@git diff --exit-code -- proto || { echo "generated code is stale: run 'make gen' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- proto)" || { git status --porcelain -- proto; echo "untracked generated files: run 'make gen' and commit" >&2; exit 1; }

.PHONY: fmt
fmt: ## gofmt every module
	gofmt -s -w $(MODULES)

.PHONY: lint
lint: $(BIN)/staticcheck ## go vet + staticcheck + gofmt check on every module
	@out=$$(gofmt -s -l $(MODULES)); test -z "$$out" || { echo "not gofmt'ed:"; echo "$$out"; exit 1; }
	@for m in $(MODULES); do (cd $$m && go vet ./... && $(BIN)/staticcheck ./...) || exit 1; done
	@# The GOTAGS files are auth's only (argon2 through libsodium).
	@test -z '$(GOTAGS)' || (cd services/auth && go vet -tags '$(GOTAGS)' ./... && $(BIN)/staticcheck -tags '$(GOTAGS)' ./...)
	@# Docker builds each module alone: its replace lines and go.sum must suffice.
	@for m in $(MODULES); do (cd $$m && GOWORK=off go build ./...) || { echo "$$m does not build with GOWORK=off: fix its go.mod replace lines / go.sum" >&2; exit 1; }; done

.PHONY: test
test: ## run every module's tests with -race (MariaDB tests need POSTCOVE_TEST_MYSQL_DSN; see README)
	@for m in $(MODULES); do echo "== $$m"; (cd $$m && go test -tags '$(GOTAGS)' -race -shuffle=on -count=1 ./...) || exit 1; done
	@# The forked dependencies are outside the workspace: their own tests,
	@# upstream's and those of postcove's changes (third_party/*/POSTCOVE.md).
	@for m in third_party/*/; do echo "== $$m"; (cd $$m && GOWORK=off go test -race -count=1 ./...) || exit 1; done

.PHONY: fuzz
fuzz: ## run every fuzz target for $(FUZZTIME)
	@for m in $(MODULES); do \
		for pkg in $$(cd $$m && go list ./...); do \
			dir=$$(cd $$m && go list -f '{{.Dir}}' $$pkg); \
			for f in $$(grep -hoE '^func Fuzz[A-Za-z0-9_]+' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
				echo "== $$pkg $$f"; (cd $$m && go test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg) || exit 1; \
			done; \
		done; \
	done

# The Debian packages postcove is measured against (dovecot configured by
# scripts/dovecot-bench.sh, postfix by scripts/postfix-bench.sh), and extra
# flags for services/bench, given to each of its timed commands (e.g.
# BENCH_FLAGS='--duration 10s --keep'); bench smtp counts messages instead,
# its flags are BENCH_SMTP_FLAGS (e.g. '--messages 500,200 --keep'). It
# runs postfix's master, so it needs root. One command alone, e.g. IMAP on
# smaller mailboxes:
#   go run ./services/bench/cmd/bench imap --auth-bin bin/auth --mailbox-bin bin/mailbox --messages 2000 --select-messages 20000
BENCH_DOVECOT    ?= /usr/sbin/dovecot
BENCH_POSTFIX    ?= /usr/sbin/postfix
BENCH_FLAGS      ?=
BENCH_SMTP_FLAGS ?=

.PHONY: bench
# Each benchmark removes its work directory, tens of thousands of files, at
# the end. ext4 without a journal (as on CI's machines) then makes every
# file creation in those block groups skip each inode freed in the last
# minute (five while the inode table is not yet written back), and the
# next benchmark's directories tend to land there: its servers' deliveries
# would pay for the last run's cleanup. sync, then a minute, lets them go.
BENCH_PAUSE = sync; sleep 65

bench: build ## run the benchmarks, then postcove vs dovecot (auth, LMTP, IMAP) and vs postfix+dovecot (SMTP) side by side (needs dovecot-core, -lmtpd, -imapd, postfix, root; MariaDB too when POSTCOVE_TEST_MYSQL_DSN is set)
	@test -x $(BENCH_DOVECOT) || { echo "dovecot not installed: apt-get install dovecot-core dovecot-lmtpd dovecot-imapd (make bench compares postcove with it)" >&2; exit 1; }
	@test -x $(BENCH_POSTFIX) || { echo "postfix not installed: scripts/install-deps.sh installs it without configuring a system MTA (make bench compares postcove's mta with it)" >&2; exit 1; }
	cd services/auth && go test -run='^$$' -bench=. -benchtime=3s ./internal/server/
	go run ./services/bench/cmd/bench auth --auth-bin bin/auth --dovecot $(BENCH_DOVECOT) --scripts-dir scripts \
		$${POSTCOVE_TEST_MYSQL_DSN:+--mysql-dsn "$$POSTCOVE_TEST_MYSQL_DSN"} $(BENCH_FLAGS)
	$(BENCH_PAUSE)
	go run ./services/bench/cmd/bench lmtp --auth-bin bin/auth --mailbox-bin bin/mailbox --dovecot $(BENCH_DOVECOT) --scripts-dir scripts $(BENCH_FLAGS)
	$(BENCH_PAUSE)
	go run ./services/bench/cmd/bench imap --auth-bin bin/auth --mailbox-bin bin/mailbox --dovecot $(BENCH_DOVECOT) --scripts-dir scripts $(BENCH_FLAGS)
	$(BENCH_PAUSE)
	go run ./services/bench/cmd/bench smtp --auth-bin bin/auth --mailbox-bin bin/mailbox --mta-bin bin/mta --dovecot $(BENCH_DOVECOT) --postfix $(BENCH_POSTFIX) --scripts-dir scripts $(BENCH_SMTP_FLAGS)

.PHONY: run
run: build ## run the system locally on the embedded default (SQLite under ./data)
	scripts/run-local.sh "$(DATA)"

# The same flow against `make run` (no Docker): start, create a user, send
# on 25 and 587, read over IMAPS and POP3S, stop. Uses the local ports.
.PHONY: e2e
e2e: build ## end to end against make run (no Docker): mail in on 25, 587 and 465, read over IMAPS and POP3S
	scripts/e2e-local.sh

# The docker compose end-to-end test (issue 5). Needs root and a Docker
# engine; without a registry it builds the base images from Debian packages
# (scripts/offline-images.sh). It says so and fails when no engine answers.
.PHONY: e2e-compose
e2e-compose: ## docker compose end to end: build, ordered start, mail in/out, restarts, scale (root + Docker)
	scripts/compose-e2e.sh
