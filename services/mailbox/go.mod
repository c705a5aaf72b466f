module github.com/postcove/postcove/services/mailbox

go 1.26.0

require (
	github.com/postcove/postcove/services/internal v0.0.0
	golang.org/x/sys v0.50.0
)

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	github.com/go-sql-driver/mysql v1.10.1 // indirect
	github.com/miekg/dns v1.1.73 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
)

replace github.com/postcove/postcove/proto => ../../proto

replace github.com/postcove/postcove/services/internal => ../internal
