"""The model zoo: registry, backbones, necks, heads and ops (filled in by the model-zoo issues)."""
