module certctl.local/netprobe

go 1.24.0
