module certctl.local/pause

go 1.24.0
