"""The L7 HTTP/1.1 reverse proxy: frontends, client and server connections, backends."""
