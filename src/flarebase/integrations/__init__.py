"""Integrations with other libraries, each an optional extra:

- `flarebase.integrations.langchain` (`pip install 'flarebase[langchain]'`): a
  LangChain `VectorStore` on a Vectorize binding, and flarebase's embedders as
  LangChain `Embeddings`.
"""
