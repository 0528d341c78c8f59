"""Health checks (the article's "Testing the servers").

``state`` holds the sans-io health/admin state machine of a server; ``tcp`` and
``http`` run one check each; ``scheduler`` runs them on their timers and
feeds the results to the proxy.
"""
