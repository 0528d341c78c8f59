"""Health checks (the article's "Testing the servers").

``state`` holds the sans-io health/admin state machine of a server; ``tcp`` and
``http`` run one check each, ``agent`` asks the server's own agent; ``observe``
says which errors on live traffic count against a server; ``scheduler`` runs
the checks on their timers and feeds the results to the proxy.
"""
