# The README's two commands: `make run` and `make test`. Both set up .venv first.
.PHONY: run test test-slow setup schema-doc

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/featurelens run

test: setup
	@bash scripts/setup-browser.sh
	.venv/bin/python -m pytest -q -n auto --maxprocesses 4

test-slow: setup
	@bash scripts/reference_libs.sh || echo "sparsify/sae_lens reference checks will skip"
	@bash scripts/community_libs.sh || echo "TransformerLens/nnsight backend checks will skip"
	@bash scripts/reference_circuit_tracer.sh || echo "circuit-tracer reference checks will skip"
	.venv/bin/python -m pytest -q -m slow

schema-doc: setup
	.venv/bin/python -m featurelens.core.store.schema_doc > docs/schema.md
