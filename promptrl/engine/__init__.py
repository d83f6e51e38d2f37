"""The call path behind `LanguageModel`: transports (lean OpenAI-compatible HTTP, litellm, the
embedded llama.cpp model), structured-output modes, retries, adaptive concurrency and prices.

Imports go one way: `language_model` -> `engine`; nothing in here imports `language_model`.
"""
