"""`serve`: the project's workflows over HTTP (AgentOS's app and the few routes of our own),
with its limits (`http_limits`), its guards against other sites (`http_guards`) and its API
docs behind the security key (`http_docs`).
"""
