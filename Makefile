.PHONY: setup test lint demo
setup: ; bash scripts/dev.sh setup
test: ; bash scripts/dev.sh test
lint: ; bash scripts/dev.sh lint
demo: ; bash scripts/dev.sh demo
