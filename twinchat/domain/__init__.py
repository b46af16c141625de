"""Plain-Python core of twinchat: it imports no web framework, vector store, LLM SDK or torch."""
