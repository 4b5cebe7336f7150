"""The LAN harness's parts: network namespaces (ns.py) and the per-node link proxy (proxy.py) that emulates
latency, loss and partitions in user space. benchmarks/lan.py runs a scenario on them."""
