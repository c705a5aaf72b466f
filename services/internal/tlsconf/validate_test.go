package tlsconf

import (
	"os"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/testlib"
)

func TestValidate(t *testing.T) {
	certs := testlib.NewCerts(t)
	missing := certs.Dir + "/missing.pem"
	garbage := certs.Dir + "/garbage.pem"
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    Files
		want []string // keys with a problem, in order
	}{
		{"off", Files{}, nil},
		{"server", Files{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA}, nil},
		{"client CA only", Files{CA: certs.CA}, nil},
		{"cert without key", Files{Cert: certs.ServerCert}, []string{"tls.key_file"}},
		{"key without cert", Files{Key: certs.ServerKey}, []string{"tls.cert_file"}},
		{"missing files", Files{Cert: missing, Key: missing, CA: missing}, []string{"tls.cert_file", "tls.key_file", "tls.ca_file"}},
		{"mismatched pair", Files{Cert: certs.ServerCert, Key: certs.ClientKey}, []string{"tls.key_file"}},
		{"garbage CA", Files{CA: garbage}, []string{"tls.ca_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errs config.Errors
			tt.f.Validate(&errs, "tls")
			err := errs.Err()
			var got []string
			if err != nil {
				for _, f := range err.(*config.ValidationError).Fields {
					got = append(got, f.Key)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("Validate() = %v, want problems with %v", err, tt.want)
			}
		})
	}
}
