"""Weir's failover pair: VRRP daemon, VIP/GARP handling, stick-table sync between peers."""
