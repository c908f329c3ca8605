"""Shared by the framework tests (imported by module name, like the adapters' helpers)."""

MODEL = "cachesaver/openai/gpt-4o-mini"
