package config

import (
	"errors"
	"testing"
)

func TestErrorsEmpty(t *testing.T) {
	var errs Errors
	if err := errs.Err(); err != nil {
		t.Errorf("Errors{}.Err() = %v, want nil", err)
	}
}

func TestErrorsMessage(t *testing.T) {
	var errs Errors
	errs.Add("database.driver", "must be sqlite or mysql, got %q", "pg")
	errs.Add(Join("tls", "key_file"), "required with cert_file")
	err := errs.Err()
	want := `invalid configuration: database.driver: must be sqlite or mysql, got "pg"; tls.key_file: required with cert_file`
	if err == nil || err.Error() != want {
		t.Errorf("Err() = %v, want %s", err, want)
	}
	// The error is a snapshot: later additions do not change it.
	errs.Add("later", "x")
	if err.Error() != want {
		t.Errorf("Err() changed after Add: %v", err)
	}
	var fe FieldError
	if !errors.As(err, &fe) || fe.Key != "database.driver" {
		t.Errorf("errors.As(FieldError) = %+v, want database.driver", fe)
	}
}

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:9100", true},
		{":25", true},
		{"[::1]:993", true},
		{"mail.example.org:587", true},
		{"127.0.0.1:0", true},
		{"", false},
		{"127.0.0.1", false},
		{"::1:25", false},
		{"host:port", false},
		{"host:70000", false},
		{"host:-1", false},
		{"a b:25", false},
		{"http://x:25", false},
	}
	for _, tt := range tests {
		var errs Errors
		CheckAddr(&errs, "listen", tt.addr)
		if got := errs.Len() == 0; got != tt.ok {
			t.Errorf("CheckAddr(%q) ok = %v, want %v (%v)", tt.addr, got, tt.ok, errs.Err())
		}
	}
}

func TestJoin(t *testing.T) {
	tests := []struct{ prefix, name, want string }{
		{"", "cert_file", "cert_file"},
		{"tls", "cert_file", "tls.cert_file"},
		{"grpc.tls", "ca_file", "grpc.tls.ca_file"},
	}
	for _, tt := range tests {
		if got := Join(tt.prefix, tt.name); got != tt.want {
			t.Errorf("Join(%q, %q) = %q, want %q", tt.prefix, tt.name, got, tt.want)
		}
	}
}
