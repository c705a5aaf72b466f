package sqlstore

import (
	"database/sql"
	"errors"
	"testing"

	_ "modernc.org/sqlite"
)

// TestInTxRetry checks that a transaction the server aborted runs again,
// up to maxTxAttempts times, and that other errors end it at once.
func TestInTxRetry(t *testing.T) {
	errAborted := errors.New("deadlock")
	errOther := errors.New("broken")
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := &Store{db: db, d: Dialect{Classify: func(err error) Class {
		if errors.Is(err, errAborted) {
			return Retry
		}
		return Other
	}}}

	for _, tt := range []struct {
		name      string
		failures  []error // what the attempts return, in turn; nil after
		wantCalls int
		wantErr   error
	}{
		{"succeeds", nil, 1, nil},
		{"retried", []error{errAborted, errAborted}, 3, nil},
		{"other error", []error{errOther}, 1, errOther},
		{"retry then other", []error{errAborted, errOther}, 2, errOther},
		{"gives up", []error{errAborted, errAborted, errAborted, errAborted, errAborted, errAborted}, maxTxAttempts, errAborted},
	} {
		calls := 0
		err := s.inTx(t.Context(), func(*sql.Tx) error {
			calls++
			if calls <= len(tt.failures) {
				return tt.failures[calls-1]
			}
			return nil
		})
		if calls != tt.wantCalls || !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: inTx() = %v after %d calls, want %v after %d", tt.name, err, calls, tt.wantErr, tt.wantCalls)
		}
	}
}
